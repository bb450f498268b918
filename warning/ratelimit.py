"""A token bucket per channel in Redis, shared by every worker on every host (Redis's clock decides)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from warning.store import Keyspace

# KEYS: bucket. ARGV: rate per second, burst, tokens wanted. Returns 0 when granted, else the
# milliseconds until enough tokens will have accrued (nothing is taken then).
_TAKE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local last = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = math.ceil((want - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
return wait
"""


class RateLimiter:
    """`await limiter.take(n)` returns when `n` sends are allowed under the channel's shared rate."""

    def __init__(self, redis: Redis, keys: Keyspace, channel: str, *, rate: float, burst: int) -> None:
        self._key = keys.key("rate", channel)
        self._script = redis.register_script(_TAKE)
        self.rate = rate
        self.burst = max(1, burst)

    async def take(self, n: int) -> None:
        """Wait until `n` tokens are granted (taken `burst` at a time, so any `n` works)."""
        while n > 0:
            want = min(n, self.burst)
            while True:
                wait_ms = int(await self._script(keys=[self._key], args=[self.rate, self.burst, want]))
                if wait_ms == 0:
                    break
                await asyncio.sleep(wait_ms / 1000)
            n -= want
