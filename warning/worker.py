"""Workers: consume a channel's queue, send through the channel, record outcomes, retry, reconcile.

One consumer group per channel stream; any number of workers on any number of hosts. For each chunk of
a batch: ask the channel's circuit breaker (open: the batch is put back for when it closes) → peek at
the alert (cancelled, superseded or expired: the recipients are settled at once, without spending rate
tokens) → take rate-limit tokens → claim (queued → sending, atomically refused after a cancel or
`expires`) → make sure the entry is still ours (a worker paused past `visibility_timeout` lost it to
another and must not send) → send → record what happened:

    sent        the provider accepted it
    transient   retried with exponential backoff and full jitter (never sooner than `retry_after`), for
                as long as the alert lasts: a retry that would fall after `expires` is recorded expired
    ambiguous   the request went out and no answer came: looked up at the provider after
                `reconcile_after` (found: sent; not found: resent once more, flagged; the provider cannot
                tell: resent once)
    permanent   failed, and dead-lettered so that `warning deadletters` shows it

then acknowledge and delete the entry. A worker that dies leaves its entries pending; another reclaims
them with XAUTOCLAIM once they have been idle for `worker.visibility_timeout`, skips every recipient
already sent, and reconciles (looks up) those the dead worker was sending to instead of resending them
blindly. An entry a Redis outage cut short is taken up again by its own worker as soon as Redis is back.
Nothing is handed to a provider within `base.EXPIRY_MARGIN` of the alert's `expires`.
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
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from warning.alerts import AlertStore
from warning.channels.base import NOT_FOUND, UNKNOWN, Channel, DeliveryResult, Found, Message, Outcome
from warning.channels.breaker import BreakerState, CircuitBreaker, breakers_key
from warning.config import WorkerSettings
from warning.deliveries import GROUP, Batch, Deliveries, Recipient
from warning.errors import TransientDeliveryError
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


# KEYS: a zset of due work. ARGV: limit, lease seconds. Returns the members that are due, each pushed back
# by the lease: work taken by a worker that dies on it comes due again instead of being lost.
_LEASE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member) end
return due
"""

# KEYS: stream. ARGV: group, entry id, consumer. 1 (and its idle time reset) if the entry is still
# pending with this consumer; 0 if another worker took it over (or it is gone): never steal it back.
_KEEP = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""

RECONCILE_LEASE = 60.0  # seconds a reconciliation is held by the worker doing it
OWNERSHIP_FRACTION = 0.8  # of the visibility timeout after a confirmation that a batch is surely ours
# How long before its takeover (beyond the visibility timeout) a cut-off send may have been made.
CUT_OFF_SLACK = 120.0


