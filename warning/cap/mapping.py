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

import asyncio
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
# Shape matching runs in a worker thread, over edges indexed by latitude band (a village is tested
# only against the edges of its band). A shape whose edges would still cost more than this many
# village × edge tests in one message is refused (a zig-zag crafted so every edge spans every band);
# real boundaries cost a few hundred thousand. Point counts are limited by the parser (`validate`).
MAX_EDGE_TESTS = 10_000_000
_MAX_BANDS = 256

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


Edge = tuple[tuple[float, float], tuple[float, float]]


def in_polygon(lat: float, lon: float, polygon: Polygon) -> bool:
    """Whether the point is inside the polygon or on its edge (ray casting on lon/lat as a plane)."""
    points = polygon.points
    # Pairing each point with the next, wrapping around, makes the closing point a harmless zero-length edge.
    return _ray_cast(lat, lon, list(zip(points, points[1:] + points[:1], strict=True)))


def _ray_cast(lat: float, lon: float, edges: Sequence[Edge]) -> bool:
    """Inside or on an edge, over `edges`: all the polygon's, or every edge that spans `lat`'s band."""
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

    async def match(self, area: CapArea, path: str = "alert/info/area") -> set[str]:
        """Our area codes this `<area>` (at `path`) covers: geocode prefixes and 12-digit village codes.

        Raises:
            CapError: rule `area-complexity` when its shapes would cost over MAX_EDGE_TESTS tests.
        """
        found: set[str] = set()
        for name, value in area.geocodes:
            prefix = _geocode_prefix(name, value)
            matched = await self._by_prefix(prefix) if prefix else None
            if matched:
                found.add(matched)
        if area.polygons or area.circles:
            located = await self._villages_located()
            # CPU work over (up to) every village and edge: off the event loop, bounded by MAX_EDGE_TESTS.
            found |= await asyncio.to_thread(match_shapes, located, area.polygons, area.circles, path)
        return found


class _Ring:
    """A polygon prepared for many point tests: its bounding box, and its edges by latitude band.

    `contains` gives exactly `in_polygon`'s answer: a point can be on an edge, or be crossed by one
    on its eastward ray, only if its latitude lies within that edge's (widened by _EPSILON), so only
    the edges of the point's band are looked at.
    """

    def __init__(self, polygon: Polygon) -> None:
        points = polygon.points
        lats = [lat for lat, _ in points]
        lons = [lon for _, lon in points]
        self.box = (min(lats) - _EPSILON, max(lats) + _EPSILON, min(lons) - _EPSILON, max(lons) + _EPSILON)
        edges: list[Edge] = list(zip(points, points[1:] + points[:1], strict=True))
        self._low = self.box[0]
        self._count = max(1, min(_MAX_BANDS, len(edges)))
        self._height = (self.box[1] - self.box[0]) / self._count or 1.0
        self.bands: list[list[Edge]] = [[] for _ in range(self._count)]
        for edge in edges:
            (y1, _), (y2, _) = edge
            for band in range(self.band(min(y1, y2) - _EPSILON), self.band(max(y1, y2) + _EPSILON) + 1):
                self.bands[band].append(edge)

    def band(self, lat: float) -> int:
        return min(self._count - 1, max(0, int((lat - self._low) / self._height)))

    def in_box(self, lat: float, lon: float) -> bool:
        box = self.box
        return box[0] <= lat <= box[1] and box[2] <= lon <= box[3]

    def contains(self, lat: float, lon: float) -> bool:
        return _ray_cast(lat, lon, self.bands[self.band(lat)])


def _circle_box(circle: Circle) -> tuple[float, float, float, float]:
    # A box surely holding the circle (1 % wider than its radius in degrees); near a pole, all longitudes.
    dlat = math.degrees(circle.radius_km / EARTH_RADIUS_KM) * 1.01 + _EPSILON
    cos = math.cos(math.radians(circle.lat))
    dlon = dlat / cos if cos > 0.01 else 360.0
    if not -180.0 <= circle.lon - dlon <= circle.lon + dlon <= 180.0:  # across the antimeridian
        return circle.lat - dlat, circle.lat + dlat, -360.0, 360.0
    return circle.lat - dlat, circle.lat + dlat, circle.lon - dlon, circle.lon + dlon


def match_shapes(
    villages: Sequence[tuple[str, float, float]],
    polygons: Sequence[Polygon],
    circles: Sequence[Circle],
    path: str = "alert/info/area",
) -> set[str]:
    """Codes of the `(code, lat, lon)` villages inside any of the polygons or circles (CPU-bound:
    callers on the event loop run it with `asyncio.to_thread`).

    Raises:
        CapError: rule `area-complexity` at `path` when the polygons would need over MAX_EDGE_TESTS
            village × edge tests (counted before any is made).
    """
    rings = [_Ring(p) for p in polygons]
    candidates = [
        [(code, lat, lon) for code, lat, lon in villages if ring.in_box(lat, lon)] for ring in rings
    ]
    cost = sum(
        len(ring.bands[ring.band(lat)])
        for ring, near in zip(rings, candidates, strict=True)
        for _, lat, _ in near
    )
    if cost > MAX_EDGE_TESTS:
        raise _mapping_error(
            path,
            "area-complexity",
            "多边形过于复杂（需要 {cost} 次村庄 × 边的判断，上限 {limit}）：请简化多边形，或改用行政区划代码（geocode）",
            "the polygons are too complex ({cost} village × edge tests, over the limit of {limit}): simplify "
            "them, or use division-code geocodes",
            cost=cost,
            limit=MAX_EDGE_TESTS,
        )
    found: set[str] = set()
    for ring, near in zip(rings, candidates, strict=True):
        found.update(code for code, lat, lon in near if code not in found and ring.contains(lat, lon))
    for circle in circles:
        box = _circle_box(circle)
        found.update(
            code
            for code, lat, lon in villages
            if code not in found
            and box[0] <= lat <= box[1]
            and box[2] <= lon <= box[3]
            and in_circle(lat, lon, circle)
        )
    return found


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
        index = alert.infos.index(info) + 1
        for number, area in enumerate(info.areas, 1):
            covered = await matcher.match(area, f"alert/info[{index}]/area[{number}]")
            found |= covered
            if not covered and _describe(area) not in unmatched:
                unmatched.append(_describe(area))
        if not found and alert.msg_type is not MsgType.CANCEL:
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
