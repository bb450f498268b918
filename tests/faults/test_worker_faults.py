"""Workers that die or freeze in the middle of sending lose nothing and send nothing twice beyond what
was in flight (issue 10, scenarios 1 and 2)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from tests.faults.harness import MAX_IN_FLIGHT, Rig, assert_no_loss, verdict
from warning.deliveries import GROUP


async def test_worker_sigkill_mid_send(rig: Rig) -> None:
    """A worker SIGKILLed a quarter into the fan-out: a second worker finishes, every resident has the SMS,
    duplicates at most what the dead one had in flight."""
    marker = "K1"
    alert, fanout = await rig.broadcaster.issue(rig.alert(marker))
    expected = len(rig.expected())
    assert fanout.queued["sms"] == expected
    first = rig.start_worker()
    await rig.wait_for(
        lambda: len(rig.provider.messages(marker)) >= expected // 4, 60, "the first worker got going"
    )
    await first.kill()
    at_kill = len(rig.provider.messages(marker))
    assert at_kill < expected, "killed too late to prove anything"
    rig.start_worker()
    await rig.settle(alert.id, within=180)
    v = await verdict(rig, alert.id, marker)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT)
    assert v.ledger["sent"] + v.ledger["delivered"] == expected, v.summary()


async def test_worker_sigstop_past_visibility_then_sigcont(rig: Rig) -> None:
    """A worker frozen (SIGSTOP) for longer than the visibility timeout loses its batches to another
    worker; woken (SIGCONT), it must not send them again: duplicates at most what it had in flight."""
    marker = "P2"
    alert, _ = await rig.broadcaster.issue(rig.alert(marker))
    expected = len(rig.expected())
    frozen = rig.start_worker()
    await rig.wait_for(
        lambda: len(rig.provider.messages(marker)) >= expected // 5, 60, "the first worker got going"
    )
    frozen.signal(signal.SIGSTOP)
    held = await _pending_with(rig, frozen.pid)
    assert held, "the frozen worker held no batch: nothing to take over"
    rig.start_worker()
    await asyncio.sleep(rig.scale.visibility * 2 + 1)  # well past the visibility timeout
    frozen.signal(signal.SIGCONT)
    await rig.settle(alert.id, within=180)
    await asyncio.sleep(rig.scale.visibility + 2)  # a woken worker that resends does it now
    v = await verdict(rig, alert.id, marker)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT)
    assert v.ledger["sent"] + v.ledger["delivered"] == expected, v.summary()


async def _pending_with(rig: Rig, pid: int) -> int:
    """Stream entries read but not acknowledged by the worker process `pid` (its consumer name holds it)."""
    held = 0
    for urgent in (True, False):
        stream = rig.broadcaster.deliveries.stream_key("sms", urgent)
        summary: Any = await rig.store.redis.xpending(stream, GROUP)
        for consumer in summary.get("consumers") or []:
            if f"-{pid}-" in str(consumer["name"]):
                held += int(consumer["pending"])
    return held