class _TakenOver(Exception):
    """The batch's stream entry now belongs to another worker (this one was paused or cut off)."""


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
        self._lease_due = self.redis.register_script(_LEASE_DUE)
        self._keep = self.redis.register_script(_KEEP)
        self._rng = random.Random()
        self.breaker = CircuitBreaker(
            failures=settings.breaker_failures,
            open_for=settings.breaker_open,
            open_max=settings.breaker_open_max,
        )
        # Backpressure: room is reserved for a whole batch *before* reading one, so a slow provider
        # leaves entries in the stream (where any worker can take them), never idle in our hands.
        self._slots = max(1, channel.limits.max_in_flight // settings.batch_size)
        self._capacity = asyncio.Semaphore(self._slots)
        self._alerts: dict[tuple[str, int], Alert] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._interrupted: set[tuple[str, str]] = set()  # our entries a Redis error cut short
        self._confirmed: dict[tuple[str, str], float] = {}  # entry → monotonic time last confirmed ours

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
            asyncio.create_task(self._resume_loop(stop), name=f"{self.channel.name}-resume"),
            asyncio.create_task(self._retry_loop(stop), name=f"{self.channel.name}-retry"),
            asyncio.create_task(self._heartbeat_loop(stop), name=f"{self.channel.name}-heartbeat"),
            asyncio.create_task(self._reconcile_loop(stop), name=f"{self.channel.name}-reconcile"),
        ]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):  # a stopped worker's breaker no longer counts
                await self.redis.hdel(
                    breakers_key(self.deliveries.keys), f"{self.channel.name}:{self.consumer}"
                )

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

    async def _resume_loop(self, stop: asyncio.Event) -> None:
        await self._forever(stop, self._resume_once, 0.5)

    async def _resume_once(self) -> None:
        """Take up again our own entries a Redis error interrupted, once Redis answers."""
        for stream, entry_id in sorted(self._interrupted):
            await self._capacity.acquire()
            try:
                mine = await self._still_ours(stream, entry_id)
                found: Any = await self.redis.xrange(stream, entry_id, entry_id) if mine else []
            except BaseException:
                self._capacity.release()
                raise
            self._interrupted.discard((stream, entry_id))
            if not found:  # another worker has it, or it was finished after all
                self._capacity.release()
                continue
            _, fields = found[0]
            self._spawn(stream, entry_id, fields)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        await self._forever(stop, self._reclaim_once, max(0.2, self.settings.visibility_timeout / 4))

    async def _retry_loop(self, stop: asyncio.Event) -> None:
        async def step() -> None:
            await self._due(keys=[self.deliveries.retry_key(self.channel.name), *self.streams], args=[500])

        await self._forever(stop, step, 0.2)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        async def step() -> None:
            name = f"{self.channel.name}:{self.consumer}"
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.deliveries.keys.key("workers"), name, str(time.time()))
                pipe.hset(breakers_key(self.deliveries.keys), name, self._breaker_json())
                await pipe.execute()

        await self._forever(stop, step, 5)

    def _breaker_json(self) -> str:
        b = self.breaker
        return json.dumps(
            {
                "state": b.state.value,
                "opened": b.opened,
                "retry_in": round(b.remaining(), 1),
                "ts": time.time(),
            }
        )

    async def _note_breaker(self, changed: bool) -> None:
        """Log and publish a change of the breaker's state (for `/readyz` and the metrics)."""
        if not changed:
            return
        b = self.breaker
        log.warning(
            "circuit breaker of %s is %s",
            self.channel.name,
            b.state.value,
            extra={"channel": self.channel.name, "breaker": b.state.value, "retry_in": b.remaining()},
        )
        with contextlib.suppress(RedisError, OSError):
            await self.redis.hset(
                breakers_key(self.deliveries.keys),
                f"{self.channel.name}:{self.consumer}",
                self._breaker_json(),
            )

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        await self._forever(
            stop, self._reconcile_once, max(0.05, min(1.0, self.settings.reconcile_after / 2))
        )

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
                await self._send_batch(alert, batch, (stream, entry_id))
            await self._finish(stream, entry_id)
        except _TakenOver:
            # Paused (or cut off from Redis) past the visibility timeout: another worker has the entry now
            # and sends what is left of it. Nothing more is sent, recorded or acknowledged from here.
            log.warning("batch taken over by another worker; not sent from here", extra={"entry": entry_id})
        except (RedisError, OSError) as exc:
            # Left pending: the reclaimer (ours or another worker's) picks it up again.
            # Still pending with us: taken up again as soon as Redis answers (not after the visibility
            # timeout), unless another worker has it by then.
            log.warning(
                "batch interrupted by Redis: %s; taken up again when it is back",
                exc,
                extra={"entry": entry_id},
            )
            self._interrupted.add((stream, entry_id))
        except Exception as exc:
            # A bug, not a provider answer: logged with its traceback, and the batch retried once at most.
            log.exception("batch processing failed unexpectedly", extra={"entry": entry_id})
            if batch is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._after_bug(stream, entry_id, batch, exc)
        finally:
            keepalive.cancel()
            self._confirmed.pop((stream, entry_id), None)

    async def _after_bug(self, stream: str, entry_id: str, batch: Batch, exc: Exception) -> None:
        states = await self.deliveries.states_of(batch)
        open_ones = [r for r in batch.recipients if states.get(r.id) in ("q", "r", "s")]
        if batch.unexpected >= 1:
            await self.deliveries.move(
                batch.alert_id, batch.version, batch.ledger, [(r.id, "L") for r in open_ones]
            )
            await self._dead_letter(batch.with_recipients(open_ones), [repr(exc)])
        elif open_ones:
            # Those still `sending` were not sent (the bug struck instead of the call): claimable again.
            sending = [(r.id, "r") for r in open_ones if states.get(r.id) == "s"]
            await self.deliveries.move(batch.alert_id, batch.version, batch.ledger, sending)
            again = batch.with_recipients(open_ones, unexpected=batch.unexpected + 1)
            await self.redis.xadd(
                self.deliveries.stream_key(self.channel.name, self._urgent(batch)), {"b": again.to_json()}
            )
        await self._finish(stream, entry_id)

    async def _keep_claimed(self, stream: str, entry_id: str) -> None:
        """Reset the entry's idle time while we work on it, so no live batch is reclaimed by another worker
        (and never take it back from one that reclaimed it while we were paused)."""
        interval = max(0.1, self.settings.visibility_timeout / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(RedisError, OSError):
                if not await self._still_ours(stream, entry_id):
                    return

    async def _still_ours(self, stream: str, entry_id: str) -> bool:
        checked = time.monotonic()
        ours = bool(int(await self._keep(keys=[stream], args=[GROUP, entry_id, self.consumer])))
        if ours:
            self._confirmed[(stream, entry_id)] = checked
        else:
            self._confirmed.pop((stream, entry_id), None)
        return ours

    def _may_send(self, entry: tuple[str, str]) -> Callable[[], bool]:
        """Cheap, local, asked before each provider call: since the entry was last confirmed ours (its idle
        time reset), no other worker can have taken it for `visibility_timeout`. A worker that was paused
        (SIGSTOP, a frozen VM) past most of that finds out here and sends nothing more of the batch."""
        window = self.settings.visibility_timeout * OWNERSHIP_FRACTION

        def check() -> bool:
            confirmed = self._confirmed.get(entry)
            return confirmed is not None and time.monotonic() - confirmed < window

        return check

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

    async def _send_batch(self, alert: Alert, batch: Batch, entry: tuple[str, str]) -> None:
        """Send the batch chunk by chunk, as the breaker, the alert's state and the rate allow."""
        chunk = max(1, min(self.limiter.burst, self.channel.limits.max_in_flight))
        remaining = list(batch.recipients)
        while remaining:
            wait, probe = self.breaker.admit()
            if wait:
                # The provider is resting: the rest goes back to the retry queue (as it is: no attempt is
                # spent) for when the breaker lets a probe through.
                await self._schedule(batch.with_recipients(remaining), wait)
                return
            part, remaining = remaining[: 1 if probe else chunk], remaining[1 if probe else chunk :]
            verdict = await self.deliveries.verdict(batch)
            if verdict != "s":
                # Cancelled, superseded or expired: settle everything left at once, no rate tokens spent
                # (what a cut-off worker was sending is looked up first: settled only if never sent).
                left = part + remaining
                decisions = await self.deliveries.claim(batch.with_recipients(left))
                cut_off = [r for r, decision in zip(left, decisions, strict=True) if decision == "a"]
                if cut_off:
                    await self._cut_off(batch.with_recipients(cut_off))
                if probe:
                    self.breaker.release_probe()
                return
            try:
                await self._send_chunk(alert, batch, part, entry)
            finally:
                # A probe that was not sent, or whose answer said nothing of the provider's health (it
                # expired, an adapter bug), lets the next one through.
                if probe and self.breaker.state is BreakerState.HALF_OPEN:
                    self.breaker.release_probe()

    async def _send_chunk(
        self, alert: Alert, batch: Batch, recipients: Sequence[Recipient], entry: tuple[str, str]
    ) -> None:
        """Claim and send one chunk (what was settled or sent before is skipped).

        Raises:
            _TakenOver: the stream entry is another worker's now.
        """
        await self.limiter.take(len(recipients))
        decisions = await self.deliveries.claim(batch.with_recipients(recipients))
        to_send = [r for r, decision in zip(recipients, decisions, strict=True) if decision == "s"]
        cut_off = [r for r, decision in zip(recipients, decisions, strict=True) if decision == "a"]
        if not to_send and not cut_off:
            return
        if not await self._still_ours(*entry):
            raise _TakenOver
        if cut_off:
            await self._cut_off(batch.with_recipients(cut_off))
        if not to_send:
            return
        messages = [await self._message(alert, batch, r) for r in to_send]
        since = datetime.now(UTC)
        results = await self.channel.send(messages, may_send=self._may_send(entry))
        changed = False
        for result in results:
            healthy = result.healthy
            if healthy is not None:
                changed = self.breaker.record(healthy) or changed
        await self._note_breaker(changed)
        await self._record(alert, batch, to_send, results, since)
        if any(result.outcome is Outcome.WITHHELD for result in results):
            raise _TakenOver

    async def _schedule(self, batch: Batch, delay: float) -> None:
        """Put a batch in the retry queue, due in `delay` seconds (then back in its stream)."""
        urgent = "h" if self._urgent(batch) else "l"
        await self.redis.zadd(
            self.deliveries.retry_key(self.channel.name), {f"{urgent}:{batch.to_json()}": time.time() + delay}
        )

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
            resend=bool(batch.resent),
        )

    async def _record(
        self,
        alert: Alert,
        batch: Batch,
        sent: Sequence[Recipient],
        results: Sequence[DeliveryResult],
        since: datetime,
    ) -> None:
        moves: list[tuple[str, str]] = []
        retry: list[Recipient] = []
        ambiguous: list[Recipient] = []
        dead: list[tuple[Recipient, str]] = []
        retry_after = 0.0
        bug = False
        for recipient, result in zip(sent, results, strict=True):
            if result.outcome is Outcome.SENT:
                moves.append((recipient.id, "S"))
            elif result.outcome is Outcome.WITHHELD:
                continue  # still `sending`: the worker that took the batch over reconciles it
            elif result.outcome is Outcome.EXPIRED:
                moves.append((recipient.id, "X"))
            elif result.outcome is Outcome.AMBIGUOUS:
                moves.append((recipient.id, "A"))
                ambiguous.append(recipient)
            elif result.outcome is Outcome.PERMANENT:
                moves.append((recipient.id, "F"))
                dead.append((recipient, result.detail))
            elif result.unexpected and batch.unexpected >= 1:
                moves.append((recipient.id, "L"))  # an adapter bug twice: stop, it is logged
                dead.append((recipient, result.detail))
            else:
                retry.append(recipient)
                retry_after = max(retry_after, result.retry_after or 0.0)
                bug = bug or result.unexpected
        delay = backoff(batch.attempt, self.settings, retry_after or None, self._rng)
        if retry:
            # Retried for as long as the warning lasts; a retry that would go out after it is expired now.
            due = time.time() + delay
            if alert.expires is not None and due >= alert.expires.timestamp():
                moves.extend((r.id, "X") for r in retry)
                retry = []
            elif alert.expires is None and due >= alert.sent.timestamp() + self.settings.retry_window:
                moves.extend((r.id, "L") for r in retry)
                dead.extend((r, "retry_window") for r in retry)
                retry = []
            else:
                moves.extend((r.id, "r") for r in retry)
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
            await self._schedule(again, delay)
        if ambiguous:
            log.warning(
                "ambiguous sends: to be looked up at the provider",
                extra={"alert": batch.alert_id, "channel": batch.ledger, "count": len(ambiguous)},
            )
            await self._reconcile_later(batch.with_recipients(ambiguous), since, tries=0)
        if dead:
            await self._dead_letter(
                batch.with_recipients([r for r, _ in dead]), sorted({why for _, why in dead})
            )

    async def _dead_letter(self, batch: Batch, reasons: Sequence[str]) -> None:
        await self.redis.xadd(
            self.deliveries.dead_key(self.channel.name),
            {
                "b": batch.to_json(),
                "reason": json.dumps(list(reasons), ensure_ascii=False),
                "ts": str(time.time()),
            },
        )
        log.error(
            "deliveries dead-lettered",
            extra={"alert": batch.alert_id, "channel": batch.ledger, "count": len(batch.recipients)},
        )

    # -- reconciling ambiguous sends ----------------------------------------------------------------

    async def _cut_off(self, batch: Batch) -> None:
        """Recipients a worker was sending to when it was cut off (killed, Redis gone): the provider may
        have them, so they are reconciled like an ambiguous send, not sent blindly again."""
        await self.deliveries.move(
            batch.alert_id, batch.version, batch.ledger, [(r.id, "A") for r in batch.recipients]
        )
        # The cut-off send was made at most a visibility timeout (plus the provider's timeout) ago.
        since = datetime.now(UTC) - timedelta(seconds=self.settings.visibility_timeout + CUT_OFF_SLACK)
        log.warning(
            "sends cut off mid-call: to be looked up at the provider",
            extra={"alert": batch.alert_id, "channel": batch.ledger, "count": len(batch.recipients)},
        )
        await self._reconcile_later(batch, since, tries=0)

    async def _reconcile_later(self, batch: Batch, since: datetime, *, tries: int) -> None:
        delay = (
            self.settings.reconcile_after if tries == 0 else backoff(tries, self.settings, None, self._rng)
        )
        member = json.dumps(
            {"since": since.timestamp(), "n": tries, "b": batch.to_json()}, ensure_ascii=False
        )
        await self.redis.zadd(self.deliveries.reconcile_key(self.channel.name), {member: time.time() + delay})

    async def _reconcile_once(self) -> None:
        key = self.deliveries.reconcile_key(self.channel.name)
        due: Any = await self._lease_due(keys=[key], args=[50, RECONCILE_LEASE])
        for member in due or []:
            await self._reconcile(str(member))
            await self.redis.zrem(key, member)

    async def _reconcile(self, member: str) -> None:
        """Settle the ambiguous sends of one entry: found at the provider → sent; not found → resent
        (flagged); the provider cannot tell → resent once; the provider cannot be asked → later."""
        entry = json.loads(member)
        batch = Batch.from_json(entry["b"])
        since = datetime.fromtimestamp(float(entry["since"]), UTC)
        states = await self.deliveries.states_of(batch)
        open_ones = [r for r in batch.recipients if states.get(r.id) == "A"]  # receipts may have settled some
        alert = await self._alert(batch)
        if not open_ones or alert is None:
            return
        wait, _ = self.breaker.admit()
        if wait:
            await self._reconcile_later(batch.with_recipients(open_ones), since, tries=int(entry["n"]) + 1)
            return
        verdict = await self.deliveries.verdict(batch)
        moves: list[tuple[str, str]] = []
        found: list[tuple[Recipient, DeliveryResult]] = []
        resend: list[Recipient] = []
        for index, recipient in enumerate(open_ones):
            message = await self._message(alert, batch, recipient)
            try:
                provider_id = await self._look_up(message, since)
            except TransientDeliveryError as exc:
                log.warning(
                    "ambiguous send: the provider cannot be asked now (%s)",
                    exc,
                    extra={"delivery": message.key},
                )
                await self._reconcile_later(
                    batch.with_recipients(open_ones[index:]), since, tries=int(entry["n"]) + 1
                )
                break
            if provider_id is not UNKNOWN and provider_id != NOT_FOUND:
                moves.append((recipient.id, "S"))
                found.append((recipient, DeliveryResult(message.key, Outcome.SENT, provider_id=provider_id)))
            elif verdict != "s":
                # Cancelled or expired since: nothing more goes out. Unknown stays ambiguous (it may have gone).
                if provider_id == NOT_FOUND:
                    moves.append((recipient.id, verdict))
            elif provider_id == NOT_FOUND or not batch.resent:
                moves.append((recipient.id, "r"))
                resend.append(recipient)
            else:
                log.error(
                    "ambiguous send stays ambiguous: the provider cannot be asked and it was resent once",
                    extra={"delivery": message.key},
                )
        await self.deliveries.move(batch.alert_id, batch.version, batch.ledger, moves)
        if found:
            for hook in self.on_sent:
                await hook(batch, found)
        if resend:
            log.warning(
                "ambiguous sends the provider has no record of: sent again",
                extra={"alert": batch.alert_id, "channel": batch.ledger, "count": len(resend)},
            )
            await self._schedule(batch.with_recipients(resend, attempt=batch.attempt + 1, resent=1), 0.0)

    async def _look_up(self, message: Message, since: datetime) -> Found:
        """The channel's lookup, told to its breaker; an adapter bug counts as "cannot tell" (UNKNOWN), so
        it never holds a resend back forever.

        Raises:
            TransientDeliveryError: the provider cannot be asked now.
        """
        try:
            found = await self.channel.lookup(message, since)
        except TransientDeliveryError as exc:
            await self._note_breaker(self.breaker.record(not exc.unhealthy))
            raise
        except Exception:
            log.exception("lookup failed unexpectedly", extra={"delivery": message.key})
            return UNKNOWN
        await self._note_breaker(self.breaker.record(True))
        return found

    def _urgent(self, batch: Batch) -> bool:
        alert = self._alerts.get((batch.alert_id, batch.version))
        return bool(alert and alert.level.urgent) or batch.action in ("stop", ALL_CLEAR_ACTION)
