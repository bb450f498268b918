"""The Twilio sandbox's resources: message records, their Twilio-shaped JSON, error bodies, form checks.

Shapes follow Twilio's REST API 2010-04-01: a Message resource has string `num_segments`/`num_media`,
RFC 2822 dates and `null` price until billed; an error body is
`{"code", "message", "more_info": "https://www.twilio.com/docs/errors/NNNNN", "status"}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

API_VERSION = "2010-04-01"
MAX_BODY = 1600  # characters Twilio accepts in one (concatenated) message body
MAX_VALIDITY = 36000  # seconds; ValidityPeriod must be 1..36000

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")

# The GSM 03.38 alphabet: a body made only of these travels as 7-bit text (160 per segment, 153 when
# split); the extension characters cost two septets; anything else makes the body UCS-2 (70, or 67).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


class ApiError(Exception):
    """A Twilio API error answer: HTTP status, Twilio error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def segments(body: str) -> int:
    """How many SMS segments Twilio bills for `body` (GSM-7 160/153, UCS-2 70/67 per segment)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        units = sum(2 if c in _GSM_EXTENSION else 1 for c in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def rfc2822(when: datetime | None) -> str | None:
    return format_datetime(when) if when else None


@dataclass(slots=True)
class SandboxMessage:
    """One message the sandbox accepted, and what has happened to it since."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    created: datetime
    received: datetime | None = None  # when the create request arrived (before any sandbox latency)
    status: str = "queued"
    status_callback: str = ""
    validity_period: int | None = None
    messaging_service_sid: str = ""
    error_code: int | None = None
    updated: datetime | None = None
    sent: datetime | None = None
    attempts: int = 1  # create requests seen for this To and Body, this one included (client retries)
    callback_attempts: int = 0  # status callback POSTs made, retries included
    callbacks_dropped: int = 0

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_twilio(self) -> dict[str, Any]:
        """The Message resource as Twilio's API returns it."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.sent),
            "date_updated": rfc2822(self.updated or self.created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid or None,
            "num_media": "0",
            "num_segments": str(segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": self.uri.removesuffix(".json") + "/Media.json",
                "feedback": self.uri.removesuffix(".json") + "/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri,
        }

    def to_json(self) -> dict[str, Any]:
        """The inspection view (`GET /_sandbox/messages`): the resource plus the sandbox's counters."""
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "created": self.created.isoformat(),
            "received": (self.received or self.created).isoformat(),
            "validity_period": self.validity_period,
            "status_callback": self.status_callback,
            "num_segments": segments(self.body),
            "attempts": self.attempts,
            "callback_attempts": self.callback_attempts,
            "callbacks_dropped": self.callbacks_dropped,
        }


@dataclass(frozen=True, slots=True)
class Directory:
    """What the sandbox account knows about numbers: its senders and the recipients it refuses."""

    from_numbers: frozenset[str]
    unsubscribed: frozenset[str]  # 21610: the recipient replied STOP
    not_mobile: frozenset[str]  # 21614: a landline or otherwise not SMS-capable
    invalid: frozenset[str]  # 21211 although well-formed (Twilio's magic test number +15005550001)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A checked `POST …/Messages.json` form."""

    to: str
    from_: str
    body: str
    status_callback: str
    validity_period: int | None
    messaging_service_sid: str


def check_create(form: Mapping[str, str], directory: Directory) -> CreateRequest:
    """Check a Messages create form the way Twilio does.

    Raises:
        ApiError: the error Twilio would answer (21604, 21211, 21603, 21212, 21606, 21701, 21602, 21617,
            21624, 21609, 21610, 21614).
    """
    to = form.get("To", "").strip()
    sender = form.get("From", "").strip()
    service = form.get("MessagingServiceSid", "").strip()
    body = form.get("Body", "")
    if not to:
        raise ApiError(400, 21604, "A 'To' phone number is required.")
    if not _E164.match(to) or to in directory.invalid:
        raise ApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not sender and not service:
        raise ApiError(
            400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"
        )
    if sender and not (_E164.match(sender) or _ALPHANUMERIC_SENDER.match(sender)):
        raise ApiError(
            400,
            21212,
            f"The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric sender ID.",
        )
    if sender and sender not in directory.from_numbers:
        raise ApiError(
            400,
            21606,
            f"The 'From' phone number provided ({sender}) is not a valid message-capable Twilio phone number for this destination/account",
        )
    if service and not _SERVICE_SID.match(service):
        raise ApiError(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if not body and "MediaUrl" not in form:
        raise ApiError(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY:
        raise ApiError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    validity: int | None = None
    if "ValidityPeriod" in form:
        raw = form["ValidityPeriod"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_VALIDITY:
            raise ApiError(400, 21624, f"Invalid validity period value: {raw}")
        validity = int(raw)
    callback = form.get("StatusCallback", "").strip()
    if callback and (urlsplit(callback).scheme not in ("http", "https") or not urlsplit(callback).hostname):
        raise ApiError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    if to in directory.unsubscribed:
        raise ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
    if to in directory.not_mobile:
        raise ApiError(400, 21614, f"'To' number {to} is not a valid mobile number")
    return CreateRequest(
        to=to,
        from_=sender or sorted(directory.from_numbers)[0],
        body=body,
        status_callback=callback,
        validity_period=validity,
        messaging_service_sid=service,
    )
