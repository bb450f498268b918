"""CAP 1.2 rules: the schema's (which elements, how often, enumerations, lexical forms) and the prose's.

The parser reads text into typed values with the lexical rules here (`parse_datetime`, `parse_polygon`,
…) and then calls `validate`, which checks what the XSD cannot: references for Update/Cancel, closed
polygons, coordinates in range, restriction and addresses against scope, effective ≤ expires. Every
failure is a `CapError` naming the element (a path such as `alert/info[1]/area[2]/polygon[1]`) and
the rule.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

from warning.cap.document import (
    DEFAULT_LANGUAGE,
    CapAlert,
    CapArea,
    CapInfo,
    Circle,
    MsgType,
    Polygon,
    Reference,
    Scope,
)
from warning.errors import CapError
from warning.i18n import t

# (min, max) occurrences of each child; max None is unbounded. Order is deliberately not enforced:
# issuers reorder freely and nothing in CAP depends on it.
Occurs = tuple[int, int | None]
ONE: Occurs = (1, 1)
OPTIONAL: Occurs = (0, 1)
MANY: Occurs = (0, None)

ALERT_CHILDREN: dict[str, Occurs] = {
    "identifier": ONE,
    "sender": ONE,
    "sent": ONE,
    "status": ONE,
    "msgType": ONE,
    "source": OPTIONAL,
    "scope": ONE,
    "restriction": OPTIONAL,
    "addresses": OPTIONAL,
    "code": MANY,
    "note": OPTIONAL,
    "references": OPTIONAL,
    "incidents": OPTIONAL,
    "info": MANY,
}
INFO_CHILDREN: dict[str, Occurs] = {
    "language": OPTIONAL,
    "category": (1, None),
    "event": ONE,
    "responseType": MANY,
    "urgency": ONE,
    "severity": ONE,
    "certainty": ONE,
    "audience": OPTIONAL,
    "eventCode": MANY,
    "effective": OPTIONAL,
    "onset": OPTIONAL,
    "expires": OPTIONAL,
    "senderName": OPTIONAL,
    "headline": OPTIONAL,
    "description": OPTIONAL,
    "instruction": OPTIONAL,
    "web": OPTIONAL,
    "contact": OPTIONAL,
    "parameter": MANY,
    "resource": MANY,
    "area": MANY,
}
RESOURCE_CHILDREN: dict[str, Occurs] = {
    "resourceDesc": ONE,
    "mimeType": ONE,
    "size": OPTIONAL,
    "uri": OPTIONAL,
    "derefUri": OPTIONAL,
    "digest": OPTIONAL,
}
AREA_CHILDREN: dict[str, Occurs] = {
    "areaDesc": ONE,
    "polygon": MANY,
    "circle": MANY,
    "geocode": MANY,
    "altitude": OPTIONAL,
    "ceiling": OPTIONAL,
}
PAIR_CHILDREN: dict[str, Occurs] = {"valueName": ONE, "value": ONE}

# CAP 1.2 §3.3.2: "YYYY-MM-DDThh:mm:ssXzh:hh", offset required, "Z" not allowed (the XSD pattern).
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d", re.ASCII)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_INTEGER = re.compile(r"\+?[0-9]+", re.ASCII)
_LANGUAGE = re.compile(r"[a-zA-Z]{1,8}(?:-[a-zA-Z0-9]{1,8})*", re.ASCII)
_FORBIDDEN_IN_TOKEN = re.compile(r"[\s,<&]")
_QUOTED_OR_WORD = re.compile(r'"([^"]*)"|(\S+)')
MIN_POLYGON_POINTS = 4
# Hostile-input bounds (real CAP polygons have tens to a few thousand points): matching a message's
# shapes against every village costs points × villages, so both counts are capped; a circle counts 1.
MAX_POLYGON_POINTS = 10_000
MAX_MESSAGE_POINTS = 20_000
MAX_SIZE_DIGITS = 20  # more bytes than any resource could have

E = TypeVar("E", bound=enum.StrEnum)


# Every rule a message can break, with its reason in zh-CN and English. Rule ids are stable: callers
# and tests decide by `CapError.rule`, never by message text.
# fmt: off
RULES: dict[str, tuple[str, str]] = {
    "size-limit": ("消息有 {size} 字节，超过 1 MiB 上限", "the message is {size} bytes, over the 1 MiB limit"),
    "xml": ("不是格式正确的 XML：{detail}", "not well-formed XML: {detail}"),
    "dtd-forbidden": ("不接受 DOCTYPE/DTD（可能是 XXE 攻击）", "a DOCTYPE/DTD is not accepted (possible XXE attack)"),
    "entities-forbidden": ("不接受实体声明", "entity declarations are not accepted"),
    "external-reference": ("不接受外部引用", "external references are not accepted"),
    "depth-limit": ("元素嵌套超过 {limit} 层", "elements nest deeper than {limit} levels"),
    "element-limit": ("元素超过 {limit} 个", "more than {limit} elements"),
    "cap-version": ("不支持 CAP {version}：命名空间 {namespace}；请发送 CAP 1.2", "CAP {version} is not supported: namespace {namespace}; send CAP 1.2"),
    "namespace": ("命名空间 {namespace} 不是 CAP 1.2 的 {expected}", "namespace {namespace} is not the CAP 1.2 namespace {expected}"),
    "root": ("根元素是 {local}，应为 alert", "the root element is {local}, not alert"),
    "foreign-element": ("命名空间 {namespace} 的元素不属于 CAP 1.2", "an element in namespace {namespace} is not part of CAP 1.2"),
    "unknown-element": ("CAP 1.2 中此处没有这个元素", "CAP 1.2 has no such element here"),
    "cardinality": ("最多出现 {most} 次", "may appear at most {most} time(s)"),
    "required": ("缺少必需元素", "required element is missing"),
    "unexpected-text": ("此处只能包含子元素，不能有文字", "holds text where only elements may be"),
    "simple-content": ("只能包含文字，不能有子元素", "holds elements where only text may be"),
    "enumeration": ("{value} 不是允许的值（{allowed}）", "{value} is not one of {allowed}"),
    "datetime-format": ("{value} 不是 YYYY-MM-DDThh:mm:ss±hh:mm 格式的有效时间（CAP 1.2 §3.3.2，不能用 Z）", "{value} is not a valid YYYY-MM-DDThh:mm:ss±hh:mm time (CAP 1.2 §3.3.2; Z is not allowed)"),
    "token": ("{value} 必须非空，且不含空白、逗号、< 或 &", "{value} must be non-empty without spaces, commas, < or &"),
    "language": ("{value} 不是语言代码", "{value} is not a language tag"),
    "decimal": ("{value} 不是十进制数", "{value} is not a decimal number"),
    "integer": ("{value} 不是非负整数", "{value} is not a non-negative integer"),
    "references": ("{value} 不是以空白分隔的 sender,identifier,sent 三元组列表", "{value} is not a whitespace-separated list of sender,identifier,sent triplets"),
    "references-required": ("msgType 为 {msg_type} 时必须引用原消息（sender,identifier,sent）", "msgType {msg_type} must reference the earlier message (sender,identifier,sent)"),
    "coordinates": ("{value} 不是范围内的 lat,lon 坐标对（纬度 ±90，经度 ±180）", "{value} is not a lat,lon pair in range (latitude ±90, longitude ±180)"),
    "polygon-points": ("只有 {count} 个点；多边形至少需要 4 个点（首尾相同）", "has {count} point(s); a polygon needs at least 4 (first and last equal)"),
    "polygon-point-limit": ("有 {count} 个点，超过每个多边形 {limit} 个点的上限：请简化多边形，或改用行政区划代码（geocode）", "has {count} points, over the limit of {limit} points per polygon: simplify it, or use division-code geocodes"),
    "message-point-limit": ("消息中的多边形和圆共有 {count} 个点，超过每条消息 {limit} 个点的上限：请简化区域，或改用行政区划代码（geocode）", "the message's polygons and circles have {count} points, over the limit of {limit} points per message: simplify the areas, or use division-code geocodes"),
    "polygon-closed": ("多边形未闭合：第一个点必须等于最后一个点", "polygon is not closed: the first point must equal the last"),
    "circle": ("{value} 不是“lat,lon 半径”格式，半径不能为负", "{value} is not 'lat,lon radius' with a radius ≥ 0"),
    "ceiling-altitude": ("有 ceiling 时必须同时给出 altitude", "ceiling may only be used together with altitude"),
    "restriction-scope": ("restriction 只能且必须在 scope 为 Restricted 时使用", "restriction is required with scope Restricted and allowed only then"),
    "addresses-scope": ("scope 为 Private 时必须给出 addresses", "addresses are required when scope is Private"),
    "effective-before-expires": ("expires 早于 effective", "expires is earlier than effective"),
    "onset-before-expires": ("expires 早于 onset：预警在事件开始前就已失效", "expires is earlier than onset: the alert would expire before the event begins"),
}
# fmt: on


def cap_error(element: str, rule: str, /, **params: object) -> CapError:
    """A `CapError` whose message (zh-CN or English) names the element, the rule and its reason."""
    zh, en = RULES[rule]
    message = t(
        "CAP 消息被拒绝：{element}（规则 {rule}）：" + zh,
        "CAP message refused: {element} (rule {rule}): " + en,
        element=element,
        rule=rule,
        **params,
    )
    return CapError(message, element=element, rule=rule)


def show(text: str, limit: int = 80) -> str:
    """A value quoted for an error message, cut short so a hostile megabyte never lands in a log."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_children(path: str, names: Iterable[str], allowed: dict[str, Occurs]) -> None:
    """Check an element's CAP children against the schema: none unknown, each as often as allowed.

    Raises:
        CapError: an unknown child (rule `unknown-element`), a repeated one (`cardinality`) or a
            missing required one (`required`).
    """
    counts: dict[str, int] = {}
    for name in names:
        if name not in allowed:
            raise cap_error(f"{path}/{name}", "unknown-element")
        counts[name] = counts.get(name, 0) + 1
        most = allowed[name][1]
        if most is not None and counts[name] > most:
            raise cap_error(f"{path}/{name}", "cardinality", most=most)
    for name, (least, _) in allowed.items():
        if counts.get(name, 0) < least:
            raise cap_error(f"{path}/{name}", "required")


