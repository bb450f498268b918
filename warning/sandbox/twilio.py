"""The Twilio sandbox: Twilio's Messages and Calls APIs emulated over real HTTP, for drills, demos and tests.

It answers what the twilio library and our SMS and voice channels send — `POST /2010-04-01/Accounts/
{sid}/Messages.json` with HTTP Basic auth, `GET …/Messages/{sid}.json`, `GET …/Messages.json` (the
list, newest first, filtered by `To`/`From`, paged by `PageSize`/`Page`), `POST …/Calls.json`,
`GET …/Calls/{sid}.json`, `GET /2010-04-01/Accounts/{sid}.json` — with Twilio's JSON shapes and error
codes, and later POSTs signed status callbacks (sent, then delivered / undelivered / failed). Calls are
played out by simulated callees (`twilio_calls`): they ring, answer or not, fetch the call's TwiML and
press keys. Faults (`twilio_faults.Faults`) make it slow, flaky, rate-limited, hanging or hard-capped,
deterministically for a given seed. Inspection for tests and drills: `GET /_sandbox/messages`,
`GET /_sandbox/calls`, `GET|POST /_sandbox/faults`, `GET|POST /_sandbox/callees`, and the attributes
of `TwilioSandbox`.

The default drill account uses Twilio's magic test numbers: `SANDBOX_FROM` (+15005550006) is a valid
sender; +15005550001 is refused as invalid (21211), +15005550004 as unsubscribed (21610) and
+15005550009 as not a mobile number (21614).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web

from warning.sandbox.serve import drain, serve
from warning.sandbox.twilio_callbacks import CallbackSender
from warning.sandbox.twilio_calls import Callees, SandboxCall, SandboxCalls
from warning.sandbox.twilio_faults import Faults, SendCap
from warning.sandbox.twilio_resources import (
    API_VERSION,
    ApiError,
    Directory,
    SandboxMessage,
    check_create,
    rfc2822,
)

log = logging.getLogger(__name__)

SANDBOX_ACCOUNT_SID = "AC5a4db0c05a4db0c05a4db0c05a4db0c0"
SANDBOX_AUTH_TOKEN = "sandbox-token-is-public-not-secret"  # noqa: S105 (a published drill credential)
SANDBOX_FROM = "+15005550006"

DELIVERY_FAILURE_CODES = (30003, 30005, 30006)  # unreachable handset, unknown handset, landline/carrier
VALIDITY_EXPIRED = 30036  # the message sat in the queue longer than its ValidityPeriod

_ACCOUNTS = f"/{API_VERSION}/Accounts"
# When the request being handled arrived; set by the gate, read by the handler (same task).
_RECEIVED: ContextVar[datetime] = ContextVar("twilio_sandbox_received")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TwilioSandbox:
    """State of one emulated Twilio account: messages, counters, faults; `app()` serves it over HTTP."""

    def __init__(
        self,
        *,
        account_sid: str = SANDBOX_ACCOUNT_SID,
        auth_token: str = SANDBOX_AUTH_TOKEN,
        from_numbers: Iterable[str] = (SANDBOX_FROM,),
        unsubscribed: Iterable[str] = ("+15005550004",),
        not_mobile: Iterable[str] = ("+15005550009",),
        invalid: Iterable[str] = ("+15005550001",),
        faults: Faults | None = None,
        callees: Callees | None = None,
        seed: int | None = None,
        retain: int = 200_000,
        message_list: bool = True,
    ) -> None:
        self.account_sid = account_sid
        # False: no `GET …/Messages.json`, like a Twilio-compatible gateway that only sends (404).
        self.message_list = message_list
        self.auth_token = auth_token
        self.directory = Directory(
            from_numbers=frozenset(from_numbers),
            unsubscribed=frozenset(unsubscribed),
            not_mobile=frozenset(not_mobile),
            invalid=frozenset(invalid),
        )
        if not self.directory.from_numbers:
            raise ValueError("the sandbox account needs at least one From number")
        self.faults = faults or Faults()
        # Accepted messages, oldest first; beyond `retain` the oldest are forgotten (long drills, benchmarks).
        self.messages: list[SandboxMessage] = []
        self._retain = retain
        self.requests = 0  # message create requests received, whatever the answer
        self.requests_by_to: Counter[str] = Counter()
        self.in_flight = 0  # API requests being handled now
        self.peak_in_flight = 0
        self._by_sid: dict[str, SandboxMessage] = {}
        self._by_to: dict[str, list[SandboxMessage]] = {}
        self.lists = 0  # message list requests received (reconciliation lookups)
        self._by_content: Counter[tuple[str, str]] = Counter()
        self._rng = random.Random(seed)
        self._cap = SendCap()
        self._call_cap = SendCap()  # Twilio limits calls per second apart from messages
        self._callbacks = CallbackSender(auth_token)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._calls = SandboxCalls(
            account_sid=account_sid,
            auth_token=auth_token,
            directory=self.directory,
            callees=callees or Callees(),
            callbacks=self._callbacks,
            rng=self._rng,
            pace=lambda: self.faults.callback_delay,
            spawn=self._spawn,
            retain=retain,
        )

    # ---- inspection and control (in process) ----

    @property
    def capped(self) -> int:
        """Message requests refused by the hard `max_per_second` cap."""
        return self._cap.refused

    @property
    def callbacks_dropped(self) -> int:
        return self._callbacks.dropped

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault knobs now; return the new set.

        Raises:
            ValueError: an unknown knob or a value out of range.
        """
        self.faults = self.faults.updated(changes)
        return self.faults

    @property
    def calls(self) -> list[SandboxCall]:
        """Accepted calls, oldest first."""
        return self._calls.calls

    def call(self, sid: str) -> SandboxCall:
        """The call with this sid.

        Raises:
            KeyError: no such call.
        """
        return self._calls.call(sid)

    @property
    def callees(self) -> Callees:
        return self._calls.callees

    def set_callees(self, **changes: Any) -> Callees:
        """Change how callees behave (busy, no_answer, unreachable, silent, press, rates…) for new calls.

        Raises:
            ValueError: an unknown knob or a value of the wrong kind.
        """
        self._calls.callees = self._calls.callees.updated(changes)
        return self._calls.callees

    def message(self, sid: str) -> SandboxMessage:
        """The message with this sid.

        Raises:
            KeyError: no such message.
        """
        return self._by_sid[sid]

    def sent_to(self, to: str) -> list[SandboxMessage]:
        """Accepted messages to this number, oldest first."""
        return [m for m in self.messages if m.to == to]

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every message and call lifecycle started so far has run to its final callback."""
        await drain(self._tasks, within)

    # ---- the HTTP application ----

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this sandbox's state."""
        app = web.Application(middlewares=[self._gate], client_max_size=256 * 1024)
        app.cleanup_ctx.append(self._resources)
        app.on_shutdown.append(self._on_shutdown)
        app.router.add_post(f"{_ACCOUNTS}/{{account}}/Messages.json", self._create, name="create")
        app.router.add_get(f"{_ACCOUNTS}/{{account}}/Messages/{{sid}}.json", self._fetch, name="fetch")
        if self.message_list:
            app.router.add_get(f"{_ACCOUNTS}/{{account}}/Messages.json", self._list, name="list")
        app.router.add_post(f"{_ACCOUNTS}/{{account}}/Calls.json", self._calls.create, name="create_call")
        app.router.add_get(
            f"{_ACCOUNTS}/{{account}}/Calls/{{sid}}.json", self._calls.fetch, name="fetch_call"
        )
        app.router.add_get(f"{_ACCOUNTS}/{{account}}.json", self._account, name="account")
        app.router.add_get("/_sandbox/messages", self._inspect_messages)
        app.router.add_get("/_sandbox/calls", self._inspect_calls)
        app.router.add_get("/_sandbox/faults", self._inspect_faults)
        app.router.add_post("/_sandbox/faults", self._change_faults)
        app.router.add_get("/_sandbox/callees", self._inspect_callees)
        app.router.add_post("/_sandbox/callees", self._change_callees)
        return app

    async def _resources(self, app: web.Application) -> AsyncIterator[None]:
        self._closing.clear()
        await self._callbacks.start()
        await self._calls.start()
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._calls.aclose()
        await self._callbacks.aclose()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # releases hanging requests so the server can stop

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        account = request.match_info.get("account", self.account_sid)
        return (
            scheme.lower() == "basic"
            and hmac.compare_digest(login, self.account_sid)
            and account == self.account_sid
            and hmac.compare_digest(password, self.auth_token)
        )

    @web.middleware
    async def _gate(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Auth, the send cap, latency and faults, in Twilio's order; counts every API request."""
        if request.match_info.http_exception is not None:
            status = request.match_info.http_exception.status
            return _error(
                ApiError(status, 20000 + status, f"The requested resource {request.path} was not found")
            )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._gated(request, handler)
        except ApiError as exc:
            return _error(exc)
        finally:
            self.in_flight -= 1

    async def _gated(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        creating = route == "create"
        if route == "list":
            self.lists += 1
        _RECEIVED.set(datetime.now(UTC))
        if creating:
            self.requests += 1
            form = await request.post()
            to, body = str(form.get("To", "")), str(form.get("Body", ""))
            self.requests_by_to[to] += 1
            self._by_content[(to, body)] += 1
        if not self._authorised(request):
            raise ApiError(401, 20003, "Authenticate")
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        faults = self.faults
        cap = {"create": self._cap, "create_call": self._call_cap}.get(route or "")
        if cap is not None and not cap.admit(asyncio.get_running_loop().time(), faults.max_per_second):
            return _error(ApiError(429, 20429, "Too Many Requests"), retry_after=1.0)
        delay = faults.latency + (self._rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
        if delay:
            await asyncio.sleep(delay)
        draw = self._rng.random()
        if draw < faults.error_rate:
            if self._rng.random() < 0.5:
                raise ApiError(500, 20500, "An internal server error has occurred")
            raise ApiError(503, 20503, "Service Unavailable")
        if draw < faults.error_rate + faults.rate_limit_rate:
            return _error(ApiError(429, 20429, "Too Many Requests"), retry_after=faults.retry_after)
        response = await handler(request)
        if draw < faults.error_rate + faults.rate_limit_rate + faults.hang_rate:
            await self._hang(request)
        return response

    async def _hang(self, request: web.Request) -> None:
        """Hold the answer back until the client goes away (or the sandbox stops)."""
        while not self._closing.is_set():
            if request.transport is None or request.transport.is_closing():
                return
            await asyncio.sleep(0.05)

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        checked = check_create({k: str(v) for k, v in form.items()}, self.directory)
        now = datetime.now(UTC)
        message = SandboxMessage(
            sid="SM" + binascii.hexlify(self._rng.randbytes(16)).decode(),
            account_sid=self.account_sid,
            to=checked.to,
            from_=checked.from_,
            body=checked.body,
            created=now,
            received=_RECEIVED.get(now),
            status_callback=checked.status_callback,
            validity_period=checked.validity_period,
            messaging_service_sid=checked.messaging_service_sid,
            attempts=self._by_content[(checked.to, checked.body)],
        )
        self.messages.append(message)
        self._by_sid[message.sid] = message
        self._by_to.setdefault(message.to, []).append(message)
        if len(self.messages) > self._retain:
            forgotten = len(self.messages) - self._retain + self._retain // 10
            for old in self.messages[:forgotten]:
                del self._by_sid[old.sid]
                kept = self._by_to.get(old.to, [])
                if kept and kept[0] is old:
                    kept.pop(0)
                if not kept:
                    self._by_to.pop(old.to, None)
            del self.messages[:forgotten]
        self._spawn(self._lifecycle(message))
        return web.json_response(message.to_twilio(), status=201)

    def _spawn(self, lifecycle: Coroutine[Any, Any, None]) -> None:
        """Run a message or call lifecycle in the background; `drain` waits for it, shutdown cancels it."""
        task = asyncio.get_running_loop().create_task(lifecycle)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, request: web.Request) -> web.Response:
        message = self._by_sid.get(request.match_info["sid"])
        if message is None:
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(message.to_twilio())

    async def _list(self, request: web.Request) -> web.Response:
        """Twilio's Message list: newest first, `To`/`From` filters, `PageSize` (≤ 1000) and `Page`."""
        query = request.query
        try:
            size = min(1000, max(1, int(query.get("PageSize", "50"))))
            page = max(0, int(query.get("Page", "0")))
        except ValueError:
            raise ApiError(400, 20001, "Invalid PageSize or Page") from None
        to, from_ = query.get("To"), query.get("From")
        pool = self._by_to.get(to, []) if to else self.messages
        found = [m for m in reversed(pool) if from_ is None or m.from_ == from_]
        start = page * size
        chosen = found[start : start + size]
        base = f"{_ACCOUNTS}/{self.account_sid}/Messages.json"
        filters = "".join(f"&{k}={quote(v)}" for k, v in (("To", to), ("From", from_)) if v)

        def uri(n: int) -> str:
            return f"{base}?PageSize={size}&Page={n}{filters}"

        more = start + size < len(found)
        return web.json_response(
            {
                "messages": [m.to_twilio() for m in chosen],
                "end": start + max(0, len(chosen) - 1),
                "first_page_uri": uri(0),
                "next_page_uri": uri(page + 1) + f"&PageToken=PA{start + size}" if more else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": uri(page - 1) if page else None,
                "start": start,
                "uri": uri(page),
            }
        )

    async def _account(self, request: web.Request) -> web.Response:
        uri = f"{_ACCOUNTS}/{self.account_sid}"
        return web.json_response(
            {
                "sid": self.account_sid,
                "owner_account_sid": self.account_sid,
                "friendly_name": "warning sandbox",
                "status": "active",
                "type": "Full",
                "date_created": rfc2822(datetime(2024, 1, 1, tzinfo=UTC)),
                "date_updated": rfc2822(datetime(2024, 1, 1, tzinfo=UTC)),
                "uri": f"{uri}.json",
                "subresource_uris": {"messages": f"{uri}/Messages.json", "calls": f"{uri}/Calls.json"},
            }
        )

    async def _inspect_messages(self, request: web.Request) -> web.Response:
        return web.json_response([m.to_json() for m in self.messages])

    async def _inspect_calls(self, request: web.Request) -> web.Response:
        return web.json_response([c.to_json() for c in self.calls])

    async def _inspect_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _change_faults(self, request: web.Request) -> web.Response:
        return await _change_knobs(request, "fault", lambda changes: self.set_faults(**changes).to_json())

    async def _inspect_callees(self, request: web.Request) -> web.Response:
        return web.json_response(self.callees.to_json())

    async def _change_callees(self, request: web.Request) -> web.Response:
        return await _change_knobs(request, "callee", lambda changes: self.set_callees(**changes).to_json())

    # ---- status lifecycle and callbacks ----

    async def _lifecycle(self, message: SandboxMessage) -> None:
        """queued → sent → delivered, or → undelivered / failed with a carrier error code."""
        queued_for = self.faults.callback_delay
        await asyncio.sleep(queued_for)
        if message.validity_period is not None and queued_for > message.validity_period:
            await self._advance(message, "failed", VALIDITY_EXPIRED)
            return
        failing = self._rng.random() < self.faults.failure_rate
        code = self._rng.choice(DELIVERY_FAILURE_CODES) if failing else None
        if failing and self._rng.random() < 0.5:
            await self._advance(message, "failed", code)  # refused before it left Twilio
            return
        await self._advance(message, "sent")
        await asyncio.sleep(self.faults.callback_delay)
        await self._advance(message, "undelivered" if failing else "delivered", code)

    async def _advance(self, message: SandboxMessage, status: str, error_code: int | None = None) -> None:
        now = datetime.now(UTC)
        message.status, message.updated, message.error_code = status, now, error_code
        if status == "sent":
            message.sent = now
        if not message.status_callback:
            return
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        attempts, accepted = await self._callbacks.post(message.status_callback, params)
        message.callback_attempts += attempts
        message.callbacks_dropped += 0 if accepted else 1


async def _change_knobs(
    request: web.Request, kind: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> web.Response:
    """Apply a JSON object of `kind` knobs with `change`; 400 naming the problem, and no change, if invalid."""
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError(f"the body must be a JSON object of {kind} knobs")
        knobs = change(changes)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return web.json_response({"error": {"code": "invalid", "message": str(exc)}}, status=400)
    log.info("sandbox %s knobs changed: %s", kind, knobs)
    return web.json_response(knobs)


def _error(exc: ApiError, *, retry_after: float | None = None) -> web.Response:
    headers = {}
    if exc.status == 401:
        headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="Twilio API"'
    if retry_after is not None:
        headers[hdrs.RETRY_AFTER] = str(math.ceil(retry_after))  # delay-seconds is a whole number
    return web.json_response(exc.body(), status=exc.status, headers=headers)


@asynccontextmanager
async def run_twilio_sandbox(
    sandbox: TwilioSandbox, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve `sandbox` on `host:port` (0: any free port) and yield its base URL, e.g. `http://127.0.0.1:43121`.

    Raises:
        OSError: the address cannot be bound.
    """
    async with serve(sandbox.app(), host, port) as url:
        yield url
