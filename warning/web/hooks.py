"""Provider webhooks: Twilio status callbacks, verified with Twilio's signature before anything changes."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

from aiohttp import web
from twilio.request_validator import RequestValidator

from warning.deliveries import Deliveries

log = logging.getLogger(__name__)

# Twilio's MessageStatus → our state code. Forward-only moves make replays and reordering harmless.
_STATUS = {
    "queued": "S",
    "accepted": "S",
    "sending": "S",
    "sent": "S",
    "delivered": "D",
    "undelivered": "F",
    "failed": "F",
}


def _signed_urls(public_url: str, request: web.Request) -> list[str]:
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


def hook_routes(
    public_url: str, auth_token: web.AppKey[str], deliveries: web.AppKey[Deliveries]
) -> list[web.RouteDef]:
    async def twilio_status(request: web.Request) -> web.Response:
        """A delivery receipt: 403 and no change unless the X-Twilio-Signature matches our public URL."""
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        validator = RequestValidator(request.app[auth_token])
        signature = request.headers.get("X-Twilio-Signature", "")
        if not any(validator.validate(url, params, signature) for url in _signed_urls(public_url, request)):
            log.warning("twilio callback with a bad signature refused", extra={"path": request.path})
            return web.Response(status=403, text="invalid signature")
        key = request.query.get("d", "")
        parts = key.split(":", 3)
        code = _STATUS.get(params.get("MessageStatus", ""))
        if len(parts) != 4 or code is None or not parts[1].isdigit():
            return web.Response(status=400, text="unknown delivery or status")
        alert_id, version, ledger, recipient = parts
        await request.app[deliveries].move(alert_id, int(version), ledger, [(recipient, code)])
        return web.Response(status=204)

    return [web.post("/hooks/twilio/status", twilio_status)]
