"""The names people read for domain values, in zh-CN (first) and English, and Beijing time.

One table per kind of value, so that `warning status`, the demo, the 复盘 report and the pages call an
alert 橙色/已发布 in the same words. Machine keys stay what JSON and the API carry; these are for
humans only. A value this module does not know is shown as it is (an operator's own audience or
channel keeps its name).

Imports nothing of ours but `i18n` and `model`: `warning status` and `--help` load it, and they must
stay fast (no jinja2, no web stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Final, Literal

from warning.i18n import current_language
from warning.model import AlertState, AlertStatus, Level, Role

# China has kept no daylight saving time since 1991: a fixed offset needs no tz database.
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")

Kind = Literal[
    "level", "state", "status", "reach", "outcome", "role", "channel", "delivery", "audience", "source"
]

# kind → value → (zh-CN, en)
_LABELS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "level": {
        Level.BLUE: ("蓝色", "Blue"),
        Level.YELLOW: ("黄色", "Yellow"),
        Level.ORANGE: ("橙色", "Orange"),
        Level.RED: ("红色", "Red"),
    },
    "state": {
        AlertState.DRAFT: ("草稿", "draft"),
        AlertState.PENDING_APPROVAL: ("待审批", "pending approval"),
        AlertState.ISSUED: ("已发布", "issued"),
        AlertState.CANCELLED: ("已撤销", "cancelled"),
        AlertState.EXPIRED: ("已过期", "expired"),
        AlertState.REJECTED: ("已驳回", "rejected"),
    },
    "status": {
        AlertStatus.ACTUAL: ("正式", "Actual"),
        AlertStatus.EXERCISE: ("演练", "Exercise"),
        AlertStatus.SYSTEM: ("系统", "System"),
        AlertStatus.TEST: ("测试", "Test"),
        AlertStatus.DRAFT: ("草稿", "Draft"),
    },
    # A resident's reach state (warning/reach.py STATES), plus "escalated" for the open ones passed up.
    "reach": {
        "pending": ("未送达", "not reached"),
        "notified": ("已通知待确认", "notified, not confirmed"),
        "acknowledged": ("本人已确认", "acknowledged by resident"),
        "confirmed": ("干部已确认", "confirmed by cadre"),
        "escalated": ("已上报", "escalated"),
    },
    # What the cadre reported (warning/reach.py OUTCOMES).
    "outcome": {
        "reached": ("已见到本人", "reached in person"),
        "evacuated": ("已转移", "evacuated"),
        "not_home": ("不在家", "not at home"),
        "refused": ("拒绝转移", "refused to leave"),
        "needs_help": ("需要救助", "needs help"),
    },
    "role": {
        Role.CADRE: ("村干部", "village cadre"),
        Role.VILLAGE_HEAD: ("村主任", "village head"),
        Role.TOWNSHIP_DUTY: ("乡镇值班员", "township duty officer"),
        Role.COUNTY_DUTY: ("县值班员", "county duty officer"),
        Role.RESCUE_TEAM: ("救援队", "rescue team"),
    },
    "channel": {
        "sms": ("短信", "SMS"),
        "voice": ("语音电话", "voice call"),
        "wechat": ("微信", "WeChat"),
        "wecom": ("企业微信", "WeCom"),
        "speaker": ("大喇叭", "loudspeaker"),
    },
    # A delivery's state (warning/deliveries.py). English keeps the machine words operators grep for.
    "delivery": {
        "queued": ("排队", "queued"),
        "retrying": ("待重试", "retrying"),
        "sending": ("发送中", "sending"),
        "sent": ("已发出", "sent"),
        "delivered": ("已送达", "delivered"),
        "failed": ("失败", "failed"),
        "ambiguous": ("结果不明", "ambiguous"),
        "expired": ("已过期", "expired"),
        "cancelled": ("已撤销", "cancelled"),
        "dead": ("死信", "dead"),
        "no_address": ("无号码", "no_address"),
    },
    "audience": {
        "public": ("公众", "public"),
        "vulnerable": ("重点人群", "vulnerable people"),
        "cadres": ("村干部", "village cadres"),
        "officials": ("值班领导", "duty officials"),
        "rescue_teams": ("救援队", "rescue teams"),
        "speakers": ("大喇叭", "loudspeakers"),
        "allclear": ("解除通知", "all-clear"),
    },
    # Where a piece of reach evidence came from (warning/reach.py EVIDENCE).
    "source": {
        "sms": ("短信回执", "SMS receipt"),
        "wechat": ("微信", "WeChat"),
        "voice": ("语音电话", "voice call"),
        "speaker": ("大喇叭", "loudspeaker"),
        "link": ("确认链接", "confirm link"),
        "reply": ("短信回复", "SMS reply"),
        "cadre": ("干部回报", "cadre report"),
    },
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _english(language: str | None) -> bool:
    return (language or current_language()).lower().startswith("en")


def label(kind: Kind, value: str, language: str | None = None) -> str:
    """The name of `value` (e.g. "orange") in `language` (default: the current one): 橙色 / Orange.

    An unknown value is returned unchanged.
    """
    names = _LABELS[kind].get(str(value))
    if names is None:
        return str(value)
    return names[1] if _english(language) else names[0]


def labels(kind: Kind, language: str | None = None) -> Mapping[str, str]:
    """Every value of `kind` with its name, in table order (for legends and select boxes)."""
    return {str(value): label(kind, value, language) for value in _LABELS[kind]}


def to_beijing(when: datetime | float | int | str) -> datetime:
    """`when` as an aware datetime in Beijing time.

    A number is a unix time; a string is ISO 8601 ("Z" allowed); a naive datetime is taken as
    Beijing time already (as CAP times without offset are, in this service).
    """
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if isinstance(when, (int, float)):
        return datetime.fromtimestamp(float(when), BEIJING)
    return when.astimezone(BEIJING) if when.tzinfo else when.replace(tzinfo=BEIJING)


def beijing(
    when: datetime | float | int | str | None, *, full: bool = False, language: str | None = None
) -> str:
    """Beijing time as people read it: "12月3日 14:05" / "3 Dec 14:05"; `full` for reports:
    "2026-12-03 14:05:09" in either language (sorts, and Excel reads it). None and 0 give "".
    """
    if when is None or when == 0 or when == "":
        return ""
    local = to_beijing(when)
    if full:
        return f"{local:%Y-%m-%d %H:%M:%S}"
    if _english(language):
        return f"{local.day} {_MONTHS[local.month - 1]} {local:%H:%M}"
    return f"{local.month}月{local.day}日 {local:%H:%M}"
