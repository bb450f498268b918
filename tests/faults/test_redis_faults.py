"""Redis SIGKILLed (fsync-always AOF) and restarted on the same port and data, or paused with
`CLIENT PAUSE … ALL`, in the middle of a fan-out or of sending: nothing is lost, the fan-out resumes by
itself, duplicates at most what was in flight (issue 10, scenarios 3 and 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, Rig, assert_no_loss, verdict

OUTAGE = 2.0  # seconds Redis stays dead before its supervisor restarts it
RESUMED_WITHIN = 15.0  # seconds after Redis is back by which an interrupted fan-out must have resumed


@pytest.mark.faults_full
@pytest.mark.timeout(600)
async def test_redis_sigkill_mid_fanout(rig: Rig) -> None:
    """Redis SIGKILLed halfway through queueing the alert (the issuing command fails) and restarted: the
    workers' housekeeping resumes the fan-out within seconds and every resident gets the SMS."""
    marker = "R3"
    expected = len(rig.expected())
    rig.start_worker()
    rig.start_worker()
    await asyncio.sleep(2)  # the workers are up before the fault

    def kill_halfway(done: int, total: int) -> None:
        if done == total // 2 and rig.redis.process is not None:
            os.kill(rig.redis.process.pid, signal.SIGKILL)  # our own redis-server, by its PID

    request = rig.alert(marker)
    alert = await rig.broadcaster.prepare(request)
    with pytest.raises(Exception):  # noqa: B017 (whatever the store raises when Redis dies under it)
        await rig.broadcaster.fan_out(alert, progress=kill_halfway)
    await rig.redis.kill()  # reaps it
    await asyncio.sleep(OUTAGE)
    await rig.redis.start()
    back = time.monotonic()
    resumed_after: float | None = None
    deadline = back + 240
    while time.monotonic() < deadline:
        got = await rig.counts(alert.id)
        total = sum(n for s, n in got.counts.items() if s != "no_address") if got else 0
        if total >= expected:
            resumed_after = time.monotonic() - back
            break
        await asyncio.sleep(0.2)
    print(f"fan-out finished {resumed_after} s after Redis came back")
    await rig.settle(alert.id, within=120, queued=expected)
    v = await verdict(rig, alert.id, marker)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT * 2)
    assert resumed_after is not None and resumed_after < RESUMED_WITHIN, (
        f"the interrupted fan-out was finished {resumed_after} s after Redis came back"
    )


async def _mid_send(rig: Rig, marker: str, fault: str) -> None:
    alert, _ = await rig.broadcaster.issue(rig.alert(marker))
    expected = len(rig.expected())
    rig.start_worker()
    rig.start_worker()
    await rig.wait_for(
        lambda: len(rig.provider.messages(marker)) >= expected // 4, 60, "the workers got going"
    )
    if fault == "kill":
        await rig.redis.kill()
        await asyncio.sleep(OUTAGE)
        await rig.redis.start()
    else:
        await rig.redis.pause(rig.scale.pause)
        await asyncio.sleep(rig.scale.pause)
    await rig.settle(alert.id, within=240, queued=expected)
    v = await verdict(rig, alert.id, marker)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT * 2)
    assert v.ledger["sent"] + v.ledger["delivered"] == expected, v.summary()


@pytest.mark.faults_full
@pytest.mark.timeout(600)
async def test_redis_sigkill_mid_send(rig: Rig) -> None:
    """Redis SIGKILLed a quarter into sending and restarted from its AOF: the workers carry on by
    themselves; every resident has the SMS, duplicates at most what was in flight."""
    await _mid_send(rig, "S3", "kill")


@pytest.mark.faults_full
@pytest.mark.timeout(600)
async def test_redis_client_pause_mid_send(rig: Rig) -> None:
    """`CLIENT PAUSE <ms> ALL` for a few seconds (longer than the visibility timeout) mid-send: no batch
    is sent twice by two workers beyond what was in flight, nothing lost."""
    await _mid_send(rig, "U4", "pause")
