"""The all-clear (解除) on cancel: real Redis, a real broker, the Twilio sandbox and simulated loudspeakers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

from tests.integration.conftest import County, engine_settings
from tests.integration.test_broadcast import TOWNSHIP, engine, orange, settle, start_simulator
from warning.broadcast import Broadcaster
from warning.broker import BrokerAddress
from warning.config import TwilioSettings
from warning.sandbox.twilio import TwilioSandbox
from warning.store import Store
from warning.views import reach_view, report

VILLAGE = "331099101201"


async def _wait(
    service: Broadcaster, alert_id: str, ledger: str, done: int, within: float = 30
) -> dict[str, int]:
    """Counts of `ledger` once `done` of its deliveries are sent or delivered."""
    deadline = time.monotonic() + within
    while True:
        _, counts = await service.status(alert_id)
        found = dict(counts[ledger].counts) if ledger in counts else {}
        if found.get("sent", 0) + found.get("delivered", 0) >= done and not counts[ledger].pending:
            return found
        assert time.monotonic() < deadline, {k: v.counts for k, v in counts.items()}
        await asyncio.sleep(0.1)


async def test_cancel_sends_one_all_clear_to_everyone_who_got_the_alert(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Every phone sent the warning gets exactly one 解除 SMS naming the event and the operator's note, every
    loudspeaker plays the all-clear, the reach ledger is untouched, and a second cancel sends nothing."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    sim = await start_simulator(broker, county, settings.mqtt.topic_prefix)
    try:
        async with engine(settings, sample_store, broker) as running:
            service = running.broadcaster
            alert, _ = await service.issue(orange(area=VILLAGE))
            await settle(service, alert.id)
            await _wait(service, alert.id, "speaker", len(county.speakers_in(VILLAGE)))
            for _ in range(100):  # the warning's `played` acks have been counted as reach
                if (await service.reach.counts(alert.id)).raw.get("mv:" + VILLAGE + ":p", 0) == 0:
                    break
                await asyncio.sleep(0.05)
            warned = Counter(m.to for m in sandbox.messages)
            reach_before = (await service.reach.counts(alert.id)).raw
            outcome = await service.cancel(alert.id, note="可以返回家中，注意安全。")
            assert outcome.all_clear["sms"] == len(warned)
            assert outcome.all_clear["speaker"] == len(county.speakers_in(VILLAGE))
            await _wait(service, alert.id, "sms.clear", len(warned))
            await _wait(service, alert.id, "speaker.clear", len(county.speakers_in(VILLAGE)))
            for _ in range(100):
                if all(sim.played[d] >= 2 for d in county.speakers_in(VILLAGE)):
                    break
                await asyncio.sleep(0.05)
            view = await reach_view(service, alert.id)
            texts = (await report(service, alert.id))["texts"]
            again = await service.cancel(alert.id)
            await asyncio.sleep(0.5)
            reach_after = (await service.reach.counts(alert.id)).raw
    finally:
        await sim.stop()
    clears = [m for m in sandbox.messages if "解除" in m.body]
    assert Counter(m.to for m in clears) == Counter(dict.fromkeys(warned, 1)), (
        "one all-clear per phone warned"
    )
    assert all("台风" in m.body and "已解除" in m.body and "可以返回家中" in m.body for m in clears)
    assert not any("请立即转移" in m.body for m in clears), "the all-clear does not repeat the order"
    assert again.again and again.all_clear == {}
    assert len([m for m in sandbox.messages if "解除" in m.body]) == len(clears)
    for device in county.speakers_in(VILLAGE):
        commands = sim.received[device]
        clear = [c for c in commands if "解除" in c["text"]]
        assert len(clear) == 1 and clear[0]["action"] == "play", commands
        assert not any(c["action"] == "stop" for c in commands)
    assert reach_after == reach_before, "all-clear receipts are not reach evidence"
    assert view["channels"]["sms.clear"]["sent"] + view["channels"]["sms.clear"]["delivered"] == len(warned)
    assert any(t["audience"] == "allclear" and "可以返回家中" in t["text"] for t in texts), (
        "the report shows it"
    )


async def test_only_those_sent_get_the_all_clear_and_silent_sends_nothing(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Cancelled mid-send, only phones the warning reached get the all-clear; a silent cancel sends none."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, sms=replace(settings.sms, rate_per_second=40, burst=5))
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        service = running.broadcaster
        alert, _ = await service.issue(orange(audiences=("public",)))
        while len(sandbox.messages) < 20:
            await asyncio.sleep(0.02)
        outcome = await service.cancel(alert.id)
        _, counts = await service.status(alert.id)
        reached = counts["sms"].get("sent") + counts["sms"].get("delivered") + counts["sms"].get("sending")
        assert 0 < outcome.all_clear["sms"] <= reached < len(county.phones_in(TOWNSHIP))
        await _wait(service, alert.id, "sms.clear", outcome.all_clear["sms"])
        warned = {m.to for m in sandbox.messages if "解除" not in m.body}
        cleared = Counter(m.to for m in sandbox.messages if "解除" in m.body)
        assert set(cleared) <= warned and max(cleared.values()) == 1

        silent, _ = await service.issue(orange(area=VILLAGE, audiences=("public",), id="W-SILENT-1"))
        await settle(service, silent.id, channels=("sms",))
        before = len(sandbox.messages)
        quiet = await service.cancel(silent.id, silent=True)
        await asyncio.sleep(1)
        assert quiet.all_clear == {} and len(sandbox.messages) == before


async def test_updated_alert_all_clear_reaches_those_who_got_only_the_first_version(
    sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings], broker: BrokerAddress
) -> None:
    """Someone sent version 1 but not version 2 (the area shrank) still gets the all-clear, once."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        service = running.broadcaster
        alert, _ = await service.issue(orange(area="331099101", audiences=("public",)))
        await settle(service, alert.id, channels=("sms",))
        first = {m.to for m in sandbox.messages}
        updated, _ = await service.update(alert.id, orange(area=VILLAGE, audiences=("public",)))
        await settle(service, updated.id, channels=("sms",))
        outcome = await service.cancel(alert.id)
        assert outcome.all_clear["sms"] == len(first)
        await _wait(service, alert.id, "sms.clear", len(first))
    cleared = Counter(m.to for m in sandbox.messages if "解除" in m.body)
    assert set(cleared) == first and max(cleared.values()) == 1
