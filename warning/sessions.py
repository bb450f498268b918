"""Console sessions and the failed-login throttle.

A session id is 32 random bytes in the cookie `warning_session`; Redis keeps only its SHA-256:

session:{sha256}           HASH user, role (at sign-in), csrf, created, seen; expires after the idle
                           timeout (renewed on use, never past the absolute lifetime)
sessions:user:{name}       SET of the user's session hashes (revoking a user ends them all)
login:fail:{kind}:{who}    counter of failed sign-ins (kind: user | ip) in the current window
login:block:{kind}:{who}   set when the counter reaches the limit; its TTL says when to retry
login:refusal:{who}:{ip}   a refused attempt was audited this minute (the rest are not)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from warning.store import Keyspace

COOKIE = "warning_session"
LOGIN_FAILURES = 5  # failed sign-ins for one user name …
# … or for one client address: higher, because a whole duty room often shares one address (NAT), and
# one person's typos must not lock every operator out at 2 a.m.; still far below what guessing needs.
LOGIN_FAILURES_PER_ADDRESS = 30
LOGIN_WINDOW = 15 * 60  # … within this many seconds block it for LOGIN_BLOCK seconds
LOGIN_BLOCK = 15 * 60
_SEEN_EVERY = 30.0  # "last seen" is written at most this often per session (not on every request)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    role: str  # the role at sign-in; the request's role is re-read from the account
    csrf: str
    created: float
    seen: float


class Sessions:
    """Creates, resolves and ends console sessions."""

    def __init__(
        self, redis: Redis, keys: Keyspace, *, idle: float = 7200.0, lifetime: float = 43200.0
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.idle = idle
        self.lifetime = lifetime

    def _key(self, digest: str) -> str:
        return self.keys.key("session", digest)

    def _user_key(self, name: str) -> str:
        return self.keys.key("sessions", "user", name)

    async def create(self, user: str, role: str) -> tuple[str, Session]:
        """A new session for `user`: (the id for the cookie, the session with its CSRF token)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(user, role, secrets.token_urlsafe(32), now, now)
        digest = _digest(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._key(digest),
                mapping={"user": user, "role": role, "csrf": session.csrf, "created": now, "seen": now},
            )
            pipe.expire(self._key(digest), int(min(self.idle, self.lifetime)) + 1)
            pipe.sadd(self._user_key(user), digest)
            pipe.expire(self._user_key(user), int(self.lifetime) + 60)
            await pipe.execute()
        return session_id, session

    async def resolve(self, session_id: str, now: float | None = None) -> Session | None:
        """The live session with this id, its idle timer renewed; None if unknown, idle or too old."""
        if not session_id or len(session_id) > 128:
            return None
        now = time.time() if now is None else now
        key = self._key(_digest(session_id))
        raw = {str(k): str(v) for k, v in (await self.redis.hgetall(key)).items()}
        if not raw:
            return None
        session = Session(raw["user"], raw["role"], raw["csrf"], float(raw["created"]), float(raw["seen"]))
        if now - session.seen >= self.idle or now - session.created >= self.lifetime:
            await self.end(session_id)
            return None
        if now - session.seen >= _SEEN_EVERY:
            remaining = min(self.idle, session.created + self.lifetime - now)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "seen", now)
                pipe.expire(key, max(1, int(remaining) + 1))
                await pipe.execute()
        return session

    async def end(self, session_id: str) -> str | None:
        """End the session; returns its user's name (None: there was no such session)."""
        digest = _digest(session_id)
        user = await self.redis.hget(self._key(digest), "user")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(digest))
            if user is not None:
                pipe.srem(self._user_key(str(user)), digest)
            await pipe.execute()
        return str(user) if user is not None else None

    async def end_user(self, name: str) -> int:
        """End every session of the user `name`; returns how many were live."""
        digests = [str(d) for d in await self.redis.smembers(self._user_key(name))]
        if not digests:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for digest in digests:
                pipe.delete(self._key(digest))
            pipe.delete(self._user_key(name))
            ended = await pipe.execute()
        return sum(int(n) for n in ended[: len(digests)])


class LoginThrottle:
    """After LOGIN_FAILURES failed sign-ins within LOGIN_WINDOW for one user name (or
    LOGIN_FAILURES_PER_ADDRESS from one client address), that name (or address) is refused for
    LOGIN_BLOCK seconds."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    def _keys(self, kind: str, who: str) -> tuple[str, str]:
        who = who.strip().lower()[:200] or "-"
        return self.keys.key("login", "fail", kind, who), self.keys.key("login", "block", kind, who)

    async def blocked_for(self, user: str, ip: str) -> int:
        """Seconds until `user` from `ip` may try again (0: they may now)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.ttl(self._keys("user", user)[1])
            pipe.ttl(self._keys("ip", ip)[1])
            ttls = await pipe.execute()
        return max(0, *(int(t) for t in ttls))

    async def failed(self, user: str, ip: str) -> int:
        """Count a failed sign-in; returns the seconds of the block it started (0: none yet)."""
        started = 0
        for kind, who in (("user", user), ("ip", ip)):
            count_key, block_key = self._keys(kind, who)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(count_key, 0, ex=LOGIN_WINDOW, nx=True)  # the window opens at the first failure
                pipe.incr(count_key)
                _, count = await pipe.execute()
            if int(count) >= (LOGIN_FAILURES if kind == "user" else LOGIN_FAILURES_PER_ADDRESS):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(block_key, "1", ex=LOGIN_BLOCK)
                    pipe.delete(count_key)
                    await pipe.execute()
                started = LOGIN_BLOCK
        return started

    async def report_refusal(self, user: str, ip: str) -> bool:
        """Whether to audit this refused (blocked) attempt: once a minute per name and address at most,
        so a guesser hammering a blocked name cannot flood the audit log."""
        key = self.keys.key("login", "refusal", user.strip().lower()[:200] or "-", ip or "-")
        return bool(await self.redis.set(key, "1", ex=60, nx=True))

    async def succeeded(self, user: str) -> None:
        """A good sign-in clears the name's count (not the address's: one address may try many names)."""
        await self.redis.delete(self._keys("user", user)[0])
