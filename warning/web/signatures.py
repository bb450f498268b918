"""Webhook signatures and replay guards: Twilio's `X-Twilio-Signature` and WeChat's sha1 signature.

Every provider webhook calls one of these before anything changes; a request that fails gets 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from aiohttp import web
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from warning.replay import first_time, seen_key
from warning.store import Keyspace
from warning.web.bodies import read_form

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


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


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's X-Twilio-Signature of a form POST: base64 HMAC-SHA1 over the URL followed by every
    parameter name and value, sorted by name (twilio.request_validator.compute_signature for a form
    with one value per name)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_valid(public_url: str, request: web.Request, params: Mapping[str, str], auth_token: str) -> bool:
    """Whether the request carries Twilio's signature over our public URL and these form parameters.

    The URL exactly as Twilio was given it (`public_url` + the raw path) is checked first, with one
    HMAC: that is what every genuine callback carries. Only when it does not match are the other forms
    tried through the twilio library's own validator (re-encoded queries, the URL with and without its
    port), so a valid callback costs one HMAC and no encoding (it cost up to six, and the query
    encoded each time: a third of a callback's CPU)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not auth_token:
        return False
    exact = public_url.rstrip("/") + request.raw_path
    if hmac.compare_digest(twilio_signature(auth_token, exact, params).encode(), signature.encode()):
        return True
    validator = RequestValidator(auth_token)
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


def twilio_seen_key(request: web.Request, keys: Keyspace) -> str:
    """The replay-guard key of this Twilio webhook ("" without an idempotency token)."""
    return seen_key(keys, "twilio", request.headers.get(IDEMPOTENCY_HEADER, ""))


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
