"""Voice calls end to end over loopback HTTP: the channel, the sandbox's Calls API and callees, our webhooks.

The webhooks app is served on its own loopback URL (its public URL, which the sandbox's signatures
cover) with a recording `VoiceCallbacks`; Redis is the test's store. Waits are bounded by
`sandbox.drain`, never by sleeps.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from warning.channels.base import Message, Outcome
from warning.channels.voice import VoiceChannel, voice_text_key
from warning.config import TwilioSettings, VoiceSettings
from warning.errors import PermanentDeliveryError, TransientDeliveryError
from warning.model import Level
from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.sandbox.twilio_callbacks import sign
from warning.sandbox.twilio_calls import Callees
from warning.sandbox.twilio_faults import Faults
from warning.store import Store
from warning.web.voice_hooks import VoiceCallbacks, voice_routes

TO = "+8613800138000"
BUSY, NO_ANSWER, UNREACHABLE, SILENT, PRESSES_2 = (f"+86138001380{n:02d}" for n in range(1, 6))
KEY = "a1:1:voice:r:1"
TEXT = "【演练】台风橙色预警：今晚22时登陆，请立即转移到村委会安置点。"
PROMPT, THANKS, GOODBYE = "收到请按1。", "已确认，谢谢。注意安全。", "未收到确认。请注意安全，再见。"
VOICE = VoiceSettings(repeat=2, ring_timeout=20, timeout=5.0)
CALLS = f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json"
AUTH = {
    "Authorization": "Basic "
    + base64.b64encode(f"{SANDBOX_ACCOUNT_SID}:{SANDBOX_AUTH_TOKEN}".encode()).decode()
}

AUTH_TOKEN = web.AppKey("auth_token", str)
STORE = web.AppKey("store", Store)
CALLBACKS = web.AppKey("voice_callbacks", VoiceCallbacks)


def message(n: int = 1, *, to: str = TO, attempt: int = 1, expires: datetime | None = None) -> Message:
    return Message(
        key=f"a1:1:voice:r:{n}",
        recipient=f"r:{n}",
        address=to,
        text=TEXT,
        alert_id="a1",
        version=1,
        level=Level.ORANGE,
        exercise=True,
        expires=expires,
        attempt=attempt,
    )


@dataclass
class Hooks:
    """Our voice webhooks on loopback, and what they reported to the service."""

    url: str  # the public URL: what Twilio (the sandbox) calls and signs
    session: aiohttp.ClientSession
    digits: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[tuple[str, str, int, dict[str, str]]] = field(default_factory=list)

    @property
    def voice_url(self) -> str:
        return self.url + "/hooks/twilio/voice"

    def call_statuses(self, key: str = KEY) -> list[str]:
        return [status for k, status, _, _ in self.statuses if k == key]

    async def post(
        self,
        route: str,
        params: Mapping[str, str],
        *,
        signed: Mapping[str, str] | None = None,
        token: str = SANDBOX_AUTH_TOKEN,
        idempotency: str | None = None,
    ) -> tuple[int, str]:
        """POST `params` to a voice route as Twilio would, signing `signed` (default: `params`) with `token`."""
        url = f"{self.voice_url}/{route}"
        headers = {"X-Twilio-Signature": sign(url, signed if signed is not None else params, token)}
        if idempotency is not None:
            headers["I-Twilio-Idempotency-Token"] = idempotency
        async with self.session.post(url, data=dict(params), headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def hooks(store: Store) -> AsyncIterator[Hooks]:
    """The voice webhooks served on a loopback port whose URL is their public URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with aiohttp.ClientSession() as session:
        recorded = Hooks(url, session)

        async def on_digits(key: str, digits: str) -> None:
            recorded.digits.append((key, digits))

        async def on_status(key: str, status: str, attempt: int, params: Mapping[str, str]) -> None:
            recorded.statuses.append((key, status, attempt, dict(params)))

        app = web.Application()
        app[AUTH_TOKEN] = SANDBOX_AUTH_TOKEN
        app[STORE] = store
        app[CALLBACKS] = VoiceCallbacks(on_digits=on_digits, on_status=on_status)
        app.add_routes(voice_routes(url, AUTH_TOKEN, STORE, CALLBACKS, VOICE))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield recorded
        finally:
            await runner.cleanup()


@pytest.fixture
def sandbox() -> TwilioSandbox:
    """A Twilio sandbox with one callee of each kind."""
    return TwilioSandbox(
        seed=11,
        faults=Faults(callback_delay=0.01),
        callees=Callees(
            busy=frozenset({BUSY}),
            no_answer=frozenset({NO_ANSWER}),
            unreachable=frozenset({UNREACHABLE}),
            silent=frozenset({SILENT}),
            press={PRESSES_2: "2"},
            answer_delay=0.02,
        ),
    )


