"""API users and their bearer tokens; only a token's SHA-256 is stored, the token is shown once."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from warning.errors import UsageError
from warning.i18n import t
from warning.store import Keyspace


class UserRole(enum.StrEnum):
    VIEWER = "viewer"  # reads alerts and reach
    OPERATOR = "operator"  # issues and cancels
    APPROVER = "approver"  # approves high levels (two-person rule)
    ADMIN = "admin"  # everything, including users


# What each role may do, by action name; an admin may do all of them.
PERMISSIONS: dict[UserRole, frozenset[str]] = {
    UserRole.VIEWER: frozenset({"read"}),
    UserRole.OPERATOR: frozenset({"read", "issue", "cancel"}),
    UserRole.APPROVER: frozenset({"read", "issue", "cancel", "approve"}),
    UserRole.ADMIN: frozenset({"read", "issue", "cancel", "approve", "admin"}),
}


@dataclass(frozen=True)
class User:
    name: str
    role: UserRole

    def may(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]


@dataclass(frozen=True)
class Token:
    """A stored token as an operator may see it: a short prefix of its hash, never the token."""

    ref: str
    user: User
    created: int | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.key = keys.key("users")

    async def add(self, name: str, role: str) -> str:
        """Create a user and return their new token (shown once, stored only as a hash).

        Raises:
            UsageError: empty name or unknown role.
        """
        if not name.strip():
            raise UsageError(t("用户名不能为空", "the user name is empty"))
        try:
            parsed = UserRole(role)
        except ValueError:
            raise UsageError(
                t(
                    "角色 {r} 无效；可用：{ok}",
                    "role {r} is invalid; use {ok}",
                    r=role,
                    ok=", ".join(r.value for r in UserRole),
                )
            ) from None
        token = "wt_" + secrets.token_urlsafe(32)
        await self.redis.hset(
            self.key,
            _digest(token),
            json.dumps(
                {"name": name.strip(), "role": parsed.value, "created": round(time.time())},
                ensure_ascii=False,
            ),
        )
        return token

    async def tokens(self) -> list[Token]:
        """Every token's user, role and creation time (never the token), by user name."""
        found = []
        for digest, record in (await self.redis.hgetall(self.key)).items():
            data = json.loads(record)
            found.append(
                Token(str(digest)[:8], User(data["name"], UserRole(data["role"])), data.get("created"))
            )
        return sorted(found, key=lambda tok: (tok.user.name, tok.created or 0))

    async def revoke(self, name: str) -> int:
        """Remove every token of the user `name`; returns how many there were (0: no such user)."""
        digests = [
            str(digest)
            for digest, record in (await self.redis.hgetall(self.key)).items()
            if json.loads(record)["name"] == name.strip()
        ]
        if digests:
            await self.redis.hdel(self.key, *digests)
        return len(digests)

    async def authenticate(self, token: str) -> User | None:
        raw = await self.redis.hget(self.key, _digest(token))
        if raw is None:
            return None
        data = json.loads(raw)
        return User(data["name"], UserRole(data["role"]))

    async def count(self) -> int:
        return int(await self.redis.hlen(self.key))
