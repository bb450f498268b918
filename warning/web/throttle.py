"""Per-client limits on the signed-link pages (`/c/{token}`, `/r/{token}`), shared by every process.

Each client (its IP address; an IPv6 client by its /64, which one host can hop around freely) has a
token bucket in Redis: `rate_per_minute` requests, bursts of `burst`. Refused attempts — a forged,
foreign or wrong-purpose token (403) and requests over the limit (429) — are counted in a hash per
client per minute, never appended one by one to the audit stream; a client with `refusals_per_minute`
refusals in the current minute gets 429 for the rest of it, so a token guesser is stopped after a few
tries while many residents behind one carrier NAT who open real links are not. (Requests admitted
concurrently before the last refusal is counted still get their 403: at most `burst` more a minute.)

The audit stream gets at most one entry per client per minute that had refusals: "N refused attempts
from IP in the minute from …", written by `sweep` (run every few seconds by `run_sweeper`) once that
minute is over. Whichever process claims a finished minute first writes it; the others skip it.

throttle:bucket:{client}            HASH tokens, ts        (expires when the bucket would be full)
throttle:refused:{minute}:{client}  HASH reason → count    (expires after 2 h)
throttle:pending                    ZSET "{minute}|{client}" by the minute's end: summaries to write
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from warning.i18n import t
from warning.ratelimit import LUA_BUCKET
from warning.store import Keyspace

log = logging.getLogger(__name__)

WINDOW = 60  # seconds: refusals are counted, limited and summarised per client per minute
COUNTS_TTL = 7200  # seconds a minute's counts stay readable in Redis
SWEEP_EVERY = 5.0
SWEEP_BATCH = 200
FORBIDDEN = "forbidden"
THROTTLED = "throttled"

# KEYS: bucket, this minute's refusals. ARGV: rate per second, burst, refusals allowed per minute,
# seconds left in the minute. Returns 0 when admitted (one token taken), else milliseconds to wait.
_ADMIT = (
    LUA_BUCKET
    + """
if tonumber(redis.call('HGET', KEYS[2], 'forbidden') or 0) >= tonumber(ARGV[3]) then
  return math.max(1, math.ceil(tonumber(ARGV[4]) * 1000))
end
return take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1)
"""
)

# KEYS: this minute's refusals, pending summaries. ARGV: reason, counts TTL, pending member, minute end.
_REFUSE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[4]), ARGV[3])
return n
"""

# KEYS: pending summaries. ARGV: now, batch. Removes and returns the members whose minute is over:
# ZREM is atomic, so each summary is claimed by exactly one process.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return due
"""

Audit = Callable[..., Awaitable[None]]


def client_of(remote: str | None) -> str:
    """The key a client is limited by: its IPv4 address, or its IPv6 /64 ("unknown" when none)."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class Throttle:
    """`await throttle.admit(client)` → 0 or seconds to wait; `await throttle.refuse(client, reason)`."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        rate_per_minute: int,
        burst: int,
        refusals_per_minute: int,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._admit = redis.register_script(_ADMIT)
        self._refuse = redis.register_script(_REFUSE)
        self._claim = redis.register_script(_CLAIM)
        self.rate = rate_per_minute / 60.0
        self.burst = max(1, burst)
        self.refusals_per_minute = refusals_per_minute
        self._on_refused = on_refused

    def _minute(self, now: float) -> int:
        return int(now // WINDOW) * WINDOW

    def refused_key(self, minute: int, client: str) -> str:
        return self._keys.key("throttle", "refused", str(minute), client)

    @property
    def pending_key(self) -> str:
        return self._keys.key("throttle", "pending")

    async def admit(self, client: str) -> float:
        """0 when this request may go on, else the seconds to wait (the answer's Retry-After).

        Raises:
            RedisError: Redis is unreachable (the caller decides; the pages fail open).
        """
        now = time.time()
        minute = self._minute(now)
        left = minute + WINDOW - now
        keys = [self._keys.key("throttle", "bucket", client), self.refused_key(minute, client)]
        wait_ms = int(
            await self._admit(keys=keys, args=[self.rate, self.burst, self.refusals_per_minute, left])
        )
        return wait_ms / 1000

    async def refuse(self, client: str, reason: str) -> int:
        """Count one refused attempt (`FORBIDDEN`, `THROTTLED`); returns this minute's count of that reason.

        Raises:
            RedisError: Redis is unreachable.
        """
        if self._on_refused is not None:
            self._on_refused(reason)
        minute = self._minute(time.time())
        keys = [self.refused_key(minute, client), self.pending_key]
        args: list[str | int] = [reason, COUNTS_TTL, f"{minute}|{client}", minute + WINDOW]
        return int(await self._refuse(keys=keys, args=args))

    async def counts(self, client: str, minute: int | None = None) -> dict[str, int]:
        """The refusals of `client` in a minute (default: this one), by reason."""
        at = self._minute(time.time()) if minute is None else minute
        raw = await self._redis.hgetall(self.refused_key(at, client))
        return {_text(k): int(v) for k, v in raw.items()}

    async def sweep(self, audit: Audit, now: float | None = None) -> int:
        """Write one audit summary per client per finished minute with refusals; returns how many.

        Raises:
            RedisError: Redis is unreachable (nothing is lost: unclaimed summaries wait for the next sweep).
        """
        written = 0
        due = now if now is not None else time.time()
        while True:
            members = await self._claim(keys=[self.pending_key], args=[due, SWEEP_BATCH])
            for member in members:
                minute_text, _, client = _text(member).partition("|")
                counts = await self.counts(client, int(minute_text))
                total = sum(counts.values())
                if total == 0:
                    continue
                start = datetime.fromtimestamp(int(minute_text), UTC).strftime("%H:%M:%S")
                await audit(
                    actor=f"client:{client}",
                    role="anonymous",
                    action="refused_link_attempts",
                    obj="-",
                    result="refused",
                    detail=t(
                        "{client} 在 {start} UTC 起的一分钟内有 {n} 次被拒绝的链接访问（无效链接 {f} 次，超限 {r} 次）",
                        "{n} refused attempts from {client} in the minute from {start} UTC "
                        "({f} invalid links, {r} over the limit)",
                        client=client,
                        start=start,
                        n=total,
                        f=counts.get(FORBIDDEN, 0),
                        r=counts.get(THROTTLED, 0),
                    ),
                )
                written += 1
            if len(members) < SWEEP_BATCH:
                return written


async def run_sweeper(throttle: Throttle, audit: Audit, every: float = SWEEP_EVERY) -> None:
    """Sweep every `every` seconds until cancelled; a Redis outage is logged and retried."""
    while True:
        try:
            await throttle.sweep(audit)
        except RedisError as exc:
            log.warning("refused-attempt summaries not written yet: %s", exc)
        await asyncio.sleep(every)


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
