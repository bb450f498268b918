"""Provider webhooks: Twilio SMS status callbacks and inbound SMS, and WeChat events.

Every route checks the provider's signature before anything changes (403 otherwise) and drops
replays (Twilio's `I-Twilio-Idempotency-Token`, WeChat's nonce) so each callback counts once; the
ledgers' forward-only moves make reordering harmless. Voice call hooks live in voice_hooks.py.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

# No stubs ship for defusedxml; the ignore tolerates them being installed later.
from defusedxml import ElementTree  # type: ignore[import-untyped,unused-ignore]
from defusedxml.common import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]

from warning.config import WechatSettings
from warning.evidence import Evidence
from warning.i18n import t
from warning.replay import first_time
from warning.store import Store
from warning.web.access import public
from warning.web.bodies import invalid_body
from warning.web.signatures import signed_twilio_form, twilio_first_time, twilio_seen_key, wechat_valid

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
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_MAX_EVENT = 64 * 1024


def hook_routes(
    public_url: str,
    auth_token: web.AppKey[str],
    evidence: web.AppKey[Evidence],
    store: web.AppKey[Store],
    wechat: WechatSettings,
    wechat_token: web.AppKey[str],
) -> list[web.RouteDef]:
    async def twilio_form(request: web.Request) -> dict[str, str] | None:
        """The form if Twilio signed it and it is not a replay; None after answering 403 is due."""
        params = await signed_twilio_form(request, public_url, request.app[auth_token])
        s = request.app[store]
        return params if await twilio_first_time(request, s.redis, s.keys) else None

    @public
    async def twilio_status(request: web.Request) -> web.Response:
        """An SMS delivery receipt. The replay guard is set in the same round trip as the receipt is
        applied (applying a receipt twice changes nothing), not in one of its own."""
        params = await signed_twilio_form(request, public_url, request.app[auth_token])
        code = _STATUS.get(params.get("MessageStatus", ""))
        if code is None:
            return web.Response(status=400, text="unknown status")
        # "queued"/"sent" only matter for a send the worker recorded as ambiguous: Twilio has it.
        seen = twilio_seen_key(request, request.app[store].keys)
        if not await request.app[evidence].delivery(request.query.get("d", ""), code, first_seen=seen):
            return web.Response(status=400, text="unknown delivery")
        return web.Response(status=204)

    @public
    async def twilio_sms(request: web.Request) -> web.Response:
        """An SMS to our number: a resident answering a warning (any reply shows they got it)."""
        params = await twilio_form(request)
        if params is not None:
            await request.app[evidence].sms_reply(
                params.get("From", ""), params.get("Body", ""), params.get("MessageSid", "")
            )
        return web.Response(text=_EMPTY_TWIML, content_type="text/xml")

    def wechat_signed(request: web.Request) -> bool:
        q = request.query
        return wechat_valid(
            request.app[wechat_token],
            q.get("timestamp", ""),
            q.get("nonce", ""),
            q.get("signature", ""),
            now=time.time(),
            max_skew=wechat.max_skew,
        )

    @public
    async def wechat_verify(request: web.Request) -> web.Response:
        """The Official Account backend checks the URL: echo `echostr` if the signature is ours."""
        if not wechat_signed(request):
            raise web.HTTPForbidden(text="invalid signature")
        return web.Response(text=request.query.get("echostr", ""))

    @public
    async def wechat_event(request: web.Request) -> web.Response:
        """A WeChat event: TEMPLATESENDJOBFINISH says whether a template message reached the user."""
        if not wechat_signed(request):
            log.warning("wechat event with a bad signature refused")
            raise web.HTTPForbidden(text="invalid signature")
        s = request.app[store]
        nonce = f"{request.query.get('timestamp', '')}:{request.query.get('nonce', '')}"
        if not await first_time(s.redis, s.keys, "wechat", nonce):
            return web.Response(text="success")
        body = await request.content.read(_MAX_EVENT + 1)
        if len(body) > _MAX_EVENT:
            return web.Response(status=413, text="too large")
        try:
            root = ElementTree.fromstring(body)
        except (ElementTree.ParseError, DefusedXmlException, LookupError, ValueError):
            # LookupError: an XML declaration naming an encoding Python does not know.
            raise invalid_body(t("微信事件不是有效的 XML", "the WeChat event is not valid XML")) from None
        if root.findtext("Event") == "TEMPLATESENDJOBFINISH":
            status = root.findtext("Status") or ""
            await request.app[evidence].wechat_result(root.findtext("MsgID") or "", status == "success")
        return web.Response(text="success")

    return [
        web.post("/hooks/twilio/status", twilio_status),
        web.post("/hooks/twilio/sms", twilio_sms),
        web.get("/hooks/wechat", wechat_verify),
        web.post("/hooks/wechat", wechat_event),
    ]
