"""Webhook signatures and replay guards: Twilio's `X-Twilio-Signature` and WeChat's sha1 signature.

Every provider webhook calls one of these before anything changes; a request that fails gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from aiohttp import web
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from warning.store import Keyspace
from warning.web.bodies import read_form

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
REPLAY_WINDOW = 86400  # seconds a provider's idempotency token or nonce is remembered


def signed_urls(public_url: str, request: web.Request) -> list[str]:
    """The forms our public URL for this request may have been signed in.

    Twilio signs the callback URL exactly as we gave it; HTTP clients on the way may re-encode the
    query (`%3A` ↔ `:`), so the raw form, the decoded form and the fully quoted form are all tried.
    They name the same resource, so accepting any of them admits nothing new.
    """
    base = public_url.rstrip("/")
    quoted = request.path + (
        "?" + urlencode(list(request.query.items()), quote_via=quote) if request.query else ""
    )
    return list(dict.fromkeys((base + request.raw_path, base + request.path_qs, base + quoted)))


def twilio_valid(public_url: str, request: web.Request, params: Mapping[str, str], auth_token: str) -> bool:
    """Whether the request carries Twilio's signature over our public URL and these form parameters."""
    validator = RequestValidator(auth_token)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not auth_token:
        return False
    return any(validator.validate(url, dict(params), signature) for url in signed_urls(public_url, request))


async def signed_twilio_form(request: web.Request, public_url: str, auth_token: str) -> dict[str, str]:
    """The form parameters of a request Twilio signed for our public URL.

    Raises:
        web.HTTPBadRequest, web.HTTPUnsupportedMediaType, web.HTTPRequestEntityTooLarge: the body is not
            a UTF-8 form (there is nothing to check a signature over).
        web.HTTPForbidden: the signature does not match (nothing may change).
    """
    params = await read_form(request)
    if not twilio_valid(public_url, request, params, auth_token):
        log.warning("twilio webhook with a bad signature refused", extra={"path": request.path})
        raise web.HTTPForbidden(text="invalid signature")
    return params


async def twilio_first_time(request: web.Request, redis: Redis, keys: Keyspace) -> bool:
    """False for a webhook Twilio already delivered (same `I-Twilio-Idempotency-Token`)."""
    return await first_time(redis, keys, "twilio", request.headers.get(IDEMPOTENCY_HEADER, ""))


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's signature: sha1 of token, timestamp and nonce, sorted and joined (hex)."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()  # noqa: S324 (WeChat's scheme)


def wechat_valid(
    token: str, timestamp: str, nonce: str, signature: str, *, now: float, max_skew: float
) -> bool:
    """Whether WeChat signed these parameters with our token, and the timestamp is fresh."""
    if not token or not timestamp.isdigit() or not nonce:
        return False
    if abs(now - int(timestamp)) > max_skew:
        return False
    return hmac.compare_digest(wechat_signature(token, timestamp, nonce), signature.lower())


async def first_time(redis: Redis, keys: Keyspace, kind: str, ident: str, ttl: int = REPLAY_WINDOW) -> bool:
    """True the first time (`kind`, `ident`) is seen within `ttl` seconds; replays get False."""
    if not ident:
        return True
    return bool(await redis.set(keys.key("seen", kind, ident), "1", nx=True, ex=ttl))
