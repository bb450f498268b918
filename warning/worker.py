"""Workers: consume a channel's queue, send through the channel, record outcomes, retry or dead-letter.

One consumer group per channel stream; any number of workers on any number of hosts. For each batch:
take rate-limit tokens → claim (queued → sending, atomically refused after a cancel or `expires`) →
send → record sent / failed / ambiguous → schedule transient failures for a retry with exponential
backoff and full jitter (never sooner than the provider's `retry_after`) → acknowledge and delete the
entry. A worker that dies leaves its entries pending; another reclaims them with XAUTOCLAIM once they
have been idle for `worker.visibility_timeout`, and skips every recipient already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from warning.alerts import AlertStore
from warning.channels.base import Channel, DeliveryResult, Message, Outcome
from warning.config import WorkerSettings
from warning.deliveries import GROUP, Batch, Deliveries, Recipient
from warning.fanout import ALL_CLEAR, ALL_CLEAR_ACTION, Texts
from warning.model import Alert
from warning.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Called with a batch and what the provider accepted of it (recipient, result), after it is recorded.
OnSent = Callable[[Batch, Sequence[tuple[Recipient, DeliveryResult]]], Awaitable[None]]

# KEYS: retry zset, hi stream, lo stream. ARGV: limit. Moves due retries back into their stream.
_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local urgent = string.sub(member, 1, 1) == 'h'
  redis.call('XADD', urgent and KEYS[2] or KEYS[3], '*', 'b', string.sub(member, 3))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


def backoff(attempt: int, settings: WorkerSettings, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before attempt `attempt + 1`: full jitter over an exponential cap, at least `retry_after`."""
    cap = min(settings.backoff_max, settings.backoff_base * (2 ** (attempt - 1)))
    delay = rng.uniform(0, cap)
    return max(delay, retry_after or 0.0)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{random.randrange(16**4):04x}"