def parse_enum(kind: type[E], text: str, path: str) -> E:
    """The enumeration member spelled exactly `text` (surrounding whitespace ignored).

    Raises:
        CapError: `text` is not one of the values CAP 1.2 allows (rule `enumeration`).
    """
    try:
        return kind(text.strip())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise cap_error(path, "enumeration", value=show(text), allowed=allowed) from None


def parse_datetime(text: str, path: str) -> datetime:
    """A CAP datetime, `YYYY-MM-DDThh:mm:ss±hh:mm`, as an aware `datetime`.

    Raises:
        CapError: no offset, a `Z`, fractional seconds or an impossible date (rule `datetime-format`).
    """
    value = text.strip()
    if _DATETIME.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise cap_error(path, "datetime-format", value=show(value))


def parse_token(text: str, path: str) -> str:
    """An identifier or sender: non-empty, without whitespace, commas, `<` or `&` (CAP 1.2 §3.2.1).

    Raises:
        CapError: empty or containing a forbidden character (rule `token`).
    """
    value = text.strip()
    if not value or _FORBIDDEN_IN_TOKEN.search(value):
        raise cap_error(path, "token", value=show(value))
    return value


def parse_language(text: str, path: str) -> str:
    """An RFC 3066 language tag (xs:language); empty means the CAP default, en-US.

    Raises:
        CapError: not a language tag (rule `language`).
    """
    value = text.strip()
    if not value:
        return DEFAULT_LANGUAGE
    if not _LANGUAGE.fullmatch(value):
        raise cap_error(path, "language", value=show(value))
    return value


