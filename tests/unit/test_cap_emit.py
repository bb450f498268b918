"""Our alert → CAP 1.2 (valid against the OASIS schema, round-tripping through map_cap) and the Atom index."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped,unused-ignore]
import pytest
import xmlschema

from tests.unit.test_cap_mapping import CMA_LIGHTNING, VILLAGES, FakeVillages
from warning.cap import CapError, choose_info, parse_cap
from warning.cap.atom import CAP_MIME_TYPE, atom_feed
from warning.cap.emit import emit_cap
from warning.cap.mapping import map_cap
from warning.model import Alert, AlertState, AlertStatus, Level

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
ATOM = "{http://www.w3.org/2005/Atom}"
SENDER = "331099-qxj"
SENDER_NAME = "测试县气象台"
CHINA = timezone(timedelta(hours=8))


@pytest.fixture(scope="session")
def samples(samples_dir: Path) -> Path:
    return samples_dir


@pytest.fixture(scope="session")
def cap_schema(samples: Path) -> xmlschema.XMLSchema:
    """The official CAP 1.2 XSD, loaded from its text so nothing (file or network) is fetched."""
    return xmlschema.XMLSchema(
        (samples / "cap12.xsd").read_text(encoding="utf-8"), allow="none", defuse="always"
    )


def typhoon(**changes: object) -> Alert:
    alert = Alert(
        id="331099-20260701-0001",
        sender=SENDER,
        sent=datetime(2026, 7, 1, 0, 30, tzinfo=UTC),
        event="台风",
        level=Level.ORANGE,
        areas=("331099101", "331099102001"),
        headline="测试县气象台发布台风橙色预警",
        description="预计未来24小时内受台风影响，平均风力可达10级以上。<请注意> & 防范",
        instruction="请立即转移到安全地带。",
        event_code="11B01",
        effective=datetime(2026, 7, 1, 8, 30, tzinfo=CHINA),
        onset=datetime(2026, 7, 1, 12, 0, tzinfo=CHINA),
        expires=datetime(2026, 7, 2, 8, 30, tzinfo=CHINA),
        state=AlertState.ISSUED,
    )
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


def emit(alert: Alert, references: tuple[str, ...] = ()) -> bytes:
    return emit_cap(alert, sender=SENDER, sender_name=SENDER_NAME, villages=VILLAGES, references=references)


UPDATE_REF = f"{SENDER},331099-20260701-0001,2026-07-01T08:30:00+08:00"
VARIANTS = {
    "blue": typhoon(level=Level.BLUE, event="大雾", event_code=""),
    "red": typhoon(level=Level.RED, urgency="Expected", certainty="Observed"),
    "exercise": typhoon(status=AlertStatus.EXERCISE),
    "update": typhoon(id="331099-20260701-0002", msg_type="Update", references=(UPDATE_REF,)),
    "cancel": typhoon(id="331099-20260701-0003", msg_type="Cancel", references=(UPDATE_REF,)),
    "county-wide, no texts": typhoon(areas=("331099",), headline="", description="", instruction=""),
    "no times, odd urgency": typhoon(effective=None, onset=None, expires=None, urgency="now"),
    "unknown event": typhoon(event="化工泄漏", event_code=""),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_emitted_cap_is_valid_against_the_official_schema(name: str, cap_schema: xmlschema.XMLSchema) -> None:
    """Every variant (blue, red, exercise, update, cancel, sparse) validates against cap12.xsd and parse_cap."""
    document = emit(VARIANTS[name])
    cap_schema.validate(SafeET.fromstring(document))
    parse_cap(document)


def test_emitted_cap_has_zh_and_en_blocks_and_offset_times() -> None:
    """Two <info> blocks, zh-CN then en-US; every time carries +08:00 and none ends in Z."""
    document = emit(typhoon())
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root: Element = SafeET.fromstring(document)
    languages = [info.findtext(f"{CAP}language") for info in root.iter(f"{CAP}info")]
    assert languages == ["zh-CN", "en-US"]
    times = re.findall(rb"<(sent|effective|onset|expires)>([^<]*)<", document)
    assert times and all(value.endswith(b"+08:00") for _, value in times)
    assert root.findtext(f"{CAP}sent") == "2026-07-01T08:30:00+08:00"
    assert not re.search(rb"\dZ<", document)


def test_emitted_cap_fields() -> None:
    """Sender, scope, category, response, severity, colour, event code and 12-digit geocodes are as specified."""
    root: Element = SafeET.fromstring(emit(typhoon()))
    assert root.findtext(f"{CAP}sender") == SENDER
    assert root.findtext(f"{CAP}scope") == "Public"
    assert root.find(f"{CAP}references") is None
    zh, en = root.iter(f"{CAP}info")
    assert zh.findtext(f"{CAP}category") == "Met"
    assert zh.findtext(f"{CAP}responseType") == "Evacuate"
    assert zh.findtext(f"{CAP}severity") == "Severe"
    assert zh.findtext(f"{CAP}senderName") == SENDER_NAME
    assert zh.findtext(f"{CAP}eventCode/{CAP}value") == "11B01"
    assert zh.findtext(f"{CAP}parameter/{CAP}value") == "橙色"
    assert en.findtext(f"{CAP}event") == "Typhoon"
    assert en.findtext(f"{CAP}headline") == "Typhoon orange warning"
    areas = [
        (a.findtext(f"{CAP}areaDesc"), a.findtext(f"{CAP}geocode/{CAP}value")) for a in zh.iter(f"{CAP}area")
    ]
    assert areas == [("城关镇", "331099101000"), ("后村", "331099102001")]
    assert zh.findtext(f"{CAP}area/{CAP}geocode/{CAP}valueName") == "CPEAS Geographic Code"


def test_cancel_and_update_carry_references_and_all_clear() -> None:
    """A Cancel says AllClear and references the alert it cancels; explicit references win."""
    root: Element = SafeET.fromstring(emit(VARIANTS["cancel"]))
    assert root.findtext(f"{CAP}msgType") == "Cancel"
    assert root.findtext(f"{CAP}references") == UPDATE_REF
    assert root.findtext(f"{CAP}info/{CAP}responseType") == "AllClear"
    other = f"{SENDER},x-1,2026-07-01T09:00:00+08:00"
    root = SafeET.fromstring(emit(VARIANTS["update"], references=(other, UPDATE_REF)))
    assert root.findtext(f"{CAP}references") == f"{other} {UPDATE_REF}"


def test_text_is_escaped_not_interpreted() -> None:
    """Markup characters in the description survive as text."""
    info = choose_info(parse_cap(emit(typhoon())))
    assert info is not None and info.description.endswith("<请注意> & 防范")


@pytest.mark.parametrize("changes", [{"msg_type": "Ack"}, {"id": "has space"}, {"id": ""}])
def test_unemittable_alerts_are_refused(changes: dict[str, object]) -> None:
    """An msgType other than Alert/Update/Cancel, or an id CAP cannot carry, raises CapError."""
    with pytest.raises(CapError):
        emit(typhoon(**changes))


@pytest.mark.parametrize("name", ["red", "update", "county-wide, no texts", "exercise"])
async def test_round_trip_gives_back_the_same_alert(name: str) -> None:
    """map_cap(parse_cap(emit_cap(a))) returns a's event, level, areas, times, texts and references."""
    alert = VARIANTS[name]
    result = await map_cap(parse_cap(emit(alert)), FakeVillages())
    assert result.identifier == alert.id
    assert (result.sender, result.sent, result.status, result.msg_type) == (
        alert.sender,
        alert.sent,
        alert.status,
        alert.msg_type,
    )
    assert (result.event, result.event_code, result.level) == (alert.event, alert.event_code, alert.level)
    assert result.areas == alert.areas
    assert result.unmatched == ()
    assert (result.effective, result.onset, result.expires) == (alert.effective, alert.onset, alert.expires)
    assert result.headline == (alert.headline or f"{alert.event}橙色预警")
    assert (result.description, result.instruction) == (alert.description, alert.instruction)
    assert (result.urgency, result.certainty) == (alert.urgency, alert.certainty)
    assert result.references == alert.references
    assert result.language == "zh-CN"