@pytest.fixture
async def sandbox_url(sandbox: TwilioSandbox) -> AsyncIterator[str]:
    async with run_twilio_sandbox(sandbox) as url:
        yield url


ChannelFactory = Callable[..., Awaitable[VoiceChannel]]


@pytest.fixture
async def make_channel(sandbox_url: str, hooks: Hooks, store: Store) -> AsyncIterator[ChannelFactory]:
    """Start voice channels pointed at the sandbox and our hooks; every one is closed after the test."""
    opened: list[VoiceChannel] = []

    async def make(*, auth_token: str = SANDBOX_AUTH_TOKEN, **voice: Any) -> VoiceChannel:
        twilio = TwilioSettings(SANDBOX_ACCOUNT_SID, auth_token, SANDBOX_FROM, sandbox_url)
        settings = VoiceSettings(**{"repeat": 2, "ring_timeout": 20, **voice})
        channel = VoiceChannel(twilio, settings, store=store, hooks_url=hooks.voice_url)
        opened.append(channel)
        await channel.start()
        return channel

    yield make
    for channel in opened:
        await channel.aclose()


async def test_press_one_end_to_end(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, hooks: Hooks, store: Store
) -> None:
    """A call says the warning slowly twice, the callee presses 1, and the service hears the key and completion."""
    channel = await make_channel()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.SENT
    assert re.fullmatch(r"CA[0-9a-f]{32}", result.provider_id)
    await sandbox.drain(within=20)

    assert hooks.digits == [(KEY, "1")]
    assert hooks.call_statuses() == ["initiated", "ringing", "in-progress", "completed"]
    key, status, attempt, params = hooks.statuses[-1]
    assert (key, status, attempt) == (KEY, "completed", 1)
    assert (params["CallSid"], params["To"], params["From"]) == (result.provider_id, TO, SANDBOX_FROM)
    assert int(params["CallDuration"]) >= 1

    call = sandbox.call(result.provider_id)
    quoted = quote(KEY, safe="")
    assert (call.url, call.method, call.timeout) == (f"{hooks.voice_url}/twiml?d={quoted}", "POST", 20)
    assert call.status_callback == f"{hooks.voice_url}/status?d={quoted}&n=1"
    assert call.status_callback_events == ("initiated", "ringing", "answered", "completed")
    assert (call.status, call.digits, call.error_code) == ("completed", ["1"], None)
    assert call.spoken == [TEXT, TEXT, PROMPT, THANKS]
    first = ET.fromstring(call.twiml[0])
    assert [p.get("rate") for p in first.iter("prosody")] == ["slow", "slow"]
    gather = first.find("Gather")
    assert gather is not None and gather.get("action") == f"{hooks.voice_url}/gather?d={quoted}"


async def test_the_call_script_is_stored_until_the_alert_expires(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, store: Store
) -> None:
    """What the call says is in Redis before the call is placed, as JSON, expiring with the alert."""
    channel = await make_channel()
    await channel.deliver(message(expires=datetime.now(UTC) + timedelta(minutes=10)))
    key = voice_text_key(store, KEY)
    stored = await store.redis.get(key)
    assert isinstance(stored, str)
    assert json.loads(stored) == {"text": TEXT, "language": "cmn-CN", "prompt": PROMPT}
    assert 590 <= await store.redis.ttl(key) <= 600
    await channel.deliver(message(2))
    assert 86000 <= await store.redis.ttl(voice_text_key(store, "a1:1:voice:r:2")) <= 86400
    await sandbox.drain(within=20)


@pytest.mark.parametrize(
    ("to", "final", "steps"),
    [
        (BUSY, "busy", ["initiated", "ringing", "busy"]),
        (NO_ANSWER, "no-answer", ["initiated", "ringing", "no-answer"]),
        (UNREACHABLE, "failed", ["initiated", "failed"]),
    ],
)
async def test_unanswered_calls_end_with_their_status(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, hooks: Hooks, to: str, final: str, steps: list[str]
) -> None:
    """Busy, unanswered and unreachable numbers report busy / no-answer / failed, fetch no TwiML, press nothing."""
    channel = await make_channel()
    [result] = await channel.send([message(to=to)])
    assert result.outcome is Outcome.SENT  # Twilio accepts the call; the outcome comes by callback
    await sandbox.drain(within=20)
    assert hooks.call_statuses() == steps
    assert hooks.statuses[-1][3]["CallDuration"] == "0"
    assert hooks.digits == []
    call = sandbox.call(result.provider_id)
    assert (call.status, call.twiml, call.spoken) == (final, [], [])


