"""The broadcast engine end to end: real Redis, a real broker, the Twilio sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import County, engine_settings
from warning.broadcast import AlertRequest, Broadcaster
from warning.broker import BrokerAddress
from warning.config import AudienceSettings, Settings, TwilioSettings
from warning.engine import Engine, run_engine
from warning.errors import RenderError
from warning.model import Level
from warning.sandbox.speakers import SpeakerSimulator
from warning.sandbox.twilio import TwilioSandbox
from warning.store import Store

TOWNSHIP = "331099101"


@asynccontextmanager
async def engine(
    settings: Settings, store: Store, broker: BrokerAddress, channels: tuple[str, ...] = ("sms", "speaker")
) -> AsyncIterator[Engine]:
    async with run_engine(settings, store, broker, channels=list(channels)) as running:
        yield running


async def settle(
    service: Broadcaster,
    alert_id: str,
    within: float = 60,
    channels: tuple[str, ...] = ("sms", "speaker", "speaker.stop"),
) -> dict[str, dict[str, int]]:
    """Wait until nothing of the alert is queued, retrying or sending on `channels`; return the counts."""
    deadline = time.monotonic() + within
    while True:
        alert, counts = await service.status(alert_id)
        # Ledgers the status leaves out (task links `sms.task`, …) are read directly.
        extra = [name for name in channels if name not in counts]
        counts |= await service.deliveries.counts(alert_id, alert.version, extra)
        if counts and all(c.pending == 0 for name, c in counts.items() if name in channels):
            return {k: dict(v.counts) for k, v in counts.items()}
        assert time.monotonic() < deadline, {k: v.counts for k, v in counts.items()}
        await asyncio.sleep(0.1)


def orange(area: str = TOWNSHIP, **changes: object) -> AlertRequest:
    request = AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(area,),
        headline="台风将于今夜登陆",
        instruction="请立即转移到安全地带。",
        expires=datetime.now(UTC) + timedelta(hours=2),
    )
    return replace(request, **changes)  # type: ignore[arg-type]


async def start_simulator(broker: BrokerAddress, county: County, prefix: str) -> SpeakerSimulator:
    sim = SpeakerSimulator(
        broker, sorted(s["device_id"] for s in county.speakers), topic_prefix=prefix, play_seconds=0.01
    )
    await sim.start()
    return sim


async def test_exact_recipients_once_each(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Every expected phone gets exactly one SMS and every speaker in the area one play; nobody outside anything."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    sim = await start_simulator(broker, county, settings.mqtt.topic_prefix)
    try:
        async with engine(settings, sample_store, broker) as running:
            alert, _report = await running.broadcaster.issue(orange(exercise=True))
            counts = await settle(running.broadcaster, alert.id)
            await sandbox.drain()
            for _ in range(100):
                _, now = await running.broadcaster.status(alert.id)
                if now["speaker"].get("delivered") >= len(county.speakers_in(TOWNSHIP)):
                    break
                await asyncio.sleep(0.05)
    finally:
        await sim.stop()
    # Each loudspeaker's `played` ack marked its delivery delivered.
    assert now["speaker"].counts == {"delivered": len(county.speakers_in(TOWNSHIP))}
    expected = county.phones_in(TOWNSHIP)
    # Cadres with must-reach residents also get one task link (to their page), on its own ledger.
    warnings = [m for m in sandbox.messages if "/c/" not in m.body]
    links = [m for m in sandbox.messages if "/c/" in m.body]
    sent_to = Counter(m.to for m in warnings)
    assert set(sent_to) == expected
    assert max(sent_to.values()) == 1
    assert counts["sms"]["sent"] == len(expected)
    vulnerable = {"elderly", "lives_alone", "no_smartphone", "disabled"}
    cadres = {
        r["cadre"]
        for r in county.residents
        if r["village"].startswith(TOWNSHIP) and vulnerable & set(r["tags"].split(";"))
    }
    phones = {c["id"]: c["phone"] for c in county.contacts}
    assert Counter(m.to for m in links) == Counter(phones[c] for c in cadres)
    assert all(m.body.startswith("【演练】") for m in sandbox.messages)
    assert {device for device, n in sim.played.items() if n} == county.speakers_in(TOWNSHIP)
    commanded = {device for device, commands in sim.received.items() if commands}
    assert commanded == county.speakers_in(TOWNSHIP)
    assert all(
        len(commands) == 1 and commands[0]["action"] == "play" and commands[0]["exercise"]
        for device, commands in sim.received.items()
        if commands
    )


async def test_reissue_sends_nothing_new(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Issuing the same alert id again queues and sends nothing more."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area="331099101201", id="W-REISSUE-1"))
        # The cadre's task link is its own ledger and may go out a moment after the warnings.
        await settle(running.broadcaster, alert.id, channels=("sms", "sms.task"))
        first = len(sandbox.messages)
        again, report = await running.broadcaster.issue(orange(area="331099101201", id="W-REISSUE-1"))
        assert again.id == alert.id and sum(report.queued.values()) == 0
        await settle(running.broadcaster, alert.id, channels=("sms", "sms.task"))
        await asyncio.sleep(0.3)
    assert first > 0 and len(sandbox.messages) == first


async def test_cancel_mid_fanout_stops_sending(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """After a committed silent cancel nothing more is sent, pending deliveries end cancelled, speakers get
    stop (the all-clear of a normal cancel is pinned in test_all_clear.py)."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, sms=replace(settings.sms, rate_per_second=100, burst=10))
    sim = await start_simulator(broker, county, settings.mqtt.topic_prefix)
    try:
        async with engine(settings, sample_store, broker) as running:
            alert, _ = await running.broadcaster.issue(orange())
            while len(sandbox.messages) < 50:
                await asyncio.sleep(0.02)
            await running.broadcaster.cancel(alert.id, silent=True)
            cancelled_at = time.time()
            counts = await settle(running.broadcaster, alert.id)
            await asyncio.sleep(0.5)
            for _ in range(100):
                if all(
                    any(c["action"] == "stop" for c in sim.received.get(d, []))
                    for d in county.speakers_in(TOWNSHIP)
                ):
                    break
                await asyncio.sleep(0.05)
    finally:
        await sim.stop()
    late = [m for m in sandbox.messages if (m.received or m.created).timestamp() > cancelled_at + 0.25]
    assert late == [], f"{len(late)} SMS reached the provider after the cancel committed"
    assert counts["sms"]["cancelled"] > 0
    assert counts["sms"]["sent"] + counts["sms"]["cancelled"] == len(county.phones_in(TOWNSHIP))
    for device in county.speakers_in(TOWNSHIP):
        assert any(c["action"] == "stop" for c in sim.received[device]), device


