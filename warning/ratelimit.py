"""A token bucket per channel in Redis, shared by every worker on every host (Redis's clock decides)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from warning.store import Keyspace

# A token bucket in a Redis hash, on Redis's clock: `take_tokens(key, rate, burst, want)` takes `want`
# tokens and returns 0, or takes nothing and returns the milliseconds until enough will have accrued.
# Shared by every Lua script that meters something (the channels' send rate, the link pages' clients).
LUA_BUCKET = """
local function take_tokens(key, rate, burst, want)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  local tokens = tonumber(redis.call('HGET', key, 'tokens') or burst)
  local last = tonumber(redis.call('HGET', key, 'ts') or now)
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
  local wait = 0
  if tokens >= want then
    tokens = tokens - want
  else
    wait = math.ceil((want - tokens) / rate * 1000)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 60000)
  return wait
end
"""

# KEYS: bucket. ARGV: rate per second, burst, tokens wanted → 0 granted, else milliseconds to wait.
_TAKE = LUA_BUCKET + "return take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))"


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
