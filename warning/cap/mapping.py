"""Mapping a parsed CAP 1.2 alert onto our alert: its language, colour level, event code and villages.

`map_cap` picks the `<info>` block to use (zh-CN preferred, then the first), reads the warning colour,
and matches every `<area>` against our directory: division-code geocodes by prefix, polygons and
circles against village coordinates. What matched becomes the alert's areas; areas that matched
none of our villages are reported by description, so an operator sees what was left out.

Level: an explicit colour wins over `<severity>`, because the colour is what a Chinese bureau
actually issues (GB/T 27962) and severity is often derived or stale (Taiwan WRA sends severity
Moderate with `alert_color=紅色`). The colour is looked for in colour-like `<parameter>`s
(`alert_color=紅色`, MeteoAlarm `awareness_level=2; yellow; Moderate`), then in the headline and the
event (`黄色`, `lightning yellow warning`), then as a CMA level (`Ⅲ级` / `Level III`: Ⅰ red, Ⅱ orange,
Ⅲ yellow, Ⅳ blue, the national four-level scheme; CMA prints it beside the colour, `[Ⅲ级/较重]`).
Only then does severity decide (Minor blue … Extreme red); Unknown severity and no colour gives
`None`, for a person to choose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from warning.cap.document import CapAlert, CapArea, CapInfo, Circle, MsgType, Polygon, Severity, choose_info
from warning.errors import CapError
from warning.i18n import t
from warning.model import AlertStatus, Level, Village

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
VILLAGE_BATCH = 500
_EPSILON = 1e-9  # degrees: a village this close to a polygon's edge is on it, hence inside

LEVEL_OF_SEVERITY = {
    Severity.MINOR: Level.BLUE,
    Severity.MODERATE: Level.YELLOW,
    Severity.SEVERE: Level.ORANGE,
    Severity.EXTREME: Level.RED,
}
_COLOUR_CHARS = {"红": Level.RED, "紅": Level.RED, "橙": Level.ORANGE, "黄": Level.YELLOW, "黃": Level.YELLOW}
_COLOUR_CHARS |= {"蓝": Level.BLUE, "藍": Level.BLUE}
_ENGLISH_COLOURS = {"red": Level.RED, "orange": Level.ORANGE, "amber": Level.ORANGE, "yellow": Level.YELLOW}
_ENGLISH_COLOURS |= {"blue": Level.BLUE}
_ROMAN_LEVELS = {"Ⅰ": Level.RED, "Ⅱ": Level.ORANGE, "Ⅲ": Level.YELLOW, "Ⅳ": Level.BLUE}
_ROMAN_LEVELS |= {"I": Level.RED, "II": Level.ORANGE, "III": Level.YELLOW, "IV": Level.BLUE}

_CHINESE_COLOUR = re.compile(r"([红紅橙黄黃蓝藍])色")
_PARAMETER_COLOUR = re.compile(r"([红紅橙黄黃蓝藍])色?|\b(red|orange|amber|yellow|blue)\b", re.IGNORECASE)
# "Red Flag Warning" (US fire weather) and "AMBER Alert" (abduction) are names, not colour levels.
_ENGLISH_COLOUR = re.compile(r"\b(red|orange|yellow|blue)\s+(?:warning|alert|signal)s?\b", re.IGNORECASE)
# Arabic and Chinese numerals before 级 are wind forces (阵风8级), so only Roman numerals count.
_ROMAN_LEVEL = re.compile(r"(?<![A-Za-z])(Ⅳ|Ⅲ|Ⅱ|Ⅰ|IV|III|II|I)\s*[级級]|\bLevel\s+(IV|III|II|I)\b")
_COLOUR_PARAMETER_NAMES = ("color", "colour", "level", "signal", "颜色", "顏色", "级", "級")  # 级别, 等級, …

# GB/T 35561 emergency-event codes: two digits, a letter, two digits (11B01 typhoon, 11B03 rainstorm).
_EVENT_CODE = re.compile(r"[0-9]{2}[A-Z][0-9]{2}")
_EVENT_CODE_NAMES = ("cma", "cpeas", "gb/t", "gbt", "预警", "事件")

# Province-level prefixes of GB/T 2260 codes; SAME/FIPS codes start with 0 and never collide.
_PROVINCE_CODES = (
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82"
)
_PROVINCES = frozenset(_PROVINCE_CODES.split())
_FOREIGN_GEOCODES = frozenset({"same", "fips6", "ugc", "emma_id", "nuts2", "nuts3", "zip", "postcode"})


class VillageSource(Protocol):
    """Where villages come from (`warning.directory.store.Directory` is one)."""

    async def village_codes(self, areas: Iterable[str] = ("",)) -> list[str]: ...

    async def villages(self, codes: Sequence[str]) -> list[Village]: ...


@dataclass(frozen=True, slots=True)
class MappedAlert:
    """A CAP alert in our terms; `level` is None when neither a colour nor a severity says it."""

    identifier: str
    sender: str
    sent: datetime
    status: AlertStatus
    msg_type: str
    references: tuple[str, ...]  # "sender,identifier,sent" triplets
    event: str
    event_code: str
    level: Level | None
    urgency: str
    certainty: str
    headline: str
    description: str
    instruction: str
    language: str
    effective: datetime | None
    onset: datetime | None
    expires: datetime | None
    areas: tuple[str, ...]  # village codes (12-digit) or coarser prefixes that matched, sorted
    unmatched: tuple[str, ...]  # descriptions of areas that matched none of our villages


def _mapping_error(element: str, rule: str, zh: str, en: str, **params: object) -> CapError:
    message = t(
        "CAP 消息被拒绝：{element}（规则 {rule}）：" + zh,
        "CAP message refused: {element} (rule {rule}): " + en,
        element=element,
        rule=rule,
        **params,
    )
    return CapError(message, element=element, rule=rule)


# --- level and event code -------------------------------------------------------------------------


def _parameter_colour(value: str) -> Level | None:
    match = _PARAMETER_COLOUR.search(value)
    if match is None:
        return None
    chinese, english = match.groups()
    return _COLOUR_CHARS[chinese] if chinese else _ENGLISH_COLOURS[english.lower()]


def colour_of(info: CapInfo) -> Level | None:
    """The warning colour `info` states explicitly (parameters, then headline, then event), if any."""
    for name, value in info.parameters:
        if any(word in name.lower() for word in _COLOUR_PARAMETER_NAMES):
            found = _parameter_colour(value)
            if found is not None:
                return found
    for text in (info.headline, info.event):
        # The last colour is the current one: "暴雨黄色预警升级为橙色预警".
        chinese = _CHINESE_COLOUR.findall(text)
        if chinese:
            return _COLOUR_CHARS[chinese[-1]]
        english = _ENGLISH_COLOUR.findall(text)
        if english:
            return _ENGLISH_COLOURS[english[-1].lower()]
    for text in (info.headline, info.event):
        roman = _ROMAN_LEVEL.findall(text)
        if roman:
            numeral = next(n for n in roman[-1] if n)
            return _ROMAN_LEVELS[numeral]
    return None


def level_of(info: CapInfo) -> Level | None:
    """The alert's colour level: the explicit colour when stated, else from severity, else None."""
    return colour_of(info) or LEVEL_OF_SEVERITY.get(info.severity)