async def test_expiry_mid_fanout_stops_sending(
    sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings], broker: BrokerAddress
) -> None:
    """Nothing reaches the provider after `expires`; what was still pending ends expired."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, sms=replace(settings.sms, rate_per_second=100, burst=10))
    expires = datetime.now(UTC) + timedelta(seconds=2.5)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(expires=expires))
        counts = await settle(running.broadcaster, alert.id, channels=("sms",))
    assert counts["sms"]["sent"] > 0 and counts["sms"]["expired"] > 0
    # No request is started after `expires` (checked atomically at claim and again just before the call);
    # one started a moment before may land at the provider a few milliseconds after it.
    late = [m for m in sandbox.messages if (m.received or m.created) > expires + timedelta(seconds=0.25)]
    assert late == [], f"{len(late)} SMS reached the provider after expires"


async def test_flaky_provider_everyone_once(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """With 30% of requests answered 429 or 5xx, every phone still gets exactly one SMS."""
    sandbox, twilio = twilio_sandbox
    sandbox.set_faults(error_rate=0.15, rate_limit_rate=0.15, retry_after=0.1)
    settings = engine_settings(sample_store, twilio)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area="331099101201"))
        counts = await settle(running.broadcaster, alert.id, within=120, channels=("sms",))
    expected = county.phones_in("331099101201")
    # Not the cadres' task notes (their own ledger, sms.task; an Actual alert's carry no link here).
    sent_to = Counter(m.to for m in sandbox.messages if "sms.task" not in (m.status_callback or ""))
    assert set(sent_to) == expected and max(sent_to.values()) == 1
    assert counts["sms"]["sent"] == len(expected)
    assert sandbox.requests > len(expected), "the faults were exercised"
    assert await running.broadcaster.dead_letters("sms") == []


async def test_too_long_sms_fails_the_issue(
    sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings], broker: BrokerAddress
) -> None:
    """A warning whose SMS would exceed sms.max_segments is refused at issue time; nothing is queued."""
    _, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    service = Broadcaster(sample_store, settings)
    with pytest.raises(RenderError):
        await service.issue(orange(instruction="请立即转移。" * 200))
    assert await service.alerts.recent() == []


async def test_dead_letters_then_requeue(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Numbers the provider refuses (21211) are failed and dead-lettered at once, never retried; once the
    numbers are fixed at the provider, a requeue delivers them."""
    sandbox, twilio = twilio_sandbox
    area = "331099101201"
    phones = {r["phone"] for r in county.residents if r["village"].startswith(area) and r["phone"]}
    healthy = sandbox.directory
    sandbox.directory = replace(healthy, invalid=healthy.invalid | frozenset(phones))
    settings = engine_settings(sample_store, twilio)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area=area, audiences=("public",)))
        counts = await settle(running.broadcaster, alert.id, channels=("sms",))
        assert counts["sms"].get("failed") == len(phones) and counts["sms"].get("sent", 0) == 0
        letters = await running.broadcaster.dead_letters("sms")
        assert sorted(r.address for letter in letters for r in letter.batch.recipients) == sorted(phones)
        assert all("21211" in letter.reason for letter in letters)
        assert sandbox.requests == len(phones), "a refused number is asked once, never retried"
        assert sandbox.messages == []

        sandbox.directory = healthy
        assert await running.broadcaster.requeue_dead("sms") == len(phones)
        counts = await settle(running.broadcaster, alert.id, channels=("sms",))
    assert counts["sms"].get("sent") == len(phones) and counts["sms"].get("failed", 0) == 0
    assert await running.broadcaster.dead_letters("sms") == []
    assert sorted(m.to for m in sandbox.messages) == sorted(phones)


