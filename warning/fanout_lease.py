"""Fan-out leases: at most one process runs a fan-out at a time, and a crashed one is resumed in seconds.

A fan-out not yet finished is a member "{alert}:{version}:{action}" (its marker) of the ZSET
`fanout:pending`, scored by the time from which it may be resumed: `grace` after an issuer marked it
(the issuer starts its run within milliseconds), at once when a run starts. The process running it holds the lease
`fanout:lease:{marker}` = its owner token, with a time to live of `ttl`. A heartbeat task renews the lease
every `renew_every` for as long as the run lasts, independent of how fast the run progresses, so a slow
fan-out (a busy Redis, a huge village) is never taken for a crashed one; a process that dies, or loses
Redis, stops renewing and its lease lapses within `ttl`.

Housekeeping resumes a marker only by taking its lease in one script (the marker is still pending and
`SET NX PX` succeeds), so two resumers never run the same marker, and a marker whose lease is alive is
never touched. A run whose renewal finds another owner (or that could not renew for `ttl`) has lost the
lease: it stops queuing and leaves the marker to the new owner. Queuing itself stays idempotent (HSETNX
per recipient), so even a batch in flight at the hand-over queues nobody twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from warning.store import Keyspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTiming:
    """How fast a dead fan-out is noticed; tests shrink these."""

    ttl: float = 5.0  # a lease not renewed for this long has lapsed
    renew_every: float = 1.0  # the heartbeat's period
    # A marker no run has leased yet (its issuer died between marking it and starting the fan-out) is left
    # this long to the issuer, which normally starts within milliseconds.
    grace: float = 10.0


# KEYS: lease, pending. ARGV: owner, ttl ms, now, marker → 1 if taken (and the marker noted as pending,
# resumable as soon as this run's lease lapses).
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# KEYS: lease, pending. ARGV: owner, ttl ms, now, marker → 1 if the marker is still pending, resumable
# by now, and its lease was free (now ours).
_CLAIM = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[4])
if not score or tonumber(score) > tonumber(ARGV[3]) then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: lease. ARGV: owner, ttl ms → 1 if still ours (and extended).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lease, pending. ARGV: owner, marker → 1 if it was ours: the fan-out is done, marker and lease go.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: owner → the run ended without finishing: free the lease now if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fanout_marker(alert_id: str, version: int, action: str) -> str:
    return f"{alert_id}:{version}:{action}"


def pending_key(keys: Keyspace) -> str:
    """ZSET of the markers of unfinished fan-outs, scored by the time each may be resumed from."""
    return keys.key("fanout", "pending")


class FanoutLease:
    """One run's hold on a fan-out marker, renewed by a heartbeat task while the run lasts."""

    def __init__(self, leases: FanoutLeases, marker: str, owner: str, conn: Redis, taken_at: float) -> None:
        self.marker = marker
        self.owner = owner
        self._leases = leases
        self._conn = conn  # a connection of its own: renewals never wait behind a busy pool
        self._deadline = taken_at + leases.timing.ttl  # monotonic time the lease lapses if not renewed
        self._lost = False
        self._finished = False
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def lost(self) -> bool:
        """True once another owner took the lease or it could not be renewed in time (never reset)."""
        return self._lost

    async def held(self) -> bool:
        """Whether this run may go on queuing; renews now if the heartbeat has fallen behind."""
        if self._lost:
            return False
        if time.monotonic() < self._deadline - self._leases.timing.renew_every:
            return True
        return await self._renew()

    async def finish(self) -> bool:
        """The fan-out is complete: drop the marker and the lease (only if still ours; never once lost)."""
        if self._lost:
            return False
        key = self._leases.lease_key(self.marker)
        done = await self._leases.scripts.finish(
            keys=[key, self._leases.pending], args=[self.owner, self.marker], client=self._conn
        )
        self._finished = bool(done)
        if not done:
            self._lose("the lease was taken over before the fan-out finished")
        return self._finished

    def _start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name=f"fanout-lease:{self.marker}")

    async def _stop(self) -> None:
        """Stop the heartbeat; free the lease at once if the run ended without finishing."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        try:
            if not self._finished and not self._lost:
                # Freed now, a resumer can take over at its next round; if Redis is gone, it lapses.
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._leases.timing.ttl):
                        await self._leases.scripts.release(
                            keys=[self._leases.lease_key(self.marker)], args=[self.owner], client=self._conn
                        )
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self._conn.aclose()

    async def _beat(self) -> None:
        while not self._lost:
            await asyncio.sleep(self._leases.timing.renew_every)
            await self._renew()

    async def _renew(self) -> bool:
        timing = self._leases.timing
        sent = time.monotonic()
        try:
            async with asyncio.timeout(max(timing.ttl - timing.renew_every, timing.renew_every)):
                ours = await self._leases.scripts.renew(
                    keys=[self._leases.lease_key(self.marker)],
                    args=[self.owner, int(timing.ttl * 1000)],
                    client=self._conn,
                )
        except (RedisError, OSError, TimeoutError) as exc:
            if time.monotonic() >= self._deadline:
                self._lose(f"could not renew the lease for {timing.ttl:g} s ({type(exc).__name__})")
            return not self._lost
        if not ours:
            self._lose("another process holds the lease")
            return False
        self._deadline = sent + timing.ttl
        return True

    def _lose(self, why: str) -> None:
        if not self._lost:
            self._lost = True
            log.warning(
                "fan-out lease lost; this run stops queuing", extra={"marker": self.marker, "why": why}
            )


@dataclass
class _Scripts:
    take: AsyncScript
    claim: AsyncScript
    renew: AsyncScript
    finish: AsyncScript
    release: AsyncScript


class FanoutLeases:
    """Markers of unfinished fan-outs and the leases of the runs working on them."""

    def __init__(self, redis: Redis, keys: Keyspace, timing: LeaseTiming | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.timing = timing or LeaseTiming()
        self.pending = pending_key(keys)
        self.scripts = _Scripts(
            take=redis.register_script(_TAKE),
            claim=redis.register_script(_CLAIM),
            renew=redis.register_script(_RENEW),
            finish=redis.register_script(_FINISH),
            release=redis.register_script(_RELEASE),
        )

    def lease_key(self, marker: str) -> str:
        return self.keys.key("fanout", "lease", marker)

    async def mark(self, marker: str) -> None:
        """Note that `marker`'s fan-out is due; resumable after `grace` unless a run takes its lease."""
        await self.redis.zadd(self.pending, {marker: time.time() + self.timing.grace})

    async def resumable(self) -> list[str]:
        """Pending markers due whose lease is free: their run died (or lost Redis), or never started."""
        markers = sorted(str(m) for m in await self.redis.zrangebyscore(self.pending, "-inf", time.time()))
        if not markers:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for marker in markers:
                pipe.exists(self.lease_key(marker))
            alive = await pipe.execute()
        return [m for m, held in zip(markers, alive, strict=True) if not held]

    @asynccontextmanager
    async def take(self, marker: str) -> AsyncIterator[FanoutLease | None]:
        """Start a run of `marker` (noting it pending); None if another run holds its lease."""
        async with self._hold(marker, "take", time.time()) as lease:
            yield lease

    @asynccontextmanager
    async def claim(self, marker: str) -> AsyncIterator[FanoutLease | None]:
        """Resume `marker`: None unless it is still pending, due, and nobody holds its lease."""
        async with self._hold(marker, "claim", time.time()) as lease:
            yield lease

    @asynccontextmanager
    async def _hold(self, marker: str, how: str, when: float) -> AsyncIterator[FanoutLease | None]:
        owner = uuid.uuid4().hex
        conn = self.redis.client()
        script = self.scripts.take if how == "take" else self.scripts.claim
        try:
            taken_at = time.monotonic()
            got = await script(
                keys=[self.lease_key(marker), self.pending],
                args=[owner, int(self.timing.ttl * 1000), when, marker],
                client=conn,
            )
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await conn.aclose()
            raise
        if not got:
            await conn.aclose()
            yield None
            return
        lease = FanoutLease(self, marker, owner, conn, taken_at)
        lease._start()
        try:
            yield lease
        finally:
            await lease._stop()