async def test_silent_callee_hears_the_closing_line_and_the_attempt_is_reported(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, hooks: Hooks
) -> None:
    """A callee who presses nothing hears the closing line; no key is reported; statuses carry attempt 2."""
    channel = await make_channel()
    [result] = await channel.send([message(to=SILENT, attempt=2)])
    await sandbox.drain(within=20)
    assert hooks.digits == []
    assert [(status, n) for _, status, n, _ in hooks.statuses][-1] == ("completed", 2)
    call = sandbox.call(result.provider_id)
    assert call.spoken == [TEXT, TEXT, PROMPT, GOODBYE]
    assert call.status_callback.endswith("&n=2")


async def test_wrong_key_is_asked_again_once(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, hooks: Hooks
) -> None:
    """A callee pressing 2 is reported, hears the warning once more, presses 2 again, and the call ends."""
    channel = await make_channel()
    [result] = await channel.send([message(to=PRESSES_2)])
    await sandbox.drain(within=20)
    assert hooks.digits == [(KEY, "2"), (KEY, "2")]
    call = sandbox.call(result.provider_id)
    assert call.digits == ["2", "2"]
    assert call.spoken == [TEXT, TEXT, PROMPT, TEXT, PROMPT, GOODBYE]
    assert hooks.call_statuses()[-1] == "completed"


@pytest.mark.parametrize(
    ("knob", "final", "pressed"), [("answer_rate", "no-answer", []), ("press_rate", "completed", [])]
)
async def test_drill_rates_leave_calls_unanswered_or_unconfirmed(
    make_channel: ChannelFactory,
    sandbox: TwilioSandbox,
    hooks: Hooks,
    knob: str,
    final: str,
    pressed: list[str],
) -> None:
    """With answer_rate 0 nobody answers; with press_rate 0 everybody listens but nobody presses."""
    sandbox.set_callees(**{knob: 0.0})
    channel = await make_channel()
    results = await channel.send([message(n) for n in range(1, 4)])
    await sandbox.drain(within=20)
    assert {sandbox.call(r.provider_id).status for r in results} == {final}
    assert [d for _, d in hooks.digits] == pressed


async def test_expired_or_unknown_warning_gets_an_apology(hooks: Hooks) -> None:
    """A call whose script is gone is told so and hung up on, instead of hearing a stale or empty warning."""
    status, body = await hooks.post(f"twiml?d={quote('a9:1:voice:r:404', safe='')}", {"CallSid": "CA1"})
    assert status == 200
    root = ET.fromstring(body)
    assert [v.tag for v in root] == ["Say", "Hangup"]
    assert root[0].text == "抱歉，这条预警已失效。再见。"


async def test_forged_or_altered_webhooks_are_refused(hooks: Hooks) -> None:
    """A wrong signing key, a parameter changed after signing, or no signature: 403 and no callback runs."""
    route = f"status?d={quote(KEY, safe='')}&n=1"
    params = {"CallSid": "CA1", "CallStatus": "completed"}
    assert (await hooks.post(route, params, token="not-the-auth-token"))[0] == 403
    assert (await hooks.post(route, {**params, "CallStatus": "busy"}, signed=params))[0] == 403
    gather = f"gather?d={quote(KEY, safe='')}"
    assert (await hooks.post(gather, {"Digits": "1"}, token="forged"))[0] == 403
    assert (await hooks.post(gather, {"Digits": "2"}, signed={"Digits": "1"}))[0] == 403
    async with hooks.session.post(f"{hooks.voice_url}/{route}", data=params) as response:
        assert response.status == 403
    assert (hooks.statuses, hooks.digits) == ([], [])
    assert (await hooks.post(route, params))[0] == 204  # the same request, rightly signed, is taken
    assert hooks.call_statuses() == ["completed"]


