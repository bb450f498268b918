"""The SMS channel: Twilio's Messages API through the twilio library's async client.

The client, its HTTP session and the translation of Twilio's answers into our delivery errors are
shared with the voice channel (`twilio_http.TwilioApi`); what is SMS's own is the message itself: its
body, a `ValidityPeriod` that ends with the alert, and a status callback keyed by the delivery.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from warning.channels.base import NOT_FOUND, UNKNOWN, Capability, ChannelLimits, Found, Message
from warning.channels.twilio_http import TwilioApi, TwilioChannel
from warning.config import SmsSettings, TwilioSettings
from warning.i18n import t

log = logging.getLogger(__name__)

MAX_BODY = 1600  # characters Twilio accepts in one concatenated message
MIN_VALIDITY, MAX_VALIDITY = 1, 36000  # seconds Twilio accepts as ValidityPeriod
LOOKUP_DEPTH = 20  # most recent messages to a number searched when reconciling an ambiguous send
CLOCK_SKEW = timedelta(minutes=2)  # Twilio's clock against ours


def _validity_period(expires: datetime | None) -> int | None:
    """Whole seconds until `expires`, clamped to what Twilio accepts; None (omit) when it never expires."""
    if expires is None:
        return None
    remaining = math.floor((expires - datetime.now(UTC)).total_seconds())
    return min(MAX_VALIDITY, max(MIN_VALIDITY, remaining))


class SmsChannel(TwilioChannel):
    """SMS through Twilio; one `deliver` is one `messages.create_async` call."""

    name = "sms"
    capabilities = Capability.TEXT | Capability.RECEIPTS

    def __init__(self, twilio: TwilioSettings, sms: SmsSettings, *, status_callback_url: str) -> None:
        self.limits = ChannelLimits(max_in_flight=sms.max_in_flight, max_text=MAX_BODY)
        self._twilio = twilio
        self._status_callback_url = status_callback_url
        self._api = TwilioApi(
            twilio,
            channel="sms",
            log=log,
            not_configured=lambda keys: t(
                "短信通道缺少配置：{keys}", "SMS channel: {keys} not configured", keys=keys
            ),
            connector_limit=sms.connector_limit,
            timeout=sms.timeout,
        )

    def _status_callback(self, key: str) -> str:
        joiner = "&" if "?" in self._status_callback_url else "?"
        return f"{self._status_callback_url}{joiner}d={quote(key, safe='')}"

    async def deliver(self, message: Message) -> str:
        """Create the message at Twilio; return its sid (SM…).

        Raises:
            TransientDeliveryError: 429, 5xx, rejected credentials, or the request never left.
            PermanentDeliveryError: Twilio refused this message (invalid number, unsubscribed, …).
            AmbiguousDeliveryError: the request was written but no answer came back.
        """
        fields: dict[str, Any] = {
            "to": message.address,
            "from_": self._twilio.from_number,
            "body": message.text,
            "status_callback": self._status_callback(message.key),
        }
        validity = _validity_period(message.expires)
        if validity is not None:
            fields["validity_period"] = validity
        created = await self._api.request(message, lambda client: client.messages.create_async(**fields))
        return str(created.sid)

    async def lookup(self, message: Message, since: datetime) -> Found:
        """Find the message in Twilio's Message list (newest first, filtered by To and From): the one with
        this body created at or after `since` (less `CLOCK_SKEW`). Returns its sid, or NOT_FOUND.

        UNKNOWN when the endpoint has no Message list (a Twilio-compatible gateway without it).

        Raises:
            TransientDeliveryError: Twilio cannot be asked now (it times out, is down, or refuses).
        """
        earliest = since - CLOCK_SKEW

        async def recent(client: Any) -> list[Any]:
            return list(
                await client.messages.list_async(
                    to=message.address, from_=self._twilio.from_number, limit=LOOKUP_DEPTH
                )
            )

        listed = await self._api.lookup(message, recent)
        if listed is None:
            return UNKNOWN
        for item in listed:
            created = item.date_created
            # `to` checked too: a gateway may ignore the filter and list everyone's (same) warning.
            if (
                item.to == message.address
                and item.body == message.text
                and (created is None or created >= earliest)
            ):
                return str(item.sid)
        return NOT_FOUND
