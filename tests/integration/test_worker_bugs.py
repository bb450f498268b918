"""Bugs are not provider answers: a failing adapter is retried once, then its deliveries stop, logged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from warning.alerts import AlertStore
from warning.channels.base import BaseChannel, Capability, ChannelLimits, DeliveryResult, Message
from warning.config import WorkerSettings
from warning.deliveries import Batch, Deliveries, Recipient
from warning.fanout import Texts
from warning.model import Alert, AlertState, Level
from warning.ratelimit import RateLimiter
from warning.store import Store
from warning.worker import ChannelWorker

SETTINGS = WorkerSettings(backoff_base=0.01, backoff_max=0.05, visibility_timeout=1.0)


class ExplodingSend:
    """Breaks the contract itself: send() raises instead of returning results."""

    name = "sms"
    capabilities = Capability.TEXT
    limits = ChannelLimits(max_in_flight=10, max_text=100)
    calls = 0

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def check(self) -> None: ...

    async def send(
        self, messages: Sequence[Message], *, may_send: Callable[[], bool] | None = None
    ) -> list[DeliveryResult]:
        type(self).calls += 1
        raise RuntimeError("adapter bug")


class BuggyDeliver(BaseChannel):
    """An adapter whose deliver() has a bug: BaseChannel turns it into an `unexpected` result."""

    name = "sms"
    capabilities = Capability.TEXT
    limits = ChannelLimits(max_in_flight=10, max_text=100)
    calls = 0

    async def deliver(self, message: Message) -> str:
        type(self).calls += 1
        raise KeyError("oops")


async def _run(store: Store, channel: object, recipients: int) -> tuple[Deliveries, dict[str, str]]:
    deliveries = Deliveries(store.redis, store.keys)
    alerts = AlertStore(store.redis, store.keys)
    alert = Alert(
        "A1",
        "test",
        datetime.now(UTC),
        "台风",
        Level.RED,
        ("331099",),
        state=AlertState.ISSUED,
        expires=datetime.now(UTC) + timedelta(hours=1),
    )
    await alerts.save(alert)
    batch = Batch(
        "A1",
        1,
        "sms",
        "public",
        "331099101201",
        tuple(Recipient(f"r:{i}", f"+8617400000{i:03d}", "zh-CN") for i in range(recipients)),
    )
    await deliveries.enqueue(batch, urgent=True)
    worker = ChannelWorker(
        channel,
        deliveries=deliveries,
        alerts=alerts,
        texts=Texts(store.redis, store.keys),  # type: ignore[arg-type]
        limiter=RateLimiter(store.redis, store.keys, "sms", rate=1000, burst=100),
        settings=SETTINGS,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 20
    while (await deliveries.counts("A1", 1, ["sms"]))["sms"].pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return deliveries, await deliveries.states("A1", 1, "sms")


async def test_a_send_that_raises_is_retried_once_then_dead_lettered(store: Store) -> None:
    """An adapter breaking the contract gets one more try; then its deliveries are dead letters, not a loop."""
    ExplodingSend.calls = 0
    deliveries, states = await _run(store, ExplodingSend(), 3)
    assert set(states.values()) == {"dead"}
    assert ExplodingSend.calls == 2
    [(_, fields)] = await store.redis.xrange(deliveries.dead_key("sms"))
    assert "adapter bug" in fields["reason"]


async def test_an_adapter_bug_is_retried_once_then_dead_lettered(store: Store) -> None:
    """deliver() raising an unexpected exception is retried once, then the delivery is a dead letter (for an
    operator to see and requeue), never looping."""
    BuggyDeliver.calls = 0
    deliveries, states = await _run(store, BuggyDeliver(), 2)
    assert set(states.values()) == {"dead"}
    assert BuggyDeliver.calls == 4  # two recipients, two tries each
    [(_, fields)] = await store.redis.xrange(deliveries.dead_key("sms"))
    assert "KeyError" in fields["reason"]