def event_code_of(info: CapInfo) -> str:
    """The Chinese event code (`11B01` typhoon) from `<eventCode>`, or "" when only foreign codes exist."""
    for name, value in info.event_codes:
        lowered = name.lower()
        if value and (_EVENT_CODE.fullmatch(value) or any(word in lowered for word in _EVENT_CODE_NAMES)):
            return value
    return ""


# --- areas ----------------------------------------------------------------------------------------


def division_prefix(code: str) -> str | None:
    """The real prefix of a 6/9/12-digit division code, trailing zero groups dropped; None if not one.

    `130602000000` → `130602`, `331099101000` → `331099101`, `330000` → `33`.
    """
    value = code.strip()
    if (
        len(value) not in (6, 9, 12)
        or not (value.isascii() and value.isdigit())
        or value[:2] not in _PROVINCES
    ):
        return None
    bounds = [(0, 2), (2, 4), (4, 6), (6, 9), (9, 12)]
    groups = [value[a:b] for a, b in bounds if b <= len(value)]
    while len(groups) > 1 and not groups[-1].strip("0"):
        groups.pop()
    return "".join(groups)


def _geocode_prefix(name: str, value: str) -> str | None:
    lowered = name.strip().lower()
    if lowered in _FOREIGN_GEOCODES or lowered.startswith("profile:cap-cp"):
        return None
    return division_prefix(value)


