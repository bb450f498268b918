"""The voice channel: a Twilio call per person that says the warning slowly and asks for press-1.

`deliver` first stores what the call must say (`VoiceScript`, in Redis until the alert expires), then
creates the call through Twilio's Calls API with two webhooks keyed by the delivery: the TwiML URL
(`…/twiml?d=KEY`, answered by `warning.web.voice_hooks` from the stored script) and the status
callback (`…/status?d=KEY&n=ATTEMPT`). Storing the script instead of putting the text in the URL keeps
warnings out of provider logs and lets an expired warning answer with an apology instead of a stale
message. Errors are translated exactly as for SMS (`twilio_http`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from redis.exceptions import RedisError

from warning.channels import twiml
from warning.channels.base import Capability, ChannelLimits, Message
from warning.channels.twilio_http import TwilioApi, TwilioChannel
from warning.config import TwilioSettings, VoiceSettings
from warning.errors import TransientDeliveryError
from warning.i18n import t
from warning.store import Store

log = logging.getLogger(__name__)

HOOKS_PATH = "/hooks/twilio/voice"  # where web/voice_hooks.py serves the TwiML, gather and status hooks
MAX_SPOKEN = 4096  # characters Twilio speaks in one <Say>
SCRIPT_TTL = 86400  # seconds a script is kept for a warning that never expires
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")


def voice_text_key(store: Store, delivery_key: str) -> str:
    """The Redis key of the script a call for this delivery says."""
    return store.keys.key("voice", "text", delivery_key)


@dataclass(frozen=True, slots=True)
class VoiceScript:
    """What a warning call says: the warning text, in a `<Say>` language, and the press-1 prompt."""

    text: str
    language: str
    prompt: str


async def load_script(store: Store, delivery_key: str) -> VoiceScript | None:
    """The script stored for this delivery; None when there is none (expired, unknown) or it is unreadable."""
    raw = await store.redis.get(voice_text_key(store, delivery_key))
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
        return VoiceScript(str(fields["text"]), str(fields["language"]), str(fields["prompt"]))
    except (ValueError, TypeError, KeyError):
        log.error("unreadable voice script", extra={"delivery": delivery_key})
        return None


def _ttl(expires: datetime | None) -> int:
    """Whole seconds until `expires` (at least 1), or a day when the warning never expires."""
    if expires is None:
        return SCRIPT_TTL
    return max(1, math.ceil((expires - datetime.now(UTC)).total_seconds()))


class VoiceChannel(TwilioChannel):
    """Voice calls through Twilio; one `deliver` is one stored script and one `calls.create_async` call."""

    name = "voice"
    capabilities = (
        Capability.TEXT | Capability.VOICE | Capability.RECEIPTS | Capability.REPLIES
    )  # text, spoken

    def __init__(self, twilio: TwilioSettings, voice: VoiceSettings, *, store: Store, hooks_url: str) -> None:
        """`hooks_url` is where `voice_hooks` is served publicly, e.g. `https://host/hooks/twilio/voice`."""
        self.limits = ChannelLimits(max_in_flight=voice.max_in_flight, max_text=MAX_SPOKEN)
        self._twilio = twilio
        self._voice = voice
        self._store = store
        self._hooks_url = hooks_url.rstrip("/")
        # One connection per call in flight: a create is the whole of a call's HTTP work here.
        self._api = TwilioApi(
            twilio,
            channel="voice",
            log=log,
            not_configured=lambda keys: t(
                "语音通道缺少配置：{keys}", "voice channel: {keys} not configured", keys=keys
            ),
            connector_limit=voice.max_in_flight,
            timeout=voice.timeout,
        )

    async def _store_script(self, message: Message) -> None:
        # An all-clear (action "clear", fanout.ALL_CLEAR_ACTION) asks for no key: there is nothing to confirm.
        prompt = "" if message.action == "clear" else twiml.prompt(self._voice.language)
        script = VoiceScript(message.text, self._voice.language, prompt)
        try:
            await self._store.redis.set(
                voice_text_key(self._store, message.key),
                json.dumps(asdict(script), ensure_ascii=False),
                ex=_ttl(message.expires),
            )
        except RedisError as exc:
            # Without its script the call could only apologise: do not place it yet.
            raise TransientDeliveryError(f"voice script not stored ({type(exc).__name__})") from exc

    async def deliver(self, message: Message) -> str:
        """Store the call's script, then create the call at Twilio; return its sid (CA…).

        Raises:
            TransientDeliveryError: Redis or Twilio failed in a way worth retrying (429, 5xx, unreachable).
            PermanentDeliveryError: Twilio refused this call (invalid number, …).
            AmbiguousDeliveryError: the request was written but no answer came back.
        """
        await self._store_script(message)
        key = quote(message.key, safe="")
        call = await self._api.request(
            message,
            lambda client: client.calls.create_async(
                to=message.address,
                from_=self._twilio.from_number,
                url=f"{self._hooks_url}/twiml?d={key}",
                method="POST",
                status_callback=f"{self._hooks_url}/status?d={key}&n={message.attempt}",
                status_callback_event=list(STATUS_EVENTS),
                status_callback_method="POST",
                timeout=self._voice.ring_timeout,
            ),
        )
        return str(call.sid)
