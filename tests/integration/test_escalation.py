"""The escalation ladder with an injectable clock: each step fires once, for the right people, and stops
the moment the residents are confirmed; cadre task lists; silent loudspeakers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import County
from warning import escalation as escalation_module
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import EscalationSettings, EscalationStep, Settings
from warning.evidence import Evidence
from warning.model import Alert, Level
from warning.store import Store

VILLAGE = "331099101201"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def settings_for(store: Store) -> Settings:
    base = Settings()
    return replace(
        base,
        redis=replace(base.redis, namespace=store.keys.namespace, allow_volatile=True),
        escalation=EscalationSettings(
            confirm_within=900.0,
            steps=(
                EscalationStep(900.0, "cadre", ("sms", "voice")),
                EscalationStep(1800.0, "village_head", ("voice", "sms")),
                EscalationStep(2700.0, "township_duty", ("voice",)),
                EscalationStep(3600.0, "county_duty", ("voice",)),
            ),
        ),
    )


async def issue(
    store: Store, area: str = VILLAGE, audiences: tuple[str, ...] = ("vulnerable", "public")
) -> tuple[Broadcaster, Clock, Alert]:
    service = Broadcaster(store, settings_for(store))
    clock = Clock()
    service.reach.clock = clock
    request = AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(area,),
        headline="台风将于今夜登陆",
        instruction="请低洼地区群众立即转移到村委会避灾点",
        expires=datetime.now(UTC) + timedelta(hours=6),
        audiences=audiences,
    )
    alert, _ = await service.issue(request)
    clock.now = (await service.reach.milestones(alert.id))["issued"]
    return service, clock, alert


def must_reach(county: County, village: str) -> list[dict[str, str]]:
    tags = {"elderly", "lives_alone", "no_smartphone", "disabled"}
    return [r for r in county.residents if r["village"] == village and tags & set(r["tags"].split(";"))]


async def test_every_must_reach_resident_is_a_task_of_a_named_cadre(
    sample_store: Store, county: County
) -> None:
    service, _, alert = await issue(sample_store)
    expected = must_reach(county, VILLAGE)
    cadres = await service.reach.cadres(alert.id)
    assert sum(cadres.values()) == len(expected) > 0
    for person in expected:
        assert await service.reach.on_task(alert.id, person["cadre"], person["id"])
    lists = await service.tasks.lists(alert)
    assert {task.contact_id for task in lists} == {p["cadre"] for p in expected}
    assert all(task.link.startswith("http") and "/c/" in task.link for task in lists)
    # The task link went to each cadre on the task channels (sms, wecom) once, however often it is sent.
    await service.tasks.send_links(alert)
    counts = await service.deliveries.counts(alert.id, alert.version, ["sms.task"])
    assert counts["sms.task"].get("queued") == len(lists)


async def test_each_step_fires_once_for_the_right_role(sample_store: Store, county: County) -> None:
    service, clock, alert = await issue(sample_store)
    start = clock.now
    total = len(must_reach(county, VILLAGE))
    assert await service.escalation.sweep() == []  # nothing is due at issue time
    clock.now = start + 899
    assert await service.escalation.sweep() == []
    clock.now = start + 900
    first = await service.escalation.sweep()
    assert [(e.step, e.role) for e in first] == [("0", "cadre")]
    assert first[0].residents == total
    assert await service.escalation.sweep() == []  # fired once, whatever the number of sweeps
    # The cadre is reminded on sms and voice, once each.
    counts = await service.deliveries.counts(alert.id, alert.version, ["sms.esc0", "voice.esc0"])
    assert counts["sms.esc0"].get("queued") == 1 and counts["voice.esc0"].get("queued") == 1
    clock.now = start + 1800
    second = await service.escalation.sweep()
    assert [(e.step, e.role, e.villages) for e in second] == [("1", "village_head", (VILLAGE,))]
    responsible = await service.escalation.responsible(alert.id)
    assert responsible[VILLAGE][1] == "village_head"
    view_owner = responsible[VILLAGE][0]
    assert set(await service.escalation.listed(alert.id, view_owner)) == {
        p["id"] for p in must_reach(county, VILLAGE)
    }
    assert await service.escalation.escalated_open(alert.id) == total
    clock.now = start + 10_000  # two steps due at once: both fire, in order, once
    rest = await service.escalation.sweep()
    assert [e.role for e in rest] == ["township_duty", "county_duty"]
    assert len(await service.escalation.log(alert.id)) == 4


async def test_confirmation_stops_the_ladder(sample_store: Store, county: County) -> None:
    service, clock, alert = await issue(sample_store)
    evidence = Evidence(service)
    people = must_reach(county, VILLAGE)
    start = clock.now
    clock.now = start + 900
    await service.escalation.sweep()
    # All but one confirmed before the village head's step: it fires for that one only.
    for person in people[:-1]:
        assert (
            await evidence.confirm(
                alert, f"contact:{person['cadre']}", person["cadre"], person["id"], "reached"
            )
            == "2"
        )
    clock.now = start + 1800
    [step] = await service.escalation.sweep()
    assert step.residents == 1
    # The last one confirmed (late) by the village head it was escalated to: the ladder stops.
    head = step.contact_id
    assert (
        await evidence.confirm(alert, f"contact:{head}", head, people[-1]["id"], "evacuated", "已转移") == "2"
    )
    assert await service.escalation.pending(alert.id) == []
    clock.now = start + 10_000
    assert await service.escalation.sweep() == []
    counts = await service.reach.counts(alert.id)
    assert counts.scope("must")["confirmed"] == len(people)
    assert counts.raw["late"] >= 1  # confirmations after the 15-minute deadline are flagged late


async def test_a_step_with_nobody_left_sends_nothing(sample_store: Store, county: County) -> None:
    service, clock, alert = await issue(sample_store)
    for person in must_reach(county, VILLAGE):
        await service.reach.record(alert.id, "voice", "K", [person["id"]])  # everyone pressed 1
    clock.now += 900
    assert await service.escalation.sweep() == []
    counts = await service.deliveries.counts(alert.id, alert.version, ["sms.esc0"])
    assert not counts["sms.esc0"].counts


async def test_cancel_stops_escalation(sample_store: Store) -> None:
    service, clock, alert = await issue(sample_store)
    await service.cancel(alert.id)
    clock.now += 10_000
    assert await service.escalation.sweep() == []


async def test_a_silent_loudspeaker_sends_its_cadre_door_to_door(sample_store: Store, county: County) -> None:
    service, clock, alert = await issue(sample_store)
    device = next(s["device_id"] for s in county.speakers if s["village"] == VILLAGE)
    key = f"{alert.id}:{alert.version}:speaker:s:{device}"
    await service.escalation.watch_speaker(alert.id, key, VILLAGE)
    assert await service.escalation.sweep() == []
    clock.now += service.settings.escalation.speaker_play_within
    [record] = await service.escalation.sweep()
    assert record.step == "spk" and record.role == "cadre" and record.villages == (VILLAGE,)
    counts = await service.deliveries.counts(alert.id, alert.version, ["sms.spk"])
    assert counts["sms.spk"].get("queued") == 1
    await service.escalation.watch_speaker(alert.id, key, VILLAGE, now=True)
    assert await service.escalation.sweep() == []  # once per device


async def test_every_commanded_loudspeaker_is_watched_from_fan_out(
    sample_store: Store, county: County
) -> None:
    """Nothing is sent here (no workers): the broker may be down, the device offline — each loudspeaker of
    the village still escalates to the cadre once its deadline passes without `played`."""
    service, clock, _ = await issue(sample_store, audiences=("speakers",))
    devices = {s["device_id"] for s in county.speakers if s["village"] == VILLAGE}
    clock.now += service.settings.escalation.speaker_play_within - 1
    assert await service.escalation.sweep() == []
    clock.now += 1
    records = await service.escalation.sweep()
    assert {r.detail.split()[1] for r in records} == devices
    assert all(r.step == "spk" and r.contact_name for r in records)


async def test_a_sweep_that_dies_half_way_is_done_again_not_lost(
    sample_store: Store, county: County, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, clock, alert = await issue(sample_store)
    real = escalation_module.send_notes
    calls = 0

    async def flaky(*args: object, **kwargs: object) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("redis went away")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(escalation_module, "send_notes", flaky)
    clock.now += 900
    with pytest.raises(ConnectionError):
        await service.escalation.sweep()
    [again] = await service.escalation.sweep()
    assert again.step == "0"
    assert await service.escalation.sweep() == []
    counts = await service.deliveries.counts(alert.id, alert.version, ["sms.esc0"])
    assert counts["sms.esc0"].get("queued") == 1