def parse_decimal(text: str, path: str) -> float:
    """A plain, finite decimal number (no exponent, no NaN or infinity), as a float.

    Raises:
        CapError: anything else (rule `decimal`).
    """
    number = _finite(text.strip())
    if number is None:  # also thousands of digits, which overflow to infinity
        raise cap_error(path, "decimal", value=show(text))
    return number


def parse_size(text: str, path: str) -> int:
    """A resource size in bytes: a non-negative integer.

    Raises:
        CapError: anything else (rule `integer`).
    """
    value = text.strip()
    # Bounded before int(): Python refuses to convert strings of over 4,300 digits (a ValueError).
    if len(value) > MAX_SIZE_DIGITS or not _INTEGER.fullmatch(value):
        raise cap_error(path, "integer", value=show(value))
    return int(value)


def split_list(text: str) -> tuple[str, ...]:
    """A whitespace-separated CAP list (`addresses`, `incidents`); double quotes group words."""
    return tuple(quoted or word for quoted, word in _QUOTED_OR_WORD.findall(text))


def parse_references(text: str, path: str) -> tuple[Reference, ...]:
    """`<references>`: a non-empty, whitespace-separated list of `sender,identifier,sent` triplets.

    Raises:
        CapError: empty, or an entry that is not a well-formed triplet (rule `references`; an
            impossible date in a triplet is rule `datetime-format`).
    """
    references = []
    for entry in text.split():
        parts = entry.split(",")
        tokens_ok = len(parts) == 3 and all(parts) and not _FORBIDDEN_IN_TOKEN.search(entry.replace(",", ""))
        if not tokens_ok or not _DATETIME.fullmatch(parts[2]):
            raise cap_error(path, "references", value=show(entry))
        references.append(Reference(parts[0], parts[1], parse_datetime(parts[2], path), entry))
    if not references:
        raise cap_error(path, "references", value=show(text))
    return tuple(references)


def _finite(text: str) -> float | None:
    number = float(text) if _DECIMAL.fullmatch(text) else math.inf
    return number if math.isfinite(number) else None


