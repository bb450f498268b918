"""The Calls resource of the Twilio sandbox, and a simulated callee behind every call.

`POST /2010-04-01/Accounts/{sid}/Calls.json` answers Twilio's Call resource (sid `CA…`, status
`queued`) or Twilio's error code; `GET …/Calls/{sid}.json` fetches it. Each created call then lives:

    initiated → ringing → busy | no-answer | in-progress (answered) → completed
    initiated → failed                                       (an unreachable number never rings)

An answered call fetches its TwiML from `Url` the way Twilio does (a form POST, or a GET with the
parameters in the query; signed with the account's auth token), "says" every `<Say>` it reaches, and
at a `<Gather>` presses the callee's digits and posts them, signed, to the gather's action, whose
answer is the next document. A callee who presses nothing lets the call go on after the `<Gather>`.
Documents are read with defusedxml under a size cap; one that cannot be fetched or read ends the call
with Twilio's error code, as Twilio's "application error" does. Status callbacks go to
`StatusCallback` for the events asked for (only `completed` when none are), through the sandbox's
`CallbackSender`.

Who answers and what they press is `Callees`, frozen and swapped whole like `Faults`.
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import logging
import math
import random
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
from aiohttp import web

# No stubs ship for defusedxml; the ignore tolerates them being installed later.
from defusedxml import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped,unused-ignore]

from warning.phone import mask
from warning.sandbox.twilio_callbacks import SIGNATURE_HEADER, CallbackSender, sign
from warning.sandbox.twilio_resources import _E164, API_VERSION, ApiError, Directory, rfc2822

log = logging.getLogger(__name__)

CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
MAX_TIMEOUT = 600  # seconds Twilio lets a call ring at most
MAX_TWIML = 64 * 1024  # bytes of one TwiML document (Twilio's limit)
MAX_DOCUMENTS = 10  # TwiML documents one call may fetch (gathers, redirects) before the sandbox ends it
FETCH_TIMEOUT = 15.0  # seconds Twilio waits for a TwiML answer

# Twilio's codes for a call whose instructions could not be had.
HTTP_RETRIEVAL_FAILURE, HTTP_CONNECTION_FAILURE, TWIML_TOO_LARGE, DOCUMENT_PARSE_FAILURE = (
    11200,
    11205,
    11750,
    12100,
)

_DIGITS = re.compile(r"^[0-9*#]{0,32}$")
_NUMBER_SETS = ("busy", "no_answer", "unreachable", "silent")
_RATES = ("answer_rate", "press_rate")
# Which status-callback event each call status belongs to; every final status is `completed`'s.
_EVENT = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}


@dataclass(frozen=True, slots=True)
class Callees:
    """How the people the sandbox calls behave. Numbers are E.164; rates are seeded probabilities per call."""

    busy: frozenset[str] = frozenset()  # the line is busy: ends "busy"
    no_answer: frozenset[str] = frozenset()  # rings out: ends "no-answer"
    unreachable: frozenset[str] = frozenset()  # never rings: ends "failed"
    silent: frozenset[str] = frozenset()  # answers, listens, presses nothing
    press: Mapping[str, str] = field(default_factory=dict)  # keys pressed at each <Gather>; default "1"
    answer_delay: float = 0.05  # seconds of ringing before an answer (or before no-answer)
    answer_rate: float = 1.0  # share of the other callees who answer at all
    press_rate: float = 1.0  # share of answering callees who press at a <Gather>

    def __post_init__(self) -> None:
        # JSON gives lists and objects (`POST /_sandbox/callees`); hold immutable copies.
        for name in _NUMBER_SETS:
            numbers = getattr(self, name)
            if not isinstance(numbers, list | tuple | set | frozenset) or not all(
                isinstance(n, str) for n in numbers
            ):
                raise ValueError(f"{name} must be a list of phone numbers")
            object.__setattr__(self, name, frozenset(numbers))
        if not isinstance(self.press, Mapping) or not all(
            isinstance(number, str) and isinstance(keys, str) and _DIGITS.match(keys)
            for number, keys in self.press.items()
        ):
            raise ValueError("press must map phone numbers to keys (0-9, * and #, at most 32)")
        object.__setattr__(self, "press", MappingProxyType(dict(self.press)))
        for name in ("answer_delay", *_RATES):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            if name in _RATES and value > 1:
                raise ValueError(f"{name} must be between 0 and 1")

    def updated(self, changes: Mapping[str, Any]) -> Callees:
        """These callees with some knobs changed (the body of `POST /_sandbox/callees`).

        Raises:
            ValueError: an unknown knob, or a value of the wrong kind (the message names it).
        """
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise ValueError(f"unknown callee knob {name!r}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def keys_for(self, number: str, draw: float) -> str:
        """What `number` presses at a `<Gather>`, given a uniform draw in [0, 1) for `press_rate`."""
        if number in self.silent or draw >= self.press_rate:
            return ""
        return self.press.get(number, "1")

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: sorted(getattr(self, name)) for name in _NUMBER_SETS},
            "press": dict(self.press),
            "answer_delay": self.answer_delay,
            "answer_rate": self.answer_rate,
            "press_rate": self.press_rate,
        }


@dataclass(slots=True)
class CallRequest:
    """A checked `POST …/Calls.json` form."""

    to: str
    from_: str
    url: str
    method: str
    status_callback: str
    status_callback_events: tuple[str, ...]
    status_callback_method: str
    timeout: int


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_call(form: Mapping[str, str], events: Sequence[str], directory: Directory) -> CallRequest:
    """Check a Calls create form (`events`: every StatusCallbackEvent value) the way Twilio does.

    Only `Url` is supported for instructions (not `Twiml` or `ApplicationSid`), and status callbacks
    only by POST: the sandbox says so rather than behave differently from Twilio.

    Raises:
        ApiError: the error Twilio would answer (21201, 21211, 21213, 21212, 21210, 21205, 21209, 21609,
            21626, 21208).
    """
    to = form.get("To", "").strip()
    sender = form.get("From", "").strip()
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not _E164.match(to) or to in directory.invalid:
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not sender:
        raise ApiError(400, 21213, "No 'From' number is specified")
    if not _E164.match(sender):
        raise ApiError(400, 21212, f"Invalid 'From' Phone Number: {sender}")
    if sender not in directory.from_numbers:
        raise ApiError(400, 21210, f"The source phone number provided, {sender}, is not yet verified.")
    url = form.get("Url", "").strip()
    if not _absolute(url):
        raise ApiError(400, 21205, f"Url is not a valid URL: {url}")
    method = form.get("Method", "POST").strip().upper()
    if method not in ("GET", "POST"):
        raise ApiError(400, 21209, f"Method is not valid: {method}")
    callback = form.get("StatusCallback", "").strip()
    if callback and not _absolute(callback):
        raise ApiError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    callback_method = form.get("StatusCallbackMethod", "POST").strip().upper()
    if callback_method != "POST":
        raise ApiError(
            400, 21209, f"StatusCallbackMethod {callback_method}: the sandbox only POSTs callbacks"
        )
    # Twilio takes the events as repeated parameters; some clients join them with spaces.
    asked = tuple(dict.fromkeys(word for value in events for word in value.split()))
    if any(event not in CALL_EVENTS for event in asked):
        raise ApiError(400, 21626, f"Invalid 'StatusCallbackEvent': {' '.join(asked)}")
    raw_timeout = form.get("Timeout", "60").strip()
    if not (raw_timeout.isascii() and raw_timeout.isdigit()) or not 1 <= int(raw_timeout) <= MAX_TIMEOUT:
        raise ApiError(400, 21208, f"Invalid Timeout: {raw_timeout}")
    return CallRequest(to, sender, url, method, callback, asked, callback_method, int(raw_timeout))


@dataclass(slots=True)
class SandboxCall(CallRequest):
    """One call the sandbox accepted: its checked request, and what happened on it."""

    sid: str
    account_sid: str
    created: datetime
    status: str = "queued"
    updated: datetime | None = None
    start_time: datetime | None = None  # answered
    end_time: datetime | None = None
    duration: int | None = None  # whole seconds, rounded up, once ended
    error_code: int | None = None  # its TwiML could not be fetched or read (11200, 11205, 11750, 12100)
    twiml: list[str] = field(default_factory=list)  # every document fetched, in order
    spoken: list[str] = field(default_factory=list)  # the text of every <Say> reached, in order
    digits: list[str] = field(default_factory=list)  # keys pressed, one entry per <Gather> answered
    callbacks: list[str] = field(default_factory=list)  # CallStatus of every status callback sent
    callback_attempts: int = 0  # status callback POSTs made, retries included
    callbacks_dropped: int = 0

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def to_twilio(self) -> dict[str, Any]:
        """The Call resource as Twilio's API returns it."""
        base = self.uri.removesuffix(".json")
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated or self.created),
            "direction": "outbound-api",
            "duration": None if self.duration is None else str(self.duration),
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                name: f"{base}/{name.title()}.json"
                for name in ("notifications", "recordings", "payments", "events", "streams")
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": self.uri,
        }

    def to_json(self) -> dict[str, Any]:
        """The inspection view (`GET /_sandbox/calls`): every field, the TwiML fetched included; ISO dates."""
        view = {f.name.removesuffix("_"): getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: v.isoformat() if isinstance(v, datetime) else v for name, v in view.items()}