async def test_replayed_webhooks_are_answered_but_counted_once(hooks: Hooks) -> None:
    """A repeated idempotency token gets the same answer but runs no callback again; a new token does."""
    route = f"status?d={quote(KEY, safe='')}&n=1"
    params = {"CallSid": "CA1", "CallStatus": "ringing"}
    token = str(uuid.uuid4())
    assert (await hooks.post(route, params, idempotency=token))[0] == 204
    assert (await hooks.post(route, params, idempotency=token))[0] == 204
    assert hooks.call_statuses() == ["ringing"]
    assert (await hooks.post(route, params, idempotency=str(uuid.uuid4())))[0] == 204
    assert hooks.call_statuses() == ["ringing", "ringing"]

    gather = f"gather?d={quote(KEY, safe='')}"
    first = await hooks.post(gather, {"Digits": "1"}, idempotency=token + "-g")
    again = await hooks.post(gather, {"Digits": "1"}, idempotency=token + "-g")
    assert first == again and first[0] == 200 and THANKS in first[1]
    assert hooks.digits == [(KEY, "1")]


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("twiml?d=no-colons", {}),
        ("gather?d=a1:x:voice:r:1", {"Digits": "1"}),
        ("gather", {"Digits": "1"}),
        ("status?d=a1%3A1%3Avoice%3Ar%3A1&n=0", {"CallStatus": "completed"}),
        ("status?d=a1%3A1%3Avoice%3Ar%3A1&n=%C2%B2", {"CallStatus": "completed"}),
        ("status?d=a1%3A1%3Avoice%3Ar%3A1&n=1", {"CallStatus": "exploded"}),
    ],
)
async def test_malformed_webhooks_are_400(hooks: Hooks, route: str, params: dict[str, str]) -> None:
    """A signed webhook with a malformed delivery key, attempt number or call status is 400 and runs nothing."""
    status, _ = await hooks.post(route, params)
    assert status == 400
    assert (hooks.statuses, hooks.digits) == ([], [])


async def test_rate_limited_call_is_transient_with_retry_after(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """A 429 (20429) from the Calls API is transient and carries the provider's Retry-After seconds."""
    sandbox.set_faults(rate_limit_rate=1.0, retry_after=7)
    channel = await make_channel()
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.deliver(message())
    assert caught.value.retry_after == 7.0
    [result] = await channel.send([message()])
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 7.0)
    assert sandbox.calls == []


async def test_hang_after_sending_is_ambiguous(make_channel: ChannelFactory, sandbox: TwilioSandbox) -> None:
    """A create written but never answered within voice.timeout is ambiguous — and the call was placed."""
    sandbox.set_faults(hang_rate=1.0)
    channel = await make_channel(timeout=0.5)
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.AMBIGUOUS
    assert len(sandbox.calls) == 1  # why an ambiguous call must never be placed again blindly
    await sandbox.drain(within=20)


async def test_refused_number_is_permanent(make_channel: ChannelFactory) -> None:
    """A number Twilio calls invalid (21211) fails permanently."""
    channel = await make_channel()
    with pytest.raises(PermanentDeliveryError, match="21211"):
        await channel.deliver(message(to="+15005550001"))


async def test_check_fetches_the_account(make_channel: ChannelFactory) -> None:
    """`check()` passes with the sandbox's credentials and is transient with wrong ones."""
    await (await make_channel()).check()
    with pytest.raises(TransientDeliveryError):
        await (await make_channel(auth_token="wrong")).check()


# ---- the sandbox's Calls API on its own ----


async def create_call(sandbox_url: str, form: Mapping[str, str | list[str]]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox_url + CALLS, data=_pairs(form), headers=AUTH) as response,
    ):
        return response.status, await response.json()


def _pairs(form: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, vs in form.items() for v in ([vs] if isinstance(vs, str) else vs)]


async def test_sandbox_answers_a_twilio_shaped_call(sandbox: TwilioSandbox, sandbox_url: str) -> None:
    """A valid create is 201 with Twilio's Call resource; `GET …/Calls/{sid}.json` fetches it; unknown is 404."""
    status, body = await create_call(
        sandbox_url, {"To": TO, "From": SANDBOX_FROM, "Url": "http://127.0.0.1:9/twiml", "Timeout": "15"}
    )
    assert status == 201
    assert re.fullmatch(r"CA[0-9a-f]{32}", body["sid"])
    assert (body["status"], body["direction"], body["to"], body["from"]) == (
        "queued",
        "outbound-api",
        TO,
        SANDBOX_FROM,
    )
    assert (body["account_sid"], body["api_version"], body["price"]) == (
        SANDBOX_ACCOUNT_SID,
        "2010-04-01",
        None,
    )
    assert parsedate_to_datetime(body["date_created"]).utcoffset() is not None
    assert body["uri"] == f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls/{body['sid']}.json"
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(sandbox_url + body["uri"]) as response:
            assert response.status == 200
            assert (await response.json())["sid"] == body["sid"]
        unknown = CALLS.replace(".json", "/CA" + "0" * 32 + ".json")
        async with session.get(sandbox_url + unknown) as response:
            assert (response.status, (await response.json())["code"]) == (404, 20404)
    await sandbox.drain(within=20)
    assert sandbox.call(body["sid"]).error_code == 11205  # nothing listens at the Url


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"To": ""}, 21201),
        ({"To": "13800138000"}, 21211),
        ({"To": "+15005550001"}, 21211),
        ({"From": ""}, 21213),
        ({"From": "warning"}, 21212),
        ({"From": "+15005550007"}, 21210),
        ({"Url": ""}, 21205),
        ({"Url": "ftp://example.cn/twiml"}, 21205),
        ({"Method": "PUT"}, 21209),
        ({"StatusCallback": "not a url"}, 21609),
        ({"StatusCallbackEvent": ["initiated", "exploded"]}, 21626),
        ({"Timeout": "601"}, 21208),
    ],
)
async def test_sandbox_refuses_invalid_calls_with_twilio_codes(
    sandbox: TwilioSandbox, sandbox_url: str, change: dict[str, str | list[str]], code: int
) -> None:
    """Each invalid create is answered 400 with its Twilio code, and no call is placed."""
    form = {"To": TO, "From": SANDBOX_FROM, "Url": "http://127.0.0.1:9/twiml", **change}
    status, body = await create_call(sandbox_url, form)
    assert (status, body["code"]) == (400, code)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert sandbox.calls == []