def _coordinate_pair(text: str, path: str) -> tuple[float, float]:
    parts = [_finite(part) for part in text.split(",")]
    if len(parts) != 2 or parts[0] is None or parts[1] is None:
        raise cap_error(path, "coordinates", value=show(text))
    return parts[0], parts[1]


def parse_polygon(text: str, path: str) -> Polygon:
    """`<polygon>`: whitespace-separated `lat,lon` pairs (closure and range are checked by `validate`).

    Raises:
        CapError: a pair that is not two decimals joined by a comma (rule `coordinates`), or more
            than MAX_POLYGON_POINTS pairs (rule `polygon-point-limit`).
    """
    pairs = text.split()
    if len(pairs) > MAX_POLYGON_POINTS:  # before any number is read
        raise cap_error(path, "polygon-point-limit", count=len(pairs), limit=MAX_POLYGON_POINTS)
    return Polygon(tuple(_coordinate_pair(pair, path) for pair in pairs))


def parse_circle(text: str, path: str) -> Circle:
    """`<circle>`: `lat,lon radius`, the radius in kilometres (range is checked by `validate`).

    Raises:
        CapError: not a point and a radius separated by whitespace (rule `circle`), or a bad point
            (rule `coordinates`).
    """
    parts = text.split()
    radius = _finite(parts[1]) if len(parts) == 2 else None
    if radius is None:
        raise cap_error(path, "circle", value=show(text))
    lat, lon = _coordinate_pair(parts[0], path)
    return Circle(lat, lon, radius)


def _check_point(lat: float, lon: float, path: str) -> None:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise cap_error(path, "coordinates", value=f"{lat},{lon}")


def _check_area(area: CapArea, path: str) -> None:
    for i, polygon in enumerate(area.polygons, 1):
        where, points = f"{path}/polygon[{i}]", polygon.points
        if len(points) < MIN_POLYGON_POINTS:
            raise cap_error(where, "polygon-points", count=len(points))
        if len(points) > MAX_POLYGON_POINTS:
            raise cap_error(where, "polygon-point-limit", count=len(points), limit=MAX_POLYGON_POINTS)
        for lat, lon in points:
            _check_point(lat, lon, where)
        if points[0] != points[-1]:
            raise cap_error(where, "polygon-closed")
    for i, circle in enumerate(area.circles, 1):
        where = f"{path}/circle[{i}]"
        _check_point(circle.lat, circle.lon, where)
        if not 0 <= circle.radius_km < math.inf:  # also refuses NaN from a document built in code
            raise cap_error(where, "circle", value=f"{circle.lat},{circle.lon} {circle.radius_km}")
    if area.ceiling is not None and area.altitude is None:
        raise cap_error(f"{path}/ceiling", "ceiling-altitude")


def _check_times(info: CapInfo, msg_type: MsgType, path: str) -> None:
    if info.effective and info.expires and info.effective > info.expires:
        raise cap_error(f"{path}/expires", "effective-before-expires")
    # A Cancel's info is a tombstone and may keep the old onset past its own short expiry (NWS does).
    if (
        msg_type in (MsgType.ALERT, MsgType.UPDATE)
        and info.onset
        and info.expires
        and info.onset > info.expires
    ):
        raise cap_error(f"{path}/expires", "onset-before-expires")


def validate(alert: CapAlert) -> None:
    """Check the rules of CAP 1.2 that hold across fields (the prose rules the XSD misses).

    Applies to any `CapAlert`, parsed or built in code.

    Raises:
        CapError: the first rule broken, naming the element and the rule.
    """
    parse_token(alert.identifier, "alert/identifier")
    parse_token(alert.sender, "alert/sender")
    # Update and Cancel act on earlier messages; Ack and Error answer them (CAP 1.2 §3.2.1 msgType).
    if alert.msg_type is not MsgType.ALERT and not alert.references:
        raise cap_error("alert/references", "references-required", msg_type=alert.msg_type.value)
    if (alert.scope is Scope.RESTRICTED) != bool(alert.restriction):
        raise cap_error("alert/restriction", "restriction-scope")
    if alert.scope is Scope.PRIVATE and not alert.addresses:
        raise cap_error("alert/addresses", "addresses-scope")
    points = sum(len(p.points) for info in alert.infos for area in info.areas for p in area.polygons)
    points += sum(len(area.circles) for info in alert.infos for area in info.areas)
    if points > MAX_MESSAGE_POINTS:
        raise cap_error("alert", "message-point-limit", count=points, limit=MAX_MESSAGE_POINTS)
    for i, info in enumerate(alert.infos, 1):
        _check_times(info, alert.msg_type, f"alert/info[{i}]")
        for j, area in enumerate(info.areas, 1):
            _check_area(area, f"alert/info[{i}]/area[{j}]")
