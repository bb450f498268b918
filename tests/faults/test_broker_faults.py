"""Mosquitto SIGKILLed and restarted (same port, persistence) while loudspeakers are being commanded and
10,000 SMS go out: every online loudspeaker ends with its command played, and the SMS are not held up
or lost (issue 10, scenario 5)."""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, Rig, assert_no_loss, verdict
from tests.integration.mosquitto import Mosquitto, find_mosquitto
from warning.sandbox.speakers import SpeakerSimulator

OUTAGE = 2.5  # seconds the broker stays dead


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A persistent Mosquitto of this test's own on a free loopback port; killed at the end whatever happens."""
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("the fault suite needs the mosquitto broker (Debian: apt-get install -y mosquitto)")
    broker = Mosquitto(executable, tmp_path / "mosquitto")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.mark.faults_full
@pytest.mark.timeout(600)
async def test_mosquitto_sigkill_while_speakers_are_commanded(rig: Rig, mosquitto: Mosquitto) -> None:
    """The broker dies a few commands into the loudspeaker broadcast and comes back: every online speaker
    gets the command and plays it once; every resident still gets the SMS."""
    marker = "M5"
    prefix = f"f{uuid.uuid4().hex[:8]}"
    with (rig.tmp / "county" / "speakers.csv").open(encoding="utf-8") as fh:
        devices = sorted(row["device_id"] for row in csv.DictReader(fh))
    offline = devices[::20]
    online = [d for d in devices if d not in offline]
    sim = SpeakerSimulator(mosquitto.address, devices, topic_prefix=prefix, offline=offline)
    await sim.start()
    try:
        mqtt = {
            "mqtt_url": f"mqtt://127.0.0.1:{mosquitto.port}",
            "mqtt_topic_prefix": prefix,
            "speaker_rate_per_second": "4",
            "speaker_burst": "2",
            "speaker_republish_after": "1s",
        }
        alert, fanout = await rig.broadcaster.issue(rig.alert(marker, audiences=("public", "speakers")))
        assert fanout.queued["speaker"] == len(devices), fanout.queued
        rig.start_worker("sms,speaker", **mqtt)
        rig.start_worker("sms")

        def commanded() -> list[str]:
            return [d for d in online if any(c.get("alert_id") == alert.id for c in sim.received[d])]

        await rig.wait_for(lambda: len(commanded()) >= 5, 60, "five speakers commanded")
        assert len(commanded()) < len(online), "the broadcast was over before the fault"
        await mosquitto.kill()
        await asyncio.sleep(OUTAGE)
        await mosquitto.start()
        await rig.wait_for(lambda: sorted(sim.connected) == online, 60, "the speakers reconnected")

        async def speaker_states() -> dict[str, str]:
            states = await rig.broadcaster.deliveries.states(alert.id, 1, "speaker")
            return {r.removeprefix("s:"): s for r, s in states.items()}

        deadline = asyncio.get_running_loop().time() + 120
        states: dict[str, str] = {}
        while asyncio.get_running_loop().time() < deadline:
            states = await speaker_states()
            if all(states.get(d) == "delivered" for d in online):
                break
            await asyncio.sleep(0.2)
        await rig.settle(alert.id, within=120)
        v = await verdict(rig, alert.id, marker)
    finally:
        await sim.stop()
    missing = [d for d in online if d not in commanded()]
    assert not missing, f"online speakers that never got the command: {missing}"
    assert [d for d in online if states.get(d) != "delivered"] == [], states
    assert {d: sim.played[d] for d in online if sim.played[d] != 1} == {}, "a speaker played twice or never"
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT * 2)
