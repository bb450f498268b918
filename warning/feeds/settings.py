"""Feed settings: the `[[feeds]]` tables of the config file (with their `[[feeds.rules]]`) as frozen objects.

```toml
[[feeds]]
name = "cma"
url = "https://alerts.example.cn/cap/feed.atom"
format = "atom"                 # atom | rss | cap (the URL is itself one CAP document)
interval = "5m"
allowed_hosts = ["alerts.example.cn"]   # default: the url's host
[[feeds.rules]]
events = ["11B01", "台风"]       # event names or event codes; empty: any event
min_level = "red"               # blue < yellow < orange < red (红色…); from the CAP severity
area_prefixes = ["330327"]      # geocode prefixes of our county; empty: anywhere
certainties = ["Observed", "Likely"]
action = "issue"                # draft (awaits approval) | issue
audiences = ["public", "cadres"]
```

Imports nothing that imports `warning.config`, so `config.py` can import `parse_feeds`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

from warning.errors import ConfigError
from warning.i18n import t
from warning.model import Level

FeedFormat = Literal["atom", "rss", "cap"]
Action = Literal["draft", "issue"]

FORMATS: tuple[FeedFormat, ...] = ("atom", "rss", "cap")
ACTIONS: tuple[Action, ...] = ("draft", "issue")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
DEFAULT_INTERVAL = 300.0
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_TIMEOUT = 10.0
LEVEL_NAMES: dict[str, Level] = {
    **{level.value: level for level in Level},
    "红色": Level.RED,
    "红": Level.RED,
    "橙色": Level.ORANGE,
    "橙": Level.ORANGE,
    "黄色": Level.YELLOW,
    "黄": Level.YELLOW,
    "蓝色": Level.BLUE,
    "蓝": Level.BLUE,
}

_FEED_KEYS = {
    "name",
    "url",
    "format",
    "interval",
    "rules",
    "allowed_hosts",
    "allow_private",
    "max_bytes",
    "timeout",
}
_RULE_KEYS = {"events", "min_level", "area_prefixes", "certainties", "action", "audiences"}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# The same grammar as `warning.config.parse_duration`; repeated here because config imports this module.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class FeedRule:
    """When an entry of a feed becomes one of our alerts, and how (`draft` awaits approval)."""

    events: tuple[str, ...] = ()  # event names or event codes (11B01); empty: any event
    min_level: Level | None = None
    area_prefixes: tuple[str, ...] = ()  # geocode prefixes; empty: any area
    certainties: tuple[str, ...] = ()  # CAP certainty values; empty: any
    action: Action = "draft"
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedSettings:
    """One configured feed: where it is, how often to poll it, which hosts it may lead to, its rules."""

    name: str
    url: str
    format: FeedFormat = "atom"
    interval: float = DEFAULT_INTERVAL  # seconds
    rules: tuple[FeedRule, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # parse_feeds fills in the url's host
    allow_private: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT  # seconds, per document, redirects included


def parse_feeds(value: object, where: str) -> tuple[FeedSettings, ...]:
    """Parse the `[[feeds]]` array of tables read from the config file at `where`.

    Raises:
        ConfigError: a table, key or value is invalid; the message names it and says what to write.
    """
    if not isinstance(value, list) or not all(isinstance(table, dict) for table in value):
        raise _bad(where, "", "应为表数组（[[feeds]]）", "must be an array of tables ([[feeds]])")
    feeds = tuple(_feed(table, where, index) for index, table in enumerate(value, start=1))
    seen: set[str] = set()
    for feed in feeds:
        if feed.name in seen:
            raise _bad(
                where,
                feed.name,
                "名称重复，每个源需要不同的 name",
                "name is used twice; give each feed its own",
            )
        seen.add(feed.name)
    return feeds


def _bad(where: str, at: str, message_zh: str, message_en: str, **params: object) -> ConfigError:
    label = f"[[feeds]] {at}".rstrip()
    return ConfigError(t("{w}：{at} " + message_zh, "{w}: {at} " + message_en, w=where, at=label, **params))


def _feed(table: dict[str, object], where: str, index: int) -> FeedSettings:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(
            where,
            f"#{index}",
            "name 应为小写字母开头的标识符，如 cma",
            "name must be an identifier starting with a lower-case letter, such as cma",
        )
    unknown = set(table) - _FEED_KEYS
    if unknown:
        raise _bad(
            where,
            name,
            "未知的配置项 {k}（可用：{ok}）",
            "unknown key {k} (known: {ok})",
            k=", ".join(sorted(unknown)),
            ok=", ".join(sorted(_FEED_KEYS)),
        )
    url = table.get("url")
    host = _url_host(url) if isinstance(url, str) else ""
    if not isinstance(url, str) or not host:
        raise _bad(
            where,
            name,
            "url 应为 http:// 或 https:// 开头且带主机名的地址",
            "url must be an http:// or https:// address with a host",
        )
    feed_format = table.get("format", "atom")
    if feed_format not in FORMATS:
        raise _bad(where, name, "format 应为 atom、rss 或 cap", "format must be atom, rss or cap")
    allowed = _strings(table, "allowed_hosts", where, name) or (host,)
    allowed = tuple(h.lower().rstrip(".") for h in allowed)
    if host not in allowed:
        raise _bad(
            where,
            name,
            "allowed_hosts 应包含 url 的主机 {h}",
            "allowed_hosts must include the url's host {h}",
            h=host,
        )
    allow_private = table.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise _bad(where, name, "allow_private 应为 true 或 false", "allow_private must be true or false")
    max_bytes = table.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1024 <= max_bytes <= 64 << 20:
        raise _bad(
            where,
            name,
            "max_bytes 应为 1024 到 67108864 之间的整数",
            "max_bytes must be an integer between 1024 and 67108864",
        )
    rules_value = table.get("rules")
    if not isinstance(rules_value, list) or not rules_value:
        raise _bad(
            where,
            name,
            "至少需要一条规则 [[feeds.rules]]，说明哪些预警生成草稿或直接发布",
            "needs at least one [[feeds.rules]] saying which warnings become drafts or are issued",
        )
    rules = tuple(_rule(rule, where, f"{name}.rules[{i}]") for i, rule in enumerate(rules_value, start=1))
    return FeedSettings(
        name=name,
        url=url,
        format=feed_format,
        interval=_seconds(table, "interval", DEFAULT_INTERVAL, where, name, low=1.0, high=86400.0),
        rules=rules,
        allowed_hosts=allowed,
        allow_private=allow_private,
        max_bytes=max_bytes,
        timeout=_seconds(table, "timeout", DEFAULT_TIMEOUT, where, name, low=0.1, high=300.0),
    )


def _rule(table: object, where: str, at: str) -> FeedRule:
    if not isinstance(table, dict):
        raise _bad(where, at, "应为表（[[feeds.rules]]）", "must be a table ([[feeds.rules]])")
    unknown = set(table) - _RULE_KEYS
    if unknown:
        raise _bad(
            where,
            at,
            "未知的配置项 {k}（可用：{ok}）",
            "unknown key {k} (known: {ok})",
            k=", ".join(sorted(unknown)),
            ok=", ".join(sorted(_RULE_KEYS)),
        )
    min_level: Level | None = None
    if "min_level" in table:
        raw = table["min_level"]
        min_level = LEVEL_NAMES.get(raw.strip().lower()) if isinstance(raw, str) else None
        if min_level is None:
            raise _bad(
                where,
                at,
                "min_level 应为 蓝色、黄色、橙色、红色（或 blue、yellow、orange、red）",
                "min_level must be blue, yellow, orange or red (or 蓝色, 黄色, 橙色, 红色)",
            )
    certainties = _strings(table, "certainties", where, at)
    by_lower = {c.lower(): c for c in CERTAINTIES}
    if any(c.lower() not in by_lower for c in certainties):
        raise _bad(
            where,
            at,
            "certainties 只能包含 {ok}",
            "certainties may only hold {ok}",
            ok=", ".join(CERTAINTIES),
        )
    prefixes = _strings(table, "area_prefixes", where, at)
    if any(not p.isdigit() or len(p) > 12 for p in prefixes):
        raise _bad(
            where,
            at,
            "area_prefixes 应为 1 到 12 位数字的区划代码前缀，如 330327",
            "area_prefixes must be geocode prefixes of 1 to 12 digits, such as 330327",
        )
    action = table.get("action", "draft")
    if action not in ACTIONS:
        raise _bad(
            where,
            at,
            "action 应为 draft（待审批）或 issue（直接发布）",
            "action must be draft (awaits approval) or issue",
        )
    return FeedRule(
        events=tuple(e.strip() for e in _strings(table, "events", where, at)),
        min_level=min_level,
        area_prefixes=prefixes,
        certainties=tuple(by_lower[c.lower()] for c in certainties),
        action=cast(Action, action),
        audiences=_strings(table, "audiences", where, at),
    )


def _url_host(url: str) -> str:
    """The lower-case host of an http(s) URL, or "" when it is not one."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".") if parts.scheme in ("http", "https") else ""


def _strings(table: dict[str, object], key: str, where: str, at: str) -> tuple[str, ...]:
    items = table.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise _bad(
            where,
            at,
            '{k} 应为非空字符串列表，如 ["a", "b"]',
            '{k} must be a list of non-empty strings, e.g. ["a", "b"]',
            k=key,
        )
    return tuple(items)


def _seconds(
    table: dict[str, object], key: str, default: float, where: str, at: str, *, low: float, high: float
) -> float:
    raw = table.get(key, default)
    seconds: float | None = None
    if isinstance(raw, str):
        match = _DURATION.match(raw)
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    if seconds is None or not low <= seconds <= high:
        raise _bad(
            where,
            at,
            '{k} 应为 {lo:g} 秒到 {hi:g} 秒之间的时长，如 "90s"、"5m"',
            '{k} must be a duration between {lo:g}s and {hi:g}s, such as "90s" or "5m"',
            k=key,
            lo=low,
            hi=high,
        )
    return seconds
