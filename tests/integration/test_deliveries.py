"""The delivery ledger in real Redis: idempotent queuing, forward-only states, counters, cancel/expiry claims."""

from __future__ import annotations

import time

from warning.deliveries import Batch, Deliveries, Recipient
from warning.ratelimit import RateLimiter
from warning.store import Store


def _batch(*ids: str, action: str = "play") -> Batch:
    return Batch(
        "A1",
        1,
        "sms",
        "public",
        "331099101201",
        tuple(
            Recipient(i, f"+86174000000{n:02d}" if i != "r:nophone" else "", "zh-CN")
            for n, i in enumerate(ids)
        ),
        action=action,
    )


async def _issued(
    store: Store, deliveries: Deliveries, *, expires: float | None = None, state: str = "issued"
) -> None:
    await store.redis.hset(
        deliveries.control_key("A1"), mapping={"state": state, "version": "1", "expires": str(expires or "")}
    )


async def test_enqueue_is_idempotent_per_recipient(store: Store) -> None:
    """Queuing the same recipients twice queues them once; recipients without an address are counted, not queued."""
    deliveries = Deliveries(store.redis, store.keys)
    assert await deliveries.enqueue(_batch("r:1", "r:2", "r:nophone"), urgent=True) == (2, 1)
    assert await deliveries.enqueue(_batch("r:1", "r:2", "r:3"), urgent=True) == (1, 0)
    counts = await deliveries.counts("A1", 1, ["sms"])
    assert counts["sms"].counts == {"queued": 3, "no_address": 1}
    assert await store.redis.xlen(deliveries.stream_key("sms", True)) == 2


async def test_states_only_move_forward(store: Store) -> None:
    """A late 'sent' never overwrites 'delivered'; failed stays failed; counters follow every real move."""
    deliveries = Deliveries(store.redis, store.keys)
    await _issued(store, deliveries)
    await deliveries.enqueue(_batch("r:1", "r:2"), urgent=False)
    assert await deliveries.claim(_batch("r:1", "r:2")) == "ss"
    assert await deliveries.move("A1", 1, "sms", [("r:1", "D"), ("r:2", "F")]) == "11"
    assert await deliveries.move("A1", 1, "sms", [("r:1", "S"), ("r:2", "S"), ("r:1", "D")]) == "000"
    assert await deliveries.states("A1", 1, "sms") == {"r:1": "delivered", "r:2": "failed"}
    counts = (await deliveries.counts("A1", 1, ["sms"]))["sms"]
    assert counts.counts == {"delivered": 1, "failed": 1}


async def test_claim_refuses_after_cancel_and_after_expiry(store: Store) -> None:
    """A claim after a committed cancel marks cancelled; after `expires`, expired; sent ones are skipped."""
    deliveries = Deliveries(store.redis, store.keys)
    await _issued(store, deliveries)
    await deliveries.enqueue(_batch("r:1", "r:2", "r:3"), urgent=False)
    assert await deliveries.claim(_batch("r:1")) == "s"
    await deliveries.move("A1", 1, "sms", [("r:1", "S")])
    await _issued(store, deliveries, state="cancelled")
    assert await deliveries.claim(_batch("r:1", "r:2")) == "-C"
    await _issued(store, deliveries, expires=time.time() - 1)
    assert await deliveries.claim(_batch("r:3")) == "X"


async def test_reclaimed_sending_is_reconciled_not_sent_blindly(store: Store) -> None:
    """A recipient left 'sending' by a dead worker is handed out as "a": look it up at the provider (it
    may have gone) before any resend or settling; the claim changes nothing, cancelled or not."""
    deliveries = Deliveries(store.redis, store.keys)
    await _issued(store, deliveries)
    await deliveries.enqueue(_batch("r:1"), urgent=False)
    assert await deliveries.claim(_batch("r:1")) == "s"
    assert await deliveries.claim(_batch("r:1")) == "a"
    assert await deliveries.state("A1", 1, "sms", "r:1") == "sending"
    await _issued(store, deliveries, state="cancelled")
    assert await deliveries.claim(_batch("r:1")) == "a"


async def test_stop_commands_are_claimed_after_cancel(store: Store) -> None:
    """`stop` commands have their own ledger and go out although the alert is cancelled."""
    deliveries = Deliveries(store.redis, store.keys)
    await _issued(store, deliveries, state="cancelled")
    stop = _batch("s:spk-1", action="stop")
    assert stop.ledger == "sms.stop"
    await deliveries.enqueue(stop, urgent=True)
    assert await deliveries.claim(stop) == "s"


async def test_rate_limit_is_shared_and_holds(store: Store) -> None:
    """Two limiters on one key together never take more than rate × time + burst."""
    first = RateLimiter(store.redis, store.keys, "sms", rate=200, burst=20)
    second = RateLimiter(store.redis, store.keys, "sms", rate=200, burst=20)
    start = time.monotonic()
    for _ in range(10):
        await first.take(20)
        await second.take(20)
    elapsed = time.monotonic() - start
    # 400 tokens at 200/s with a burst of 20 take at least (400 - 20) / 200 = 1.9 s.
    assert elapsed >= 1.85, elapsed