def _on_segment(lat: float, lon: float, a: tuple[float, float], b: tuple[float, float]) -> bool:
    (y1, x1), (y2, x2) = a, b
    cross = (x2 - x1) * (lat - y1) - (y2 - y1) * (lon - x1)
    if abs(cross) > _EPSILON * max(1.0, abs(x2 - x1) + abs(y2 - y1)):
        return False
    return min(x1, x2) - _EPSILON <= lon <= max(x1, x2) + _EPSILON and (
        min(y1, y2) - _EPSILON <= lat <= max(y1, y2) + _EPSILON
    )


def in_polygon(lat: float, lon: float, polygon: Polygon) -> bool:
    """Whether the point is inside the polygon or on its edge (ray casting on lon/lat as a plane)."""
    points = polygon.points
    # Pairing each point with the next, wrapping around, makes the closing point a harmless zero-length edge.
    edges = list(zip(points, points[1:] + points[:1], strict=True))
    if any(_on_segment(lat, lon, a, b) for a, b in edges):
        return True
    inside = False
    for (y1, x1), (y2, x2) in edges:
        if (y1 > lat) != (y2 > lat):
            crossing = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < crossing:
                inside = not inside
    return inside


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def in_circle(lat: float, lon: float, circle: Circle) -> bool:
    """Whether the point lies within the circle (radius 0 holds only its centre)."""
    return distance_km(lat, lon, circle.lat, circle.lon) <= circle.radius_km


class _AreaMatcher:
    """Matches `<area>`s against one village source, loading village coordinates at most once."""

    def __init__(self, source: VillageSource, county_prefix: str) -> None:
        self._source = source
        self._county = county_prefix
        self._located: list[tuple[str, float, float]] | None = None

    async def _villages_located(self) -> list[tuple[str, float, float]]:
        if self._located is None:
            codes = await self._source.village_codes([self._county])
            located = []
            for start in range(0, len(codes), VILLAGE_BATCH):
                for village in await self._source.villages(codes[start : start + VILLAGE_BATCH]):
                    if village.lat is not None and village.lon is not None:
                        located.append((village.code, village.lat, village.lon))
            self._located = located
        return self._located

    async def _by_prefix(self, prefix: str) -> str | None:
        county = self._county
        if county and not (prefix.startswith(county) or county.startswith(prefix)):
            return None
        # A province- or city-wide alert reaches us as our own county, not as the whole province.
        scope = county if len(county) > len(prefix) else prefix
        return scope if await self._source.village_codes([scope]) else None

    async def match(self, area: CapArea) -> set[str]:
        """Our area codes this `<area>` covers: geocode prefixes and 12-digit village codes."""
        found: set[str] = set()
        for name, value in area.geocodes:
            prefix = _geocode_prefix(name, value)
            matched = await self._by_prefix(prefix) if prefix else None
            if matched:
                found.add(matched)
        if area.polygons or area.circles:
            # A bounding box first: most of a county's thousands of villages lie outside it.
            boxes = [(_bounds(p), p) for p in area.polygons]
            for code, lat, lon in await self._villages_located():
                if any(_in_bounds(lat, lon, box) and in_polygon(lat, lon, p) for box, p in boxes) or any(
                    in_circle(lat, lon, c) for c in area.circles
                ):
                    found.add(code)
        return found