# --- Atom -----------------------------------------------------------------------------------------

BASE = "https://warning.example.cn/"


def feed_of(*alerts: Alert) -> Element:
    document = atom_feed(
        alerts, base_url=BASE, title="测试县预警", updated=datetime(2026, 7, 1, 9, tzinfo=CHINA)
    )
    assert document.startswith(b"<?xml")
    root: Element = SafeET.fromstring(document)
    return root


def test_atom_feed_links_each_alert_to_its_cap_document() -> None:
    """Each issued alert is an entry whose alternate link is its CAP document, typed application/cap+xml."""
    red = typhoon(id="a&b<1>", level=Level.RED, headline="")
    root = feed_of(typhoon(), red)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}id") == "https://warning.example.cn/feeds/alerts.atom"
    assert root.findtext(f"{ATOM}updated") == "2026-07-01T09:00:00+08:00"
    assert root.findtext(f"{ATOM}author/{ATOM}name")
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 2
    links = [e.find(f"{ATOM}link") for e in entries]
    assert [(link.get("rel"), link.get("type")) for link in links if link is not None] == [
        ("alternate", CAP_MIME_TYPE)
    ] * 2
    assert links[0] is not None
    assert links[0].get("href") == "https://warning.example.cn/api/v1/alerts/331099-20260701-0001/cap"
    assert links[1] is not None
    assert links[1].get("href") == "https://warning.example.cn/api/v1/alerts/a%26b%3C1%3E/cap"
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["测试县气象台发布台风橙色预警", "台风红色预警"]
    assert all(e.findtext(f"{ATOM}id") and e.findtext(f"{ATOM}summary") for e in entries)
    assert entries[0].findtext(f"{ATOM}updated") == "2026-07-01T00:30:00+00:00"


