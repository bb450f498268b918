"""The WeChat / WeCom access token, fetched by one process and shared by all of them through Redis.

The platforms allow one live token per app: fetching a new one invalidates the previous one a few
minutes later (the Official Account keeps both valid for about five minutes), and the OA token API
has a small daily quota. So no process keeps a token of its own. The token lives under
`{prefix}:wechat:token:{name}` with a TTL of `expires_in` minus a safety margin; a process that finds
none takes a short lock (SET NX PX) and fetches, while the others poll for the result. A fetch that
fails leaves a failure mark in the lock for a few seconds, so a misconfigured secret costs one token
request per backoff period, not one per queued message.

After the platform rejects token T (40001 / 42001 / 40014), `refresh(T)` deletes the cached token only
if it is still T (compare-and-delete in Lua): of many processes that saw T rejected, the first one
fetches and the others pick up its token.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from warning.errors import TransientDeliveryError
from warning.i18n import t
from warning.store import Keyspace

# The OA documents 7200 s tokens and a five-minute overlap after a refresh: a token is dropped from the
# cache this long before it expires, so nobody sends with a token in its last minutes.
SAFETY_MARGIN = 300.0
LOCK_TTL = 15.0  # seconds a fetcher may hold the lock; longer than a token request may take
FAILURE_BACKOFF = 5.0  # seconds nobody fetches again after a failed fetch (unless it says longer)
_POLL = 0.05  # seconds between looks while another process fetches
_FAILED = "failed:"  # lock value prefix marking a failed fetch

# Delete KEYS[1] only if it still holds ARGV[1]: a rejected token, or our own lock.
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Fetch = Callable[[], Awaitable[tuple[str, int]]]


class TokenCache:
    """One access token per `name`, cached centrally in Redis for every process on every host."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        name: str,
        fetch: Fetch,
        margin: float = SAFETY_MARGIN,
        lock_ttl: float = LOCK_TTL,
    ) -> None:
        self._redis = redis
        self._key = keys.key("wechat", "token", name)
        self._lock = keys.key("wechat", "token", name, "lock")
        self._fetch = fetch
        self._margin = margin
        self._lock_ttl = lock_ttl
        self._compare_and_delete = redis.register_script(_COMPARE_AND_DELETE)

    async def get(self) -> str:
        """The cached token, or a freshly fetched one when none is cached.

        Raises:
            TransientDeliveryError: the token could not be fetched (or Redis is unreachable).
        """
        try:
            cached = await self._redis.get(self._key)
            return str(cached) if cached else await self._fetch_shared()
        except RedisError as exc:
            raise _redis_failed(exc) from exc

    async def refresh(self, stale: str) -> str:
        """A token newer than `stale`, which the platform has just rejected.

        Raises:
            TransientDeliveryError: the token could not be fetched (or Redis is unreachable).
        """
        try:
            if not await self._compare_and_delete(keys=[self._key], args=[stale]):
                current = await self._redis.get(self._key)
                if current and current != stale:
                    return str(current)  # another process has refreshed it already
            return await self._fetch_shared()
        except RedisError as exc:
            raise _redis_failed(exc) from exc

    async def _fetch_shared(self) -> str:
        deadline = asyncio.get_running_loop().time() + self._lock_ttl + 1.0
        while True:
            owner = secrets.token_hex(8)
            if await self._redis.set(self._lock, owner, nx=True, px=int(self._lock_ttl * 1000)):
                return await self._fetch_locked(owner)
            await asyncio.sleep(_POLL)
            token, holder = await self._redis.mget(self._key, self._lock)
            if token:
                return str(token)
            if holder and str(holder).startswith(_FAILED):
                wait_ms = await self._redis.pttl(self._lock)
                raise TransientDeliveryError(
                    str(holder)[len(_FAILED) :], retry_after=max(wait_ms, 0) / 1000 or None
                )
            if asyncio.get_running_loop().time() > deadline:
                raise TransientDeliveryError(
                    t(
                        "等待其他进程获取 access_token 超时",
                        "timed out waiting for another process to fetch the access token",
                    )
                )

    async def _fetch_locked(self, owner: str) -> str:
        """Fetch and cache a token while holding the lock; on failure, leave a failure mark instead."""
        release = True
        try:
            cached = await self._redis.get(self._key)
            if cached:  # stored by another process between our look and our lock
                return str(cached)
            try:
                token, expires_in = await self._fetch()
            except TransientDeliveryError as exc:
                backoff = exc.retry_after or FAILURE_BACKOFF
                await self._redis.set(self._lock, _FAILED + str(exc), px=int(backoff * 1000))
                release = False
                raise
            await self._redis.set(self._key, token, px=self._ttl_ms(expires_in))
            return token
        finally:
            if release:
                await self._compare_and_delete(keys=[self._lock], args=[owner])

    def _ttl_ms(self, expires_in: int) -> int:
        # A short-lived token (a sandbox knob, a platform change) is kept for half its life instead.
        seconds = expires_in - self._margin if expires_in > 2 * self._margin else expires_in / 2
        return max(1, int(seconds * 1000))


def _redis_failed(exc: RedisError) -> TransientDeliveryError:
    return TransientDeliveryError(
        t(
            "无法从 Redis 读取 access_token：{e}",
            "cannot read the access token from Redis: {e}",
            e=type(exc).__name__,
        )
    )
