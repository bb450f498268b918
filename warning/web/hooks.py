"""Provider webhooks: Twilio status callbacks, verified with Twilio's signature before anything changes."""

from __future__ import annotations

import logging
from aiohttp import web

from warning.deliveries import Deliveries
from warning.web.signatures import twilio_valid

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


def hook_routes(
    public_url: str, auth_token: web.AppKey[str], deliveries: web.AppKey[Deliveries]
) -> list[web.RouteDef]:
    async def twilio_status(request: web.Request) -> web.Response:
        """A delivery receipt: 403 and no change unless the X-Twilio-Signature matches our public URL."""
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        if not twilio_valid(public_url, request, params, request.app[auth_token]):
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
