"""Replay guards: a provider's idempotency token or nonce is remembered for REPLAY_WINDOW seconds, so a
webhook delivered twice is applied once.

seen:{kind}:{ident}   STRING "1", expires after REPLAY_WINDOW
"""

from __future__ import annotations

from redis.asyncio import Redis

from warning.store import Keyspace

REPLAY_WINDOW = 86400  # seconds a provider's idempotency token or nonce is remembered


def seen_key(keys: Keyspace, kind: str, ident: str) -> str:
    """The key marking (`kind`, `ident`) as seen; "" when there is no ident (nothing to guard)."""
    return keys.key("seen", kind, ident) if ident else ""


async def first_time(redis: Redis, keys: Keyspace, kind: str, ident: str, ttl: int = REPLAY_WINDOW) -> bool:
    """True the first time (`kind`, `ident`) is seen within `ttl` seconds; replays get False."""
    key = seen_key(keys, kind, ident)
    if not key:
        return True
    return bool(await redis.set(key, "1", nx=True, ex=ttl))
