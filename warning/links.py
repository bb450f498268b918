"""Signed links for people without an account: a cadre's task page and a resident's confirm page.

A token is `base64url(claims).base64url(hmac-sha256(claims))`; the claims bind it to one purpose
(`c` cadre, `r` resident), one alert, one person and an expiry (the alert's). Nothing about the
person is readable beyond their id. The key is `server.secret`, or — when that is unset — a random
key made once and kept in Redis so every process of the deployment signs and checks alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from warning.store import Keyspace

CADRE = "c"
RESIDENT = "r"
_DEFAULT_LIFETIME = 2 * 86400.0  # links of an alert without `expires` last two days


class LinkError(Exception):
    """A token that is malformed or forged (`expired` is False) or past its expiry (`expired` True)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class Claims:
    purpose: str  # CADRE or RESIDENT
    alert_id: str
    subject: str  # contact id (cadre) or resident id
    expires: float  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_expiry(sent: datetime, expires: datetime | None) -> float:
    """When an alert's links stop working: at its `expires`, or two days after it was sent."""
    return expires.timestamp() if expires is not None else sent.timestamp() + _DEFAULT_LIFETIME


class Links:
    """Makes and checks signed tokens and the public URLs that carry them."""

    def __init__(
        self, redis: Redis, keys: Keyspace, *, secret: str, base_url: str, openable: bool = True
    ) -> None:
        """`openable`: whether phones can open `base_url` (public_url.public_url_problem); when not,
        links stay out of an Actual alert's messages but are still made for operators to print."""
        self._redis = redis
        self._name = keys.key("links", "key")
        self._key: bytes | None = secret.encode() if secret else None
        if self._key is not None and len(self._key) < 16:
            raise ValueError("server.secret must have at least 16 characters")
        self.base_url = base_url.rstrip("/")
        self.openable = openable

    async def ready(self) -> Links:
        """Load the signing key (`server.secret`, or the deployment's random key from Redis, made on
        first use); after this the synchronous `sign` works too."""
        if self._key is None:
            await self._redis.set(self._name, secrets.token_hex(32), nx=True)
            self._key = str(await self._redis.get(self._name)).encode()
        return self

    def sign(self, purpose: str, alert_id: str, subject: str, expires: float) -> str:
        """A token, synchronously (for channels building links per message); needs `ready()` first."""
        body = json.dumps([purpose, alert_id, subject, int(expires)], separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def url(self, purpose: str, alert_id: str, subject: str, expires: float) -> str:
        """The public page URL carrying a token (`/c/…` for cadres, `/r/…` for residents); needs `ready()`."""
        return f"{self.base_url}/{purpose}/{self.sign(purpose, alert_id, subject, expires)}"

    def in_messages(self, exercise: bool) -> bool:
        """Whether links may go into an alert's messages: always in a drill (drills on one machine open
        them locally), otherwise only when phones can open them — a dead link wastes a cadre's time."""
        return exercise or self.openable

    def message_url(
        self, purpose: str, alert_id: str, subject: str, expires: float, *, exercise: bool
    ) -> str:
        """`url(…)` for a message, or "" when links stay out of this alert's messages; needs `ready()`."""
        return self.url(purpose, alert_id, subject, expires) if self.in_messages(exercise) else ""

    async def token(self, purpose: str, alert_id: str, subject: str, expires: float) -> str:
        await self.ready()
        return self.sign(purpose, alert_id, subject, expires)

    async def cadre_url(self, alert_id: str, contact_id: str, expires: float) -> str:
        await self.ready()
        return self.url(CADRE, alert_id, contact_id, expires)

    async def resident_url(self, alert_id: str, resident_id: str, expires: float) -> str:
        await self.ready()
        return self.url(RESIDENT, alert_id, resident_id, expires)

    async def verify(self, token: str, purpose: str, now: float | None = None) -> Claims:
        """The token's claims if it is ours, for `purpose`, and not expired.

        Raises:
            LinkError: malformed, forged or for another purpose (`expired` False), or expired (`expired` True).
        """
        body_text, _, mac_text = token.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            raise LinkError("malformed link") from None
        await self.ready()
        if not hmac.compare_digest(mac, self._mac(body)):
            raise LinkError("bad link signature")
        try:
            kind, alert_id, subject, expires = json.loads(body)
        except (ValueError, TypeError):
            raise LinkError("malformed link") from None
        if kind != purpose or not isinstance(alert_id, str) or not isinstance(subject, str):
            raise LinkError("link for another purpose")
        if (time.time() if now is None else now) >= float(expires):
            raise LinkError("link expired", expired=True)
        return Claims(kind, alert_id, subject, float(expires))

    def _mac(self, body: bytes) -> bytes:
        if self._key is None:
            raise RuntimeError("Links.ready() was not awaited")
        return hmac.new(self._key, body, hashlib.sha256).digest()[:18]


def hash_token(token: str) -> str:
    """A short, non-reversible label of a token for audit logs (tokens are credentials)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]