def test_atom_feed_leaves_out_drills_tests_and_unissued_alerts() -> None:
    """Exercise, Test, Draft and System alerts, and drafts awaiting approval, never enter the public feed."""
    hidden = [
        typhoon(status=AlertStatus.EXERCISE),
        typhoon(status=AlertStatus.TEST),
        typhoon(status=AlertStatus.DRAFT),
        typhoon(status=AlertStatus.SYSTEM),
        typhoon(state=AlertState.DRAFT),
        typhoon(state=AlertState.PENDING_APPROVAL),
        typhoon(state=AlertState.REJECTED),
    ]
    assert feed_of(*hidden).findall(f"{ATOM}entry") == []
    assert len(feed_of(*hidden, typhoon(), typhoon(state=AlertState.CANCELLED)).findall(f"{ATOM}entry")) == 2


def test_empty_atom_feed_is_well_formed() -> None:
    """With no alerts the feed still has its id, title, updated and self link."""
    root = feed_of()
    assert root.find(f"{ATOM}link") is not None
    assert root.findtext(f"{ATOM}title") == "测试县预警"


async def test_cma_sample_re_emitted_maps_to_the_same_alert(samples: Path) -> None:
    """The CMA sample, mapped, turned into our alert and emitted, maps back to the very same alert."""
    first = await map_cap(parse_cap((samples / CMA_LIGHTNING).read_bytes()), FakeVillages())
    assert first.level is not None
    alert = Alert(
        id=first.identifier,
        sender=first.sender,
        sent=first.sent,
        event=first.event,
        level=first.level,
        areas=first.areas,
        headline=first.headline,
        description=first.description,
        instruction=first.instruction,
        event_code=first.event_code,
        status=first.status,
        msg_type=first.msg_type,
        references=first.references,
        urgency=first.urgency,
        certainty=first.certainty,
        effective=first.effective,
        onset=first.onset,
        expires=first.expires,
    )
    again = await map_cap(parse_cap(emit(alert)), FakeVillages())
    assert again == dataclasses.replace(first, sender=SENDER)
