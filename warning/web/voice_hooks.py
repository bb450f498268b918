"""Voice-call webhooks: the TwiML a warning call speaks, the key the callee pressed, and call progress.

Every route first checks Twilio's signature over our public URL (403, nothing happens otherwise), then
the delivery key (400), then drops replays by Twilio's `I-Twilio-Idempotency-Token`: a replay gets the
same answer — a call waiting for instructions still needs them — but no callback runs twice.

    POST /hooks/twilio/voice/twiml?d=KEY         → the warning, slowly, repeated, press-1 (or an apology)
    POST /hooks/twilio/voice/gather?d=KEY[&r=1]  → on_digits(KEY, Digits); thanks, or ask once more
    POST /hooks/twilio/voice/status?d=KEY&n=N    → on_status(KEY, CallStatus, N, params); 204
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from warning.channels import twiml
from warning.channels.voice import HOOKS_PATH, VoiceScript, load_script
from warning.config import VoiceSettings
from warning.store import Store
from warning.web.access import public
from warning.web.signatures import signed_twilio_form, twilio_first_time

log = logging.getLogger(__name__)

VOICE_HOOKS = HOOKS_PATH
CALL_STATUSES = frozenset(
    ("queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "canceled", "failed")
)
_MAX_KEY = 512  # characters; a delivery key is a few ids joined by ':'
_MAX_ATTEMPT = 1000  # far above voice.max_attempts


@dataclass(frozen=True)
class VoiceCallbacks:
    """What the service does with what callees do; each runs once per Twilio webhook, replays excluded."""

    on_digits: Callable[[str, str], Awaitable[None]]  # (delivery key, digits pressed)
    # (delivery key, CallStatus, attempt n, every parameter Twilio sent)
    on_status: Callable[[str, str, int, Mapping[str, str]], Awaitable[None]]


def _delivery_key(request: web.Request) -> str:
    """The `d` query parameter if it looks like `{alert}:{version}:{channel}:{recipient}`.

    Raises:
        web.HTTPBadRequest: it does not.
    """
    key = request.query.get("d", "")
    parts = key.split(":", 3)
    if len(key) > _MAX_KEY or len(parts) != 4 or not parts[1].isdigit() or not all(parts):
        raise web.HTTPBadRequest(text="unknown delivery")
    return key


def _attempt_number(text: str) -> bool:
    """Whether `text` is a call attempt number as the voice channel writes it (1, 2, …)."""
    return 0 < len(text) <= 4 and text.isascii() and text.isdigit() and 1 <= int(text) <= _MAX_ATTEMPT


def _twiml(document: str) -> web.Response:
    return web.Response(text=document, content_type="text/xml")


def voice_routes(
    public_url: str,
    auth_token: web.AppKey[str],
    store: web.AppKey[Store],
    callbacks: web.AppKey[VoiceCallbacks],
    voice: VoiceSettings,
) -> list[web.RouteDef]:
    """The voice webhooks, to be served at `public_url` (the URL Twilio calls, which it signs)."""
    base = public_url.rstrip("/")

    async def verified(request: web.Request) -> tuple[str, dict[str, str]]:
        """(delivery key, form parameters) of a request Twilio signed.

        Raises:
            web.HTTPForbidden: the signature does not match our public URL and these parameters.
            web.HTTPBadRequest: the delivery key is malformed.
        """
        params = await signed_twilio_form(request, public_url, request.app[auth_token])
        return _delivery_key(request), params

    async def fresh(request: web.Request) -> bool:
        """False for a webhook Twilio already delivered (same idempotency token)."""
        opened = request.app[store]
        return await twilio_first_time(request, opened.redis, opened.keys)

    def gather_url(key: str, *, again: bool = False) -> str:
        return f"{base}{VOICE_HOOKS}/gather?d={quote(key, safe='')}" + ("&r=1" if again else "")

    def ask(key: str, script: VoiceScript, *, repeat: int, again: bool = False) -> str:
        if not script.prompt:  # nothing to confirm (an all-clear): say it and hang up
            return twiml.say_only(script.text, language=script.language, voice=voice.voice, repeat=repeat)
        return twiml.say_and_gather(
            script.text,
            language=script.language,
            voice=voice.voice,
            repeat=repeat,
            action_url=gather_url(key, again=again),
            prompt=script.prompt,
        )

    @public
    async def call_twiml(request: web.Request) -> web.Response:
        """What an answered call says: the stored warning, or an apology when it is gone."""
        key, _ = await verified(request)
        await fresh(request)  # recorded so a later replay is known; the answer is the same either way
        script = await load_script(request.app[store], key)
        if script is None:
            log.info("voice call for a warning no longer stored", extra={"delivery": key})
            return _twiml(twiml.unavailable(voice.language, voice.voice))
        return _twiml(ask(key, script, repeat=voice.repeat))

    @public
    async def gathered(request: web.Request) -> web.Response:
        """The key pressed: reported once; "1" is thanked, anything else is asked again once, then goodbye."""
        key, params = await verified(request)
        digits = params.get("Digits", "")
        if await fresh(request):
            await request.app[callbacks].on_digits(key, digits)
        if digits == "1":
            return _twiml(twiml.thanks(voice.language, voice.voice))
        if request.query.get("r"):
            return _twiml(twiml.goodbye(voice.language, voice.voice))
        script = await load_script(request.app[store], key)
        if script is None:
            return _twiml(twiml.unavailable(voice.language, voice.voice))
        return _twiml(ask(key, script, repeat=1, again=True))

    @public
    async def status(request: web.Request) -> web.Response:
        """Call progress (initiated, ringing, in-progress, completed, busy, no-answer, failed…): reported once."""
        key, params = await verified(request)
        attempt, call_status = request.query.get("n", ""), params.get("CallStatus", "")
        if not _attempt_number(attempt) or call_status not in CALL_STATUSES:
            return web.Response(status=400, text="unknown attempt or call status")
        if await fresh(request):
            await request.app[callbacks].on_status(key, call_status, int(attempt), params)
        return web.Response(status=204)

    return [
        web.post(f"{VOICE_HOOKS}/twiml", call_twiml),
        web.post(f"{VOICE_HOOKS}/gather", gathered),
        web.post(f"{VOICE_HOOKS}/status", status),
    ]