def _said(say: ET.Element) -> str:
    """The text a `<Say>` speaks, SSML (`<prosody>`, …) included."""
    return "".join(say.itertext()).strip()


def _method(verb: ET.Element) -> str:
    return "GET" if verb.get("method", "POST").upper() == "GET" else "POST"


# The next request of a call: (URL, method, parameters beyond the call's own).
_Next = tuple[str, str, dict[str, str]]


class SandboxCalls:
    """The sandbox account's calls: the Calls API handlers and the lifecycle of every call."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        directory: Directory,
        callees: Callees,
        callbacks: CallbackSender,
        rng: random.Random,
        pace: Callable[[], float],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        retain: int,
    ) -> None:
        """`pace()` is the pause between call progress steps; `spawn` runs a lifecycle the sandbox drains."""
        self.callees = callees
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._directory = directory
        self._callbacks = callbacks
        self._rng = rng
        self._pace = pace
        self._spawn = spawn
        self._retain = retain
        self._by_sid: dict[str, SandboxCall] = {}  # insertion order: oldest first
        self._session: aiohttp.ClientSession | None = None

    @property
    def calls(self) -> list[SandboxCall]:
        """Accepted calls, oldest first (beyond `retain` the oldest are forgotten)."""
        return list(self._by_sid.values())

    def call(self, sid: str) -> SandboxCall:
        """The call with this sid.

        Raises:
            KeyError: no such call.
        """
        return self._by_sid[sid]

    async def start(self) -> None:
        """Open the HTTP session calls fetch their TwiML with (inside the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT))

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the API ----

    async def create(self, request: web.Request) -> web.Response:
        """`POST …/Calls.json`: 201 and the queued call, whose lifecycle then runs on its own."""
        form = await request.post()
        checked = check_call(
            {k: str(v) for k, v in form.items()},
            [str(v) for v in form.getall("StatusCallbackEvent", [])],
            self._directory,
        )
        call = SandboxCall(
            sid="CA" + binascii.hexlify(self._rng.randbytes(16)).decode(),
            account_sid=self._account_sid,
            created=datetime.now(UTC),
            **dataclasses.asdict(checked),
        )
        self._by_sid[call.sid] = call
        while len(self._by_sid) > self._retain:
            del self._by_sid[next(iter(self._by_sid))]
        self._spawn(self._lifecycle(call))
        return web.json_response(call.to_twilio(), status=201)

    async def fetch(self, request: web.Request) -> web.Response:
        """`GET …/Calls/{sid}.json`: the call now; 404 (20404) for an unknown sid."""
        call = self._by_sid.get(request.match_info["sid"])
        if call is None:
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(call.to_twilio())

    # ---- the lifecycle ----

    async def _lifecycle(self, call: SandboxCall) -> None:
        callees = self.callees  # one consistent set of knobs for the whole call
        await self._progress(call, "initiated")
        await asyncio.sleep(self._pace())
        if call.to in callees.unreachable:
            await self._end(call, "failed")
            return
        await self._progress(call, "ringing")
        if call.to in callees.busy:
            await asyncio.sleep(self._pace())
            await self._end(call, "busy")
            return
        await asyncio.sleep(callees.answer_delay)
        if call.to in callees.no_answer or self._rng.random() >= callees.answer_rate:
            await self._end(call, "no-answer")
            return
        call.start_time = datetime.now(UTC)
        await self._progress(call, "in-progress")
        await self._converse(call, callees)
        await self._end(call, "completed")

    def _params(self, call: SandboxCall) -> dict[str, str]:
        """What Twilio sends about a call with every webhook."""
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }

    async def _progress(self, call: SandboxCall, status: str, extra: Mapping[str, str] | None = None) -> None:
        """Move the call to `status` and send its status callback if that event was asked for."""
        now = datetime.now(UTC)
        call.status, call.updated = status, now
        if not call.status_callback or _EVENT.get(status, "completed") not in (
            call.status_callback_events or ("completed",)
        ):
            return
        params = {
            **self._params(call),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(len(call.callbacks)),
            "Timestamp": rfc2822(now) or "",
            **(extra or {}),
        }
        call.callbacks.append(status)
        attempts, accepted = await self._callbacks.post(call.status_callback, params)
        call.callback_attempts += attempts
        call.callbacks_dropped += 0 if accepted else 1

    async def _end(self, call: SandboxCall, status: str) -> None:
        """End the call with its final status and duration (0 unless it was answered)."""
        call.end_time = datetime.now(UTC)
        call.duration = 0
        if status == "completed" and call.start_time is not None:  # Twilio counts started seconds
            call.duration = max(1, math.ceil((call.end_time - call.start_time).total_seconds()))
        await self._progress(call, status, {"CallDuration": str(call.duration)})

    async def _converse(self, call: SandboxCall, callees: Callees) -> None:
        """Fetch and follow the call's TwiML, document after document, until it hangs up or runs out."""
        step: _Next | None = (call.url, call.method, {})
        for _ in range(MAX_DOCUMENTS):
            if step is None:
                return
            url, method, extra = step
            response = await self._fetch(call, url, method, extra)
            if response is None:
                return
            step = self._follow(call, callees, response, url)
        if step is not None:
            log.warning("sandbox call %s ended after %d TwiML documents", call.sid, MAX_DOCUMENTS)

    async def _fetch(
        self, call: SandboxCall, url: str, method: str, extra: Mapping[str, str]
    ) -> ET.Element | None:
        """One TwiML document, signed like Twilio's request; None (and `error_code`) when there is none."""
        if self._session is None:
            raise RuntimeError("SandboxCalls.start() was not called")
        params = {**self._params(call), **extra}
        headers = {"I-Twilio-Idempotency-Token": str(uuid.uuid4()), "User-Agent": "TwilioProxy/1.1"}
        if method == "GET":  # the parameters travel in the query, and the signature covers the URL only
            url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
            headers[SIGNATURE_HEADER] = sign(url, {}, self._auth_token)
            sending = self._session.get(url, headers=headers)
        else:
            headers[SIGNATURE_HEADER] = sign(url, params, self._auth_token)
            sending = self._session.post(url, data=params, headers=headers)
        try:
            async with sending as response:
                body = await response.content.read(MAX_TWIML + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            call.error_code = HTTP_CONNECTION_FAILURE
            return None
        if status >= 300:
            call.error_code = HTTP_RETRIEVAL_FAILURE
            return None
        if len(body) > MAX_TWIML:
            call.error_code = TWIML_TOO_LARGE
            return None
        call.twiml.append(body.decode("utf-8", errors="replace"))
        try:
            root: ET.Element = fromstring(body)
        except (ET.ParseError, DefusedXmlException, ValueError):
            root = ET.Element("unreadable")
        if root.tag != "Response":
            call.error_code = DOCUMENT_PARSE_FAILURE
            log.info("sandbox call %s to %s: unreadable TwiML", call.sid, mask(call.to))
            return None
        return root

    def _follow(self, call: SandboxCall, callees: Callees, response: ET.Element, url: str) -> _Next | None:
        """Play one document's verbs; the next request (a gather's keys, a redirect) or None to hang up."""
        for verb in response:
            if verb.tag == "Say":
                call.spoken.append(_said(verb))
            elif verb.tag == "Gather":
                call.spoken.extend(_said(say) for say in verb if say.tag == "Say")
                keys = callees.keys_for(call.to, self._rng.random())
                wanted = verb.get("numDigits", "")
                if wanted.isascii() and wanted.isdigit():
                    keys = keys[: int(wanted)]
                if keys:
                    call.digits.append(keys)
                    # Without an action Twilio posts the keys to the document's own URL.
                    return urljoin(url, verb.get("action") or url), _method(verb), {"Digits": keys}
            elif verb.tag == "Redirect":
                return urljoin(url, (verb.text or "").strip()), _method(verb), {}
            elif verb.tag in ("Hangup", "Reject"):
                return None
            # <Pause>, <Play> and the rest take time on a real call; the sandbox moves on.
        return None
