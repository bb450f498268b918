"""Emitting our alert as a CAP 1.2 document: zh-CN and en-US `<info>` blocks, 12-digit CPEAS geocodes.

The document is valid against the OASIS CAP 1.2 schema and reads back through `parse_cap` and
`map_cap` to the same event, level, areas, times and texts. Times carry China's `+08:00` offset
(never `Z`, which CAP forbids). The en-US block has an English event name and headline; the
description and instruction are the original text, because we have no translation of our own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from xml.etree.ElementTree import Element, SubElement, tostring

from warning.cap.document import CAP12_NAMESPACE, Category, Certainty, MsgType, ResponseType, Urgency
from warning.errors import CapError
from warning.i18n import t
from warning.model import Alert, Level, Village

CHINA_TIME = timezone(timedelta(hours=8), "CST")
GEOCODE_NAME = "CPEAS Geographic Code"
EVENT_CODE_NAME = "CMA_EWT"
COLOUR_PARAMETER = "alert_color"
_EMITTED_MSG_TYPES = (MsgType.ALERT.value, MsgType.UPDATE.value, MsgType.CANCEL.value)

COLOUR_ZH = {Level.BLUE: "蓝色", Level.YELLOW: "黄色", Level.ORANGE: "橙色", Level.RED: "红色"}
_RESPONSE = {
    Level.RED: ResponseType.EVACUATE,
    Level.ORANGE: ResponseType.EVACUATE,
    Level.YELLOW: ResponseType.PREPARE,
    Level.BLUE: ResponseType.MONITOR,
}
# Event words (zh) → English name and CAP category; the first word found in the event wins.
_EVENTS: tuple[tuple[str, str, Category], ...] = (
    ("台风", "Typhoon", Category.MET),
    ("暴雨", "Rainstorm", Category.MET),
    ("暴雪", "Snowstorm", Category.MET),
    ("寒潮", "Cold wave", Category.MET),
    ("大风", "Gale", Category.MET),
    ("沙尘", "Sandstorm", Category.MET),
    ("高温", "Heat wave", Category.MET),
    ("干旱", "Drought", Category.MET),
    ("雷电", "Lightning", Category.MET),
    ("雷雨", "Thunderstorm", Category.MET),
    ("冰雹", "Hail", Category.MET),
    ("霜冻", "Frost", Category.MET),
    ("大雾", "Heavy fog", Category.MET),
    ("霾", "Haze", Category.MET),
    ("道路结冰", "Road icing", Category.MET),
    ("强对流", "Severe convection", Category.MET),
    ("山洪", "Flash flood", Category.MET),
    ("洪水", "Flood", Category.MET),
    ("风暴潮", "Storm surge", Category.MET),
    ("地质灾害", "Geological hazard", Category.GEO),
    ("滑坡", "Landslide", Category.GEO),
    ("泥石流", "Debris flow", Category.GEO),
    ("地震", "Earthquake", Category.GEO),
    ("海啸", "Tsunami", Category.GEO),
    ("森林火", "Forest fire", Category.FIRE),
    ("火险", "Fire danger", Category.FIRE),
    ("火灾", "Fire", Category.FIRE),
)


def cap_time(moment: datetime) -> str:
    # Naive datetimes are taken as UTC, the convention of the rest of the service.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(CHINA_TIME).replace(microsecond=0).isoformat()


def _event_english(event: str, event_code: str) -> tuple[str, Category]:
    for word, english, category in _EVENTS:
        if word in event:
            return english, category
    if event_code.startswith("11B"):  # GB/T 35561: 11B is meteorological disasters
        return event, Category.MET
    return event, Category.SAFETY


def _area_desc(code: str, villages: Sequence[Village]) -> str:
    for village in villages:
        if village.code == code:
            return village.name
    for village in villages:
        if len(code) <= 6 and village.county_code.startswith(code):
            return village.county
        if len(code) <= 9 and village.township_code.startswith(code):
            return village.township
    return code


# Characters XML 1.0 cannot carry at all, not even escaped: C0 controls but tab, LF and CR; U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str | None) -> str | None:
    """`text` without the characters XML 1.0 cannot hold: the JSON API accepts any string, and one stray
    control character in a headline would otherwise make our CAP document and Atom feed unreadable."""
    return _NOT_XML.sub("", text) if text else text


def _add(parent: Element, name: str, text: str | None = None) -> Element:
    child = SubElement(parent, f"{{{CAP12_NAMESPACE}}}{name}")
    child.text = xml_text(text)
    return child


def _pair(parent: Element, name: str, value_name: str, value: str) -> None:
    element = SubElement(parent, f"{{{CAP12_NAMESPACE}}}{name}")
    _add(element, "valueName", value_name)
    _add(element, "value", value)


def _enum_or_unknown(value: str, kind: type[Urgency] | type[Certainty]) -> str:
    return value if value in {member.value for member in kind} else "Unknown"


def _info(
    root: Element, alert: Alert, *, english: bool, sender_name: str, villages: Sequence[Village]
) -> None:
    info = _add(root, "info")
    event_en, category = _event_english(alert.event, alert.event_code)
    colour = alert.level.value if english else COLOUR_ZH[alert.level]
    _add(info, "language", "en-US" if english else "zh-CN")
    _add(info, "category", category.value)
    _add(info, "event", event_en if english else alert.event)
    response = ResponseType.ALL_CLEAR if alert.msg_type == MsgType.CANCEL else _RESPONSE[alert.level]
    _add(info, "responseType", response.value)
    _add(info, "urgency", _enum_or_unknown(alert.urgency, Urgency))
    _add(info, "severity", alert.level.severity)
    _add(info, "certainty", _enum_or_unknown(alert.certainty, Certainty))
    if alert.event_code:
        _pair(info, "eventCode", EVENT_CODE_NAME, alert.event_code)
    for name, moment in (("effective", alert.effective), ("onset", alert.onset), ("expires", alert.expires)):
        if moment is not None:
            _add(info, name, cap_time(moment))
    if sender_name:
        _add(info, "senderName", sender_name)
    if english:
        _add(info, "headline", f"{event_en} {alert.level.value} warning")
    else:
        _add(info, "headline", alert.headline or f"{alert.event}{colour}预警")
    if alert.description:
        _add(info, "description", alert.description)
    if alert.instruction:
        _add(info, "instruction", alert.instruction)
    _pair(info, "parameter", COLOUR_PARAMETER, colour)
    for code in alert.areas:
        area = _add(info, "area")
        _add(area, "areaDesc", _area_desc(code, villages))
        _pair(area, "geocode", GEOCODE_NAME, code.ljust(12, "0"))


def cap_identifier(alert: Alert) -> str:
    """CAP wants a new identifier per message: version 1 is the alert id, later versions `{id}-v{n}`."""
    return alert.id if alert.version == 1 else f"{alert.id}-v{alert.version}"


def emit_cap(
    alert: Alert,
    *,
    sender: str,
    sender_name: str,
    villages: Sequence[Village],
    references: Sequence[str] = (),
) -> bytes:
    """The alert as a CAP 1.2 document (UTF-8, with an XML declaration), valid against the schema.

    `sender` is our CAP sender id and `sender_name` the bureau's name; `villages` name the areas
    (a code no village explains is described by the code itself). `references` ("sender,identifier,
    sent" triplets) default to the alert's own; an Update or Cancel should have some.

    Raises:
        CapError: rule `enumeration` when `alert.msg_type` is not Alert, Update or Cancel, rule
            `token` when `sender` or the alert id is empty or holds whitespace, a comma, `<` or `&`.
    """
    if alert.msg_type not in _EMITTED_MSG_TYPES:
        raise CapError(
            t(
                "无法生成 CAP：msgType {value} 不是 Alert、Update 或 Cancel",
                "cannot emit CAP: msgType {value} is not Alert, Update or Cancel",
                value=alert.msg_type,
            ),
            element="alert/msgType",
            rule="enumeration",
        )
    for element, token in (("alert/sender", sender), ("alert/identifier", cap_identifier(alert))):
        if not token or any(c.isspace() or c in ",<&" for c in token):
            raise CapError(
                t(
                    "无法生成 CAP：{element} 值 {value!r} 无效",
                    "cannot emit CAP: {element} {value!r} is invalid",
                    element=element,
                    value=token,
                ),
                element=element,
                rule="token",
            )
    root = Element(f"{{{CAP12_NAMESPACE}}}alert")
    _add(root, "identifier", cap_identifier(alert))
    _add(root, "sender", sender)
    _add(root, "sent", cap_time(alert.sent))
    _add(root, "status", alert.status.value)
    _add(root, "msgType", alert.msg_type)
    _add(root, "scope", "Public")
    triplets = tuple(references) or alert.references
    if triplets:
        _add(root, "references", " ".join(triplets))
    for english in (False, True):
        _info(root, alert, english=english, sender_name=sender_name, villages=villages)
    document: bytes = tostring(
        root, encoding="utf-8", xml_declaration=True, default_namespace=CAP12_NAMESPACE
    )
    return document