async def test_sandbox_follows_get_twiml_and_relative_gather_actions(
    sandbox: TwilioSandbox, sandbox_url: str
) -> None:
    """With Method GET the TwiML request is signed over the URL with its query; a relative action is resolved."""
    seen: list[tuple[str, bool]] = []
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)

    async def start(request: web.Request) -> web.Response:
        url = f"http://127.0.0.1:{port}{request.path_qs}"
        seen.append(
            (
                request.query.get("CallStatus", ""),
                validator.validate(url, {}, request.headers["X-Twilio-Signature"]),
            )
        )
        return web.Response(
            text='<Response><Gather action="next?step=2"><Say>hi</Say></Gather><Say>none</Say></Response>',
            content_type="text/xml",
        )

    async def next_step(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = f"http://127.0.0.1:{port}{request.path_qs}"
        seen.append((form["Digits"], validator.validate(url, form, request.headers["X-Twilio-Signature"])))
        return web.Response(text="<Response><Say>bye</Say><Hangup/><Say>never</Say></Response>")

    app = web.Application()
    app.router.add_get("/calls/start", start)
    app.router.add_post("/calls/next", next_step)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        status, body = await create_call(
            sandbox_url,
            {"To": TO, "From": SANDBOX_FROM, "Url": f"http://127.0.0.1:{port}/calls/start", "Method": "GET"},
        )
        assert status == 201
        await sandbox.drain(within=20)
    finally:
        await runner.cleanup()
    assert seen == [("in-progress", True), ("1", True)]
    call = sandbox.call(body["sid"])
    assert (call.spoken, call.digits, call.status, call.callbacks) == (["hi", "bye"], ["1"], "completed", [])


async def test_sandbox_ends_calls_with_unreadable_twiml(sandbox: TwilioSandbox, sandbox_url: str) -> None:
    """A TwiML answer that is not a <Response> document ends the call completed with error 12100."""

    async def broken(request: web.Request) -> web.Response:
        return web.Response(text="<!DOCTYPE x [<!ENTITY a 'b'>]><Response>&a;</Response>")

    app = web.Application()
    app.router.add_post("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/broken"
        status, body = await create_call(sandbox_url, {"To": TO, "From": SANDBOX_FROM, "Url": url})
        await sandbox.drain(within=20)
    finally:
        await runner.cleanup()
    call = sandbox.call(body["sid"])
    assert (status, call.status, call.error_code, call.spoken) == (201, "completed", 12100, [])


async def test_sandbox_callee_knobs_over_http(sandbox: TwilioSandbox, sandbox_url: str) -> None:
    """`POST /_sandbox/callees` changes known knobs and answers 400, changing nothing, for unknown or bad ones."""
    async with aiohttp.ClientSession(headers=AUTH) as session:
        url = sandbox_url + "/_sandbox/callees"
        for bad in ({"bussy": [TO]}, {"busy": TO}, {"press": {TO: "x"}}, {"answer_rate": 2}):
            async with session.post(url, json=bad) as response:
                assert response.status == 400
        async with session.post(url, json={"busy": [TO], "press": {SILENT: "9"}}) as response:
            assert response.status == 200
        async with session.get(url) as response:
            knobs = await response.json()
    assert (knobs["busy"], knobs["press"], knobs["no_answer"]) == ([TO], {SILENT: "9"}, [NO_ANSWER])
    assert TO in sandbox.callees.busy