async def test_red_goes_before_blue(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """A red warning issued after a large blue one is sent before the blue one's backlog."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, sms=replace(settings.sms, rate_per_second=200, burst=20))
    service = Broadcaster(sample_store, settings)
    blue, _ = await service.issue(orange(area="331099102", level=Level.BLUE, audiences=("public",)))
    red, _ = await service.issue(orange(area="331099103201", level=Level.RED, audiences=("public",)))
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        await settle(running.broadcaster, red.id, channels=("sms",))
        _, blue_counts = await running.broadcaster.status(blue.id)
    assert blue_counts["sms"].pending > 0, "the red warning finished while blue was still queued"
    red_phones = {
        r["phone"] for r in county.residents if r["village"].startswith("331099103201") and r["phone"]
    }
    last_red = max(i for i, m in enumerate(sandbox.messages) if m.to in red_phones)
    blue_before = sum(1 for m in sandbox.messages[:last_red] if m.to not in red_phones)
    assert blue_before <= settings.sms.burst, f"{blue_before} blue SMS went before the last red one"


async def test_config_defined_audience(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """A bureau's `[[audiences]]` rule (fishermen by tag) reaches exactly the residents carrying the tag."""
    sandbox, twilio = twilio_sandbox
    settings = replace(
        engine_settings(sample_store, twilio),
        audiences=(AudienceSettings("fishermen", ("sms",), tags=("fisherman",)),),
    )
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area="331099", audiences=("fishermen",)))
        await settle(running.broadcaster, alert.id, channels=("sms",))
    expected = {r["phone"] for r in county.residents if "fisherman" in r["tags"].split(";") and r["phone"]}
    assert expected and {m.to for m in sandbox.messages} == expected
    assert len(sandbox.messages) == len(expected)


