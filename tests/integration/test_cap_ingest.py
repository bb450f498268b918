"""CAP in and out through the alert service: new, update, cancel, drills, tests, and what we emit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from defusedxml import ElementTree

from tests.integration.conftest import engine_settings
from warning.broadcast import AlertRequest, Broadcaster
from warning.cap import parse_cap
from warning.cap.emit import cap_time, emit_cap
from warning.config import TwilioSettings
from warning.errors import AlertNotFound, CapError
from warning.model import Alert, AlertState, AlertStatus, Level
from warning.sandbox.twilio import TwilioSandbox
from warning.store import Store

VILLAGE = "331099101201"


def _cap(
    identifier: str,
    *,
    level: Level = Level.ORANGE,
    msg_type: str = "Alert",
    status: AlertStatus = AlertStatus.ACTUAL,
    references: tuple[str, ...] = (),
    areas: tuple[str, ...] = (VILLAGE,),
) -> bytes:
    alert = Alert(
        identifier,
        "cma@example.cn",
        datetime.now(UTC),
        "台风",
        level,
        areas,
        headline="台风来袭",
        instruction="请立即转移。",
        status=status,
        msg_type=msg_type,
        expires=datetime.now(UTC) + timedelta(hours=3),
        event_code="11B01",
    )
    return emit_cap(alert, sender="cma@example.cn", sender_name="气象台", villages=[], references=references)


@pytest.fixture
def service(sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings]) -> Broadcaster:
    return Broadcaster(sample_store, engine_settings(sample_store, twilio_sandbox[1]))


async def test_new_update_cancel(service: Broadcaster) -> None:
    """A CAP Alert issues our alert under its identifier; an Update makes version 2; a Cancel cancels it."""
    outcome = await service.ingest_cap(_cap("CMA-1"))
    assert outcome.action == "issued" and outcome.alert.id == "CMA-1"
    assert outcome.alert.level is Level.ORANGE and outcome.alert.areas == (VILLAGE,)
    await service.fan_out(outcome.alert)
    sent = cap_time(outcome.alert.sent)
    update = _cap("CMA-2", level=Level.RED, msg_type="Update", references=(f"cma@example.cn,CMA-1,{sent}",))
    updated = await service.ingest_cap(update)
    assert updated.action == "updated" and updated.alert.id == "CMA-1" and updated.alert.version == 2
    assert updated.alert.level is Level.RED
    cancel = _cap("CMA-3", msg_type="Cancel", references=(f"cma@example.cn,CMA-1-v2,{sent}",))
    cancelled = await service.ingest_cap(cancel)
    assert cancelled.action == "cancelled" and cancelled.alert.state is AlertState.CANCELLED
    # Without a public URL the service also audits, once, that the alert's messages carry no links.
    actions = [
        e["action"] for e in await service.alerts.audit_log("CMA-1") if e["action"] != "withhold_links"
    ]
    assert actions == ["issue", "update", "cancel"]


async def test_unknown_or_ambiguous_references_are_refused(service: Broadcaster) -> None:
    """An Update naming no alert of ours, or two of them, is refused rather than guessed."""
    with pytest.raises(AlertNotFound):
        await service.ingest_cap(
            _cap("X-2", msg_type="Update", references=("cma@example.cn,NOPE,2026-01-01T00:00:00+08:00",))
        )
    for identifier in ("A-1", "B-1"):
        await service.ingest_cap(_cap(identifier))
    both = ("cma@example.cn,A-1,2026-01-01T00:00:00+08:00", "cma@example.cn,B-1,2026-01-01T00:00:00+08:00")
    with pytest.raises(Exception, match="A-1"):
        await service.ingest_cap(_cap("X-3", msg_type="Cancel", references=both))
    assert (await service.alerts.get("A-1")).state is AlertState.ISSUED


async def test_test_status_never_reaches_the_public(service: Broadcaster) -> None:
    """A CAP message with status Test is kept as a draft and queues nothing."""
    outcome = await service.ingest_cap(_cap("T-1", status=AlertStatus.TEST))
    assert outcome.action == "draft" and outcome.alert.state is AlertState.DRAFT
    _, counts = await service.status("T-1")
    assert all(not c.counts for c in counts.values())


async def test_exercise_is_a_drill_and_outside_areas_are_refused(service: Broadcaster) -> None:
    """Exercise becomes a drill; a message for areas none of our villages lie in is refused with a reason."""
    drill = await service.ingest_cap(_cap("E-1", status=AlertStatus.EXERCISE))
    assert drill.alert.exercise
    with pytest.raises(CapError, match="130602"):
        await service.ingest_cap(_cap("F-1", areas=("130602000000",)))


async def test_emitted_cap_reparses_to_the_same_alert(service: Broadcaster) -> None:
    """Our CAP for an issued alert parses back with our sender, both languages and 12-digit geocodes."""
    alert = await service.prepare(
        AlertRequest(
            event="台风",
            level=Level.RED,
            areas=("331099101",),
            headline="强台风",
            instruction="立即转移。",
            expires=datetime.now(UTC) + timedelta(hours=2),
        )
    )
    document = parse_cap(await service.cap_document(alert))
    assert document.identifier == alert.id and document.sender == service.settings.bureau.sender
    assert [i.language for i in document.infos] == ["zh-CN", "en-US"]
    codes = {g.value for area in document.infos[0].areas for g in area.geocodes}
    assert codes and all(len(code) == 12 and code.startswith("331099101") for code in codes)
    mapped = await service.ingest_cap(replace_identifier(await service.cap_document(alert), "COPY-1"))
    assert mapped.alert.level is Level.RED and set(mapped.alert.areas) <= set(codes) | {"331099101"}


def replace_identifier(document: bytes, identifier: str) -> bytes:
    root = ElementTree.fromstring(document)
    namespace = root.tag.split("}")[0] + "}"
    root.find(f"{namespace}identifier").text = identifier  # type: ignore[union-attr]
    from xml.etree import ElementTree as PlainTree  # serialising a tree we parsed safely above

    return PlainTree.tostring(root, encoding="utf-8", xml_declaration=True)


async def test_feed_draft_is_approved_with_one_action(service: Broadcaster) -> None:
    """A draft (as a feed rule with action=draft makes) queues nothing until approved, then everything."""
    from warning.cap import parse_cap as parse

    outcome = await service.act_on_cap(parse(_cap("D-1")), draft_only=True)
    assert outcome.action == "draft" and outcome.alert.state is AlertState.DRAFT
    _, counts = await service.status("D-1")
    assert all(not c.counts for c in counts.values())
    approved = await service.approve("D-1", actor="领导")
    assert approved.state is AlertState.ISSUED
    report = await service.fan_out(approved)  # approving marks it for fan-out; the caller runs it
    assert sum(report.queued.values()) > 0
    test_draft = await service.ingest_cap(_cap("T-2", status=AlertStatus.TEST))
    with pytest.raises(Exception, match="Test"):
        await service.approve(test_draft.alert.id)


async def test_two_person_rule(service: Broadcaster) -> None:
    """Whoever drafted an alert cannot also approve it."""
    from warning.cap import parse_cap as parse
    from warning.errors import AlertError

    await service.act_on_cap(parse(_cap("D-2")), draft_only=True, actor="值班员小王")
    with pytest.raises(AlertError, match="小王"):
        await service.approve("D-2", actor="值班员小王")
    approved = await service.approve("D-2", actor="局长")
    assert approved.state is AlertState.ISSUED