def _bounds(polygon: Polygon) -> tuple[float, float, float, float]:
    lats = [lat for lat, _ in polygon.points]
    lons = [lon for _, lon in polygon.points]
    return min(lats) - _EPSILON, max(lats) + _EPSILON, min(lons) - _EPSILON, max(lons) + _EPSILON


def _in_bounds(lat: float, lon: float, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= lat <= box[1] and box[2] <= lon <= box[3]


def _describe(area: CapArea) -> str:
    codes = ", ".join(f"{name}={value}" for name, value in area.geocodes)
    shapes = [f"{len(area.polygons)} polygon(s)"] if area.polygons else []
    shapes += [f"{len(area.circles)} circle(s)"] if area.circles else []
    detail = "; ".join(filter(None, [codes, *shapes]))
    desc = area.area_desc or "?"
    return f"{desc} ({detail})" if detail else desc


def _without_covered(codes: set[str]) -> tuple[str, ...]:
    # Codes under a prefix sort right after it, so one pass drops every code a kept prefix covers.
    kept: list[str] = []
    for code in sorted(codes):
        if not (kept and code.startswith(kept[-1])):
            kept.append(code)
    return tuple(kept)


# --- the alert ------------------------------------------------------------------------------------


async def map_cap(alert: CapAlert, villages: VillageSource, *, county_prefix: str = "") -> MappedAlert:
    """Our view of a parsed CAP alert: the chosen `<info>`, its level, and the villages it covers.

    `county_prefix` ("" = the whole directory) limits matching to our county; a coarser geocode
    (a province-wide alert) becomes that prefix. Status Test/Draft/System is kept as it is: the
    caller decides that such alerts never reach the public. A Cancel needs neither `<info>` nor areas.

    Raises:
        CapError: rule `msg-type` for an Ack or Error (they carry no alert), `no-info` for an Alert
            or Update without `<info>`, `no-area-match` when no area of an Alert or Update matches
            any of our villages (the message lists the areas).
    """
    if alert.msg_type in (MsgType.ACK, MsgType.ERROR):
        raise _mapping_error(
            "alert/msgType",
            "msg-type",
            "{msg_type} 消息不包含预警",
            "an {msg_type} message carries no alert",
            msg_type=alert.msg_type.value,
        )
    info = choose_info(alert)
    if info is None and alert.msg_type is not MsgType.CANCEL:
        raise _mapping_error("alert/info", "no-info", "没有 info 块", "there is no info block")

    found: set[str] = set()
    unmatched: list[str] = []
    if info is not None:
        matcher = _AreaMatcher(villages, county_prefix)
        for area in info.areas:
            covered = await matcher.match(area)
            found |= covered
            if not covered and _describe(area) not in unmatched:
                unmatched.append(_describe(area))
        if not found and alert.msg_type is not MsgType.CANCEL:
            index = alert.infos.index(info) + 1
            raise _mapping_error(
                f"alert/info[{index}]/area",
                "no-area-match",
                "没有区域与本地村庄匹配：{areas}",
                "no area matches any of our villages: {areas}",
                areas="; ".join(unmatched) or t("（未给出区域）", "(no area given)"),
            )

    return MappedAlert(
        identifier=alert.identifier,
        sender=alert.sender,
        sent=alert.sent,
        status=alert.status,
        msg_type=alert.msg_type.value,
        references=tuple(str(reference) for reference in alert.references),
        event=info.event if info else "",
        event_code=event_code_of(info) if info else "",
        level=level_of(info) if info else None,
        urgency=info.urgency.value if info else "",
        certainty=info.certainty.value if info else "",
        headline=info.headline if info else "",
        description=info.description if info else "",
        instruction=info.instruction if info else "",
        language=info.language if info else "",
        effective=info.effective if info else None,
        onset=info.onset if info else None,
        expires=info.expires if info else None,
        areas=_without_covered(found),
        unmatched=tuple(unmatched),
    )