class ChannelWorker:
    """Consumes one channel's streams until stopped."""

    def __init__(
        self,
        channel: Channel,
        *,
        deliveries: Deliveries,
        alerts: AlertStore,
        texts: Texts,
        limiter: RateLimiter,
        settings: WorkerSettings,
        repeat: int = 1,
        consumer: str | None = None,
        on_sent: Sequence[OnSent] = (),
    ) -> None:
        self.channel = channel
        self.deliveries = deliveries
        self.alerts = alerts
        self.texts = texts
        self.limiter = limiter
        self.settings = settings
        self.repeat = repeat
        # Told what the provider accepted: the reach ledger, the loudspeaker playback loop, …
        self.on_sent = list(on_sent)
        self.consumer = consumer or consumer_name()
        self.redis: Redis = deliveries.redis
        self.streams = [deliveries.stream_key(channel.name, True), deliveries.stream_key(channel.name, False)]
        self._due = self.redis.register_script(_DUE)
        self._rng = random.Random()
        # Backpressure: room is reserved for a whole batch *before* reading one, so a slow provider
        # leaves entries in the stream (where any worker can take them), never idle in our hands.
        self._slots = max(1, channel.limits.max_in_flight // settings.batch_size)
        self._capacity = asyncio.Semaphore(self._slots)
        self._alerts: dict[tuple[str, int], Alert] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Read, reclaim and move due retries until `stop` is set, then finish the batches in hand."""
        await self.ensure_groups()
        loops = [
            asyncio.create_task(self._read_loop(stop), name=f"{self.channel.name}-read"),
            asyncio.create_task(self._reclaim_loop(stop), name=f"{self.channel.name}-reclaim"),
            asyncio.create_task(self._retry_loop(stop), name=f"{self.channel.name}-retry"),
            asyncio.create_task(self._heartbeat_loop(stop), name=f"{self.channel.name}-heartbeat"),
        ]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forever(self, stop: asyncio.Event, step: Any, pause: float) -> None:
        """Run `step` until stopped; Redis outages are logged and waited out, never fatal."""
        while not stop.is_set():
            try:
                await step()
            except (RedisError, OSError) as exc:
                log.warning("worker %s: redis unavailable (%s); retrying", self.channel.name, exc)
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: unexpected error", self.channel.name)
                await asyncio.sleep(1)
            if pause:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    async def _read_loop(self, stop: asyncio.Event) -> None:
        await self._forever(stop, self._read_once, 0)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        await self._forever(stop, self._reclaim_once, max(0.2, self.settings.visibility_timeout / 4))

    async def _retry_loop(self, stop: asyncio.Event) -> None:
        async def step() -> None:
            await self._due(keys=[self.deliveries.retry_key(self.channel.name), *self.streams], args=[500])

        await self._forever(stop, step, 0.2)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        async def step() -> None:
            await self.redis.hset(
                self.deliveries.keys.key("workers"), f"{self.channel.name}:{self.consumer}", str(time.time())
            )

        await self._forever(stop, step, 5)

    # -- reading ------------------------------------------------------------------------------------

    async def _read_once(self) -> None:
        await self._capacity.acquire()
        entries: Any
        try:
            # Urgent (red/orange) first: only when that stream is empty do we look at the other.
            entries = await self.redis.xreadgroup(GROUP, self.consumer, {self.streams[0]: ">"}, count=1)
            if not entries:
                entries = await self.redis.xreadgroup(
                    GROUP, self.consumer, dict.fromkeys(self.streams, ">"), count=1, block=500
                )
        except BaseException:
            self._capacity.release()
            raise
        for stream, items in entries or []:
            for entry_id, fields in items:
                self._spawn(str(stream), str(entry_id), fields)
                return
        self._capacity.release()

    async def _reclaim_once(self) -> None:
        idle_ms = int(self.settings.visibility_timeout * 1000)
        for stream in self.streams:
            while True:
                await self._capacity.acquire()
                try:
                    result: Any = await self.redis.xautoclaim(
                        stream, GROUP, self.consumer, idle_ms, "0-0", count=1
                    )
                    claimed: list[tuple[Any, dict[Any, Any]]] = result[1]
                except BaseException:
                    self._capacity.release()
                    raise
                live = [(entry_id, fields) for entry_id, fields in claimed if fields]
                if not live:  # nothing idle (an entry deleted meanwhile comes back empty)
                    self._capacity.release()
                    break
                entry_id, fields = live[0]
                log.info("reclaimed a batch from a dead worker", extra={"entry": str(entry_id)})
                self._spawn(stream, str(entry_id), fields)

    def _spawn(self, stream: str, entry_id: str, fields: dict[Any, Any]) -> None:
        """Process one entry in its own task; the capacity slot taken for it is released when it ends."""
        task = asyncio.create_task(self._process(stream, entry_id, fields))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._capacity.release()

        task.add_done_callback(done)

    # -- processing ---------------------------------------------------------------------------------

    async def _process(self, stream: str, entry_id: str, fields: dict[Any, Any]) -> None:
        keepalive = asyncio.create_task(self._keep_claimed(stream, entry_id))
        batch: Batch | None = None
        try:
            raw = fields.get("b") or fields.get(b"b")
            if raw is None:
                log.error("malformed stream entry dropped", extra={"entry": entry_id})
                await self._finish(stream, entry_id)
                return
            batch = Batch.from_json(raw)
            alert = await self._alert(batch)
            if alert is None:
                log.error("batch for unknown alert dropped", extra={"alert": batch.alert_id})
            else:
                chunk = max(1, min(self.limiter.burst, self.channel.limits.max_in_flight))
                for start in range(0, len(batch.recipients), chunk):
                    await self._send_chunk(alert, batch, batch.recipients[start : start + chunk])
            await self._finish(stream, entry_id)
        except (RedisError, OSError) as exc:
            # Left pending: the reclaimer (ours or another worker's) picks it up again.
            log.warning("batch left for reclaim: %s", exc, extra={"entry": entry_id})
        except Exception as exc:
            # A bug, not a provider answer: logged with its traceback, and the batch retried once at most.
            log.exception("batch processing failed unexpectedly", extra={"entry": entry_id})
            if batch is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._after_bug(stream, entry_id, batch, exc)
        finally:
            keepalive.cancel()

    async def _after_bug(self, stream: str, entry_id: str, batch: Batch, exc: Exception) -> None:
        states = await self.deliveries.states_of(batch)
        open_ones = [r for r in batch.recipients if states.get(r.id) in ("q", "r", "s")]
        if batch.unexpected >= 1:
            await self.deliveries.move(
                batch.alert_id, batch.version, batch.ledger, [(r.id, "L") for r in open_ones]
            )
            await self.redis.xadd(
                self.deliveries.dead_key(self.channel.name),
                {
                    "b": batch.with_recipients(open_ones).to_json(),
                    "reason": json.dumps([repr(exc)]),
                    "ts": str(time.time()),
                },
            )
        elif open_ones:
            again = batch.with_recipients(open_ones, unexpected=batch.unexpected + 1)
            await self.redis.xadd(
                self.deliveries.stream_key(self.channel.name, self._urgent(batch)), {"b": again.to_json()}
            )
        await self._finish(stream, entry_id)

    async def _keep_claimed(self, stream: str, entry_id: str) -> None:
        """Reset the entry's idle time while we work on it, so no live batch is reclaimed by another worker."""
        interval = max(0.1, self.settings.visibility_timeout / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(RedisError):
                await self.redis.xclaim(stream, GROUP, self.consumer, 0, [entry_id], justid=True)

    async def _finish(self, stream: str, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)  # acknowledged entries are trimmed: streams never grow unbounded
            await pipe.execute()

    async def _alert(self, batch: Batch) -> Alert | None:
        key = (batch.alert_id, batch.version)
        if key not in self._alerts:
            alert = await self.alerts.find(batch.alert_id)
            if alert is None:
                return None
            if len(self._alerts) > 1000:
                self._alerts.clear()
            self._alerts[key] = alert
        return self._alerts[key]

    async def _send_chunk(self, alert: Alert, batch: Batch, recipients: Sequence[Recipient]) -> None:
        await self.limiter.take(len(recipients))
        decisions = await self.deliveries.claim(batch.with_recipients(recipients))
        to_send = [r for r, decision in zip(recipients, decisions, strict=True) if decision == "s"]
        if not to_send:
            return
        messages = [await self._message(alert, batch, r) for r in to_send]
        results = await self.channel.send(messages)
        await self._record(batch, to_send, results)

    async def _message(self, alert: Alert, batch: Batch, recipient: Recipient) -> Message:
        text = recipient.text
        if not text and batch.action in ("play", ALL_CLEAR_ACTION):
            # An all-clear's texts are the alert's own "allclear" audience, whoever it goes to.
            audience = ALL_CLEAR if batch.action == ALL_CLEAR_ACTION else batch.audience
            text = await self.texts.get(alert.id, alert.version, audience, batch.channel, recipient.language)
        return Message(
            key=f"{alert.id}:{alert.version}:{batch.ledger}:{recipient.id}",
            recipient=recipient.id,
            address=recipient.address,
            text=text,
            alert_id=alert.id,
            version=alert.version,
            level=alert.level,
            exercise=alert.exercise,
            # The all-clear may go out after the warning's own expiry (within the clear window): a device
            # must not refuse it as expired.
            expires=None if batch.action == ALL_CLEAR_ACTION else alert.expires,
            action=batch.action,
            repeat=self.repeat,
            attempt=batch.attempt,
            audience=batch.audience,
        )

    async def _record(
        self, batch: Batch, sent: Sequence[Recipient], results: Sequence[DeliveryResult]
    ) -> None:
        moves: list[tuple[str, str]] = []
        retry: list[Recipient] = []
        dead: list[tuple[Recipient, str]] = []
        retry_after = 0.0
        bug = False
        for recipient, result in zip(sent, results, strict=True):
            if result.outcome is Outcome.SENT:
                moves.append((recipient.id, "S"))
            elif result.outcome is Outcome.EXPIRED:
                moves.append((recipient.id, "X"))
            elif result.outcome is Outcome.AMBIGUOUS:
                moves.append((recipient.id, "A"))
                log.warning("ambiguous send recorded, not resent", extra={"delivery": recipient.id})
            elif result.outcome is Outcome.PERMANENT:
                moves.append((recipient.id, "F"))
            elif result.unexpected and batch.unexpected >= 1:
                moves.append((recipient.id, "F"))  # an adapter bug twice: stop, it is logged
            elif batch.attempt >= self.settings.max_attempts:
                moves.append((recipient.id, "L"))
                dead.append((recipient, result.detail))
            else:
                moves.append((recipient.id, "r"))
                retry.append(recipient)
                retry_after = max(retry_after, result.retry_after or 0.0)
                bug = bug or result.unexpected
        await self.deliveries.move(batch.alert_id, batch.version, batch.ledger, moves)
        accepted = [
            (r, result) for r, result in zip(sent, results, strict=True) if result.outcome is Outcome.SENT
        ]
        if accepted:
            for hook in self.on_sent:
                await hook(batch, accepted)
        if retry:
            again = batch.with_recipients(
                retry, attempt=batch.attempt + 1, unexpected=batch.unexpected + int(bug)
            )
            delay = backoff(batch.attempt, self.settings, retry_after or None, self._rng)
            urgent = "h" if self._urgent(batch) else "l"
            await self.redis.zadd(
                self.deliveries.retry_key(self.channel.name),
                {f"{urgent}:{again.to_json()}": time.time() + delay},
            )
        if dead:
            reasons = sorted({reason for _, reason in dead})
            gone = batch.with_recipients([r for r, _ in dead])
            await self.redis.xadd(
                self.deliveries.dead_key(self.channel.name),
                {
                    "b": gone.to_json(),
                    "reason": json.dumps(reasons, ensure_ascii=False),
                    "ts": str(time.time()),
                },
            )
            log.error("deliveries dead-lettered", extra={"alert": batch.alert_id, "count": len(dead)})

    def _urgent(self, batch: Batch) -> bool:
        alert = self._alerts.get((batch.alert_id, batch.version))
        return bool(alert and alert.level.urgent) or batch.action in ("stop", ALL_CLEAR_ACTION)
