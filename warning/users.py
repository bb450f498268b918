"""Users: their role, their bearer tokens (only a token's SHA-256 is stored, the token is shown once) and
their dashboard password (argon2, hashed and checked off the event loop).

users               HASH token sha256 → {"name", "role", "created"} (the role is the account's at issue)
users:accounts      HASH name → {"role", "password" (argon2 hash, optional), "created"}: one role per
                    user, which every token and the password share; read on every request
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
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


@dataclass(frozen=True)
class Account:
    """A user as `warning users list` shows them: role, whether a password is set, how many tokens."""

    name: str
    role: UserRole
    has_password: bool
    tokens: int
    created: int | None


MIN_PASSWORD = 10  # characters a dashboard password has at least
_HASHER = PasswordHasher()
# Verified when the user does not exist, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> str:
    """The password if it is acceptable (one line, at least MIN_PASSWORD characters).

    Raises:
        UsageError: empty or too short.
    """
    if not password.strip():
        raise UsageError(t("密码为空", "the password is empty"))
    if len(password) < MIN_PASSWORD:
        raise UsageError(
            t(
                "密码太短：至少 {n} 个字符",
                "the password is too short: at least {n} characters",
                n=MIN_PASSWORD,
            )
        )
    return password


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


class Users:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self.key = keys.key("users")
        self.accounts_key = keys.key("users", "accounts")

    async def add(self, name: str, role: str, password: str | None = None) -> str:
        """Create a user (or give an existing one this role, and a new token) and return the new token
        (shown once, stored only as a hash); `password` (optional) becomes their dashboard password.

        Raises:
            UsageError: empty name, unknown role, or a password that is empty or too short.
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
        name = name.strip()
        hashed = (
            await asyncio.to_thread(_HASHER.hash, check_password(password)) if password is not None else None
        )
        account = await self._account(name) or {"created": round(time.time())}
        account["role"] = parsed.value
        if hashed is not None:
            account["password"] = hashed
        token = "wt_" + secrets.token_urlsafe(32)
        record = {"name": name, "role": parsed.value, "created": round(time.time())}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, _digest(token), json.dumps(record, ensure_ascii=False))
            pipe.hset(self.accounts_key, name, json.dumps(account, ensure_ascii=False))
            await pipe.execute()
        return token

    async def _account(self, name: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.accounts_key, name)
        return dict(json.loads(raw)) if raw is not None else None

    async def user(self, name: str) -> User | None:
        """The user `name` with their current role (None: no such user, e.g. revoked)."""
        account = await self._account(name)
        return User(name, UserRole(account["role"])) if account is not None else None

    async def check_login(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs; None for a wrong password, an unknown user or one without
        a password alike (and in about the same time: hashing runs in a thread either way)."""
        account = await self._account(name.strip()) if name.strip() else None
        hashed = account.get("password") if account is not None else None
        matched = await asyncio.to_thread(_verify, hashed or _DUMMY_HASH, password)
        if account is None or not hashed or not matched:
            return None
        return User(name.strip(), UserRole(account["role"]))

    async def accounts(self) -> list[Account]:
        """Every user (and users known only from their tokens), by name."""
        tokens = await self.tokens()
        raw = await self.redis.hgetall(self.accounts_key)
        found: dict[str, Account] = {}
        for name, record in raw.items():
            data = json.loads(record)
            found[str(name)] = Account(
                str(name), UserRole(data["role"]), bool(data.get("password")), 0, data.get("created")
            )
        for token in tokens:
            known = found.get(token.user.name) or Account(
                token.user.name, token.user.role, False, 0, token.created
            )
            found[known.name] = dataclasses.replace(known, tokens=known.tokens + 1)
        return [found[name] for name in sorted(found)]

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
        """Remove the user `name`: every token and the password; returns how many tokens there were
        (0 and no account: no such user). Their sessions end too (see warning.sessions): a session's
        role is read from the account on every request."""
        digests = [
            str(digest)
            for digest, record in (await self.redis.hgetall(self.key)).items()
            if json.loads(record)["name"] == name.strip()
        ]
        async with self.redis.pipeline(transaction=True) as pipe:
            if digests:
                pipe.hdel(self.key, *digests)
            pipe.hdel(self.accounts_key, name.strip())
            await pipe.execute()
        return len(digests)  # every account has a token: `add` makes one each time

    async def authenticate(self, token: str) -> User | None:
        """The token's user with the account's current role (None: unknown or revoked token)."""
        raw = await self.redis.hget(self.key, _digest(token))
        if raw is None:
            return None
        data = json.loads(raw)
        account = await self._account(data["name"])
        # A token from before accounts existed keeps the role it was made with.
        return User(data["name"], UserRole((account or data)["role"]))

    async def count(self) -> int:
        return int(await self.redis.hlen(self.key))