async def test_update_tells_everyone_what_changed(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """An update sends one new message per person, marked as an update and saying the level was raised."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    area = "331099101201"
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area=area, audiences=("public",)))
        await settle(running.broadcaster, alert.id, channels=("sms",))
        first = len(sandbox.messages)
        updated, _ = await running.broadcaster.update(
            alert.id, orange(area=area, level=Level.RED, audiences=("public",))
        )
        counts = await settle(running.broadcaster, alert.id, channels=("sms",))
    assert updated.version == 2 and updated.msg_type == "Update" and updated.references
    second = sandbox.messages[first:]
    expected = {r["phone"] for r in county.residents if r["village"] == area and r["phone"]}
    assert Counter(m.to for m in second) == Counter(dict.fromkeys(expected, 1))
    chinese = [m for m in second if not m.body.startswith("[UPDATE]")]  # a few residents read English
    assert chinese and all(m.body.startswith("【更新】预警级别由橙色升级为红色") for m in chinese)
    assert counts["sms"].get("sent") == len(expected)


async def test_old_version_pending_is_not_sent_after_an_update(
    sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings], broker: BrokerAddress
) -> None:
    """Deliveries of the old version still queued when the update commits are cancelled, never sent."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    service = Broadcaster(sample_store, settings)
    alert, _ = await service.issue(orange(area="331099101201", audiences=("public",)))  # no worker yet
    await service.update(alert.id, orange(area="331099101201", level=Level.RED, audiences=("public",)))
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        await settle(running.broadcaster, alert.id, channels=("sms",))
    old = (await service.deliveries.counts(alert.id, 1, ["sms"]))["sms"]
    assert old.get("sent") == 0 and old.get("cancelled") > 0
    assert all(m.body.startswith("【更新】") for m in sandbox.messages)


async def test_offline_speaker_gets_the_command_when_it_comes_back(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """A command the broker accepted but an offline device never saw is republished until it is played."""
    _, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, speaker=replace(settings.speaker, republish_after=0.3))
    village = "331099101201"
    devices = sorted(county.speakers_in(village))
    late = devices[0]
    online = SpeakerSimulator(broker, devices[1:], topic_prefix=settings.mqtt.topic_prefix, play_seconds=0.01)
    await online.start()
    returned: SpeakerSimulator | None = None
    try:
        async with engine(settings, sample_store, broker, channels=("speaker",)) as running:
            alert, _ = await running.broadcaster.issue(orange(area=village, audiences=("speakers",)))
            await settle(running.broadcaster, alert.id, channels=("speaker",))
            state = await running.broadcaster.deliveries.state(alert.id, 1, "speaker", f"s:{late}")
            assert state == "sent", "the broker took it, but nobody has played it yet"
            await asyncio.sleep(1.0)  # republished meanwhile into the void: the device is still offline
            returned = SpeakerSimulator(
                broker, [late], topic_prefix=settings.mqtt.topic_prefix, play_seconds=0.01
            )
            await returned.start()
            for _ in range(100):
                state = await running.broadcaster.deliveries.state(alert.id, 1, "speaker", f"s:{late}")
                if state == "delivered":
                    break
                await asyncio.sleep(0.1)
    finally:
        await online.stop()
        if returned is not None:
            await returned.stop()
    assert state == "delivered"
    assert returned is not None and returned.played[late] == 1
    assert all(online.played[d] == 1 for d in devices[1:]), "devices that played once never play again"
