"""The SMS channel against the Twilio sandbox over loopback HTTP: requests, error mapping, limits, expiry."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from warning.channels.base import EXPIRY_MARGIN, Message, Outcome
from warning.channels.sms import SmsChannel, _validity_period
from warning.config import SmsSettings, TwilioSettings
from warning.errors import PermanentDeliveryError, TransientDeliveryError
from warning.model import Level
from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.sandbox.twilio_faults import Faults

TO = "+8613800138000"
HOOK = "http://127.0.0.1:9/hooks/twilio/status"  # nothing listens: callbacks are not the point here

ChannelFactory = Callable[..., SmsChannel]


def message(n: int = 1, *, to: str = TO, expires: datetime | None = None, text: str = "") -> Message:
    return Message(
        key=f"a1:1:sms:r:{n}",
        recipient=f"r:{n}",
        address=to,
        text=text or f"【演练】台风橙色预警 {n}：请立即转移到安置点。",
        alert_id="a1",
        version=1,
        level=Level.ORANGE,
        exercise=True,
        expires=expires,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox() -> TwilioSandbox:
    return TwilioSandbox(seed=3, faults=Faults(callback_delay=0.01))


@pytest.fixture
async def sandbox_url(sandbox: TwilioSandbox) -> AsyncIterator[str]:
    async with run_twilio_sandbox(sandbox) as url:
        yield url


@pytest.fixture
async def make_channel(sandbox_url: str) -> AsyncIterator[ChannelFactory]:
    """Build started channels pointed at the sandbox; every one is closed after the test."""
    opened: list[SmsChannel] = []

    def make(
        *,
        base_url: str = sandbox_url,
        auth_token: str = SANDBOX_AUTH_TOKEN,
        callback: str = HOOK,
        **sms: float,
    ) -> SmsChannel:
        twilio = TwilioSettings(SANDBOX_ACCOUNT_SID, auth_token, SANDBOX_FROM, base_url)
        channel = SmsChannel(twilio, SmsSettings(**sms), status_callback_url=callback)  # type: ignore[arg-type]
        opened.append(channel)
        return channel

    yield make
    for channel in opened:
        await channel.aclose()


async def test_send_reaches_the_sandbox_with_exact_fields(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """A sent message arrives with exactly its To, From, Body, ValidityPeriod and keyed StatusCallback."""
    channel = make_channel()
    await channel.start()
    expires = datetime.now(UTC) + timedelta(minutes=10)
    [result] = await channel.send([message(expires=expires)])
    assert result.outcome is Outcome.SENT
    [record] = sandbox.messages
    assert result.provider_id == record.sid
    assert (record.to, record.from_, record.body) == (TO, SANDBOX_FROM, message().text)
    assert record.validity_period is not None and 597 <= record.validity_period <= 600
    assert record.status_callback == HOOK + "?d=" + quote("a1:1:sms:r:1", safe="")


@pytest.mark.parametrize(
    ("expires_in", "validity"),
    [(None, None), (timedelta(days=2), 36000), (EXPIRY_MARGIN + timedelta(seconds=3), 4)],
)
async def test_validity_period_is_clamped_or_omitted(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, expires_in: timedelta | None, validity: int | None
) -> None:
    """ValidityPeriod is omitted without an expiry, the whole seconds left otherwise, at most Twilio's 36000
    (and at least its 1, for an expiry a moment away: never sent, as it is within the expiry margin)."""
    channel = make_channel()
    await channel.start()
    expires = datetime.now(UTC) + expires_in if expires_in else None
    [result] = await channel.send([message(expires=expires)])
    assert result.outcome is Outcome.SENT
    assert sandbox.messages[0].validity_period == validity
    assert _validity_period(datetime.now(UTC) + timedelta(milliseconds=300)) == 1


@pytest.mark.parametrize(
    ("to", "code"), [("13800138000", 21211), ("+15005550004", 21610), ("+15005550009", 21614)]
)
async def test_refused_recipients_are_permanent(
    make_channel: ChannelFactory, to: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid, unsubscribed and non-mobile numbers fail permanently, and the log shows only a masked number."""
    channel = make_channel()
    await channel.start()
    with caplog.at_level(logging.INFO, logger="warning.channels.sms"):
        [result] = await channel.send([message(to=to)])
    assert result.outcome is Outcome.PERMANENT
    assert str(code) in result.detail
    assert to[-8:-4] not in caplog.text  # the middle digits never reach the log
    with pytest.raises(PermanentDeliveryError):
        await channel.deliver(message(to=to))


@pytest.mark.parametrize("text", ["", "长" * 1601])
async def test_rejected_bodies_are_permanent(make_channel: ChannelFactory, text: str) -> None:
    """An empty body (21602) or one over 1600 characters (21617) fails permanently."""
    channel = make_channel()
    await channel.start()
    bad = Message("k", "r:1", TO, text, "a1", 1, Level.RED, False, None)
    [result] = await channel.send([bad])
    assert result.outcome is Outcome.PERMANENT


async def test_rate_limited_send_is_transient_with_retry_after(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """A 429 (20429) is transient and carries the provider's Retry-After seconds."""
    sandbox.set_faults(rate_limit_rate=1.0, retry_after=7)
    channel = make_channel()
    await channel.start()
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.deliver(message())
    assert caught.value.retry_after == 7.0
    [result] = await channel.send([message()])
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 7.0)


async def test_server_errors_are_transient(make_channel: ChannelFactory, sandbox: TwilioSandbox) -> None:
    """500 and 503 answers are transient, and nothing is queued."""
    sandbox.set_faults(error_rate=1.0)
    channel = make_channel()
    await channel.start()
    results = await channel.send([message(n) for n in range(8)])
    assert {r.outcome for r in results} == {Outcome.TRANSIENT}
    assert {"Twilio HTTP 500 code 20500", "Twilio HTTP 503 code 20503"} == {r.detail for r in results}
    assert sandbox.messages == []


async def test_hang_after_sending_is_ambiguous(make_channel: ChannelFactory, sandbox: TwilioSandbox) -> None:
    """A request written but never answered within sms.timeout is ambiguous — and the provider did queue it."""
    sandbox.set_faults(hang_rate=1.0)
    channel = make_channel(timeout=0.4)
    await channel.start()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.AMBIGUOUS
    assert len(sandbox.messages) == 1  # why an ambiguous send must never be blindly resent


async def test_connection_refused_is_transient(make_channel: ChannelFactory) -> None:
    """When nothing listens at base_url the request never left, so the failure is transient."""
    channel = make_channel(base_url=f"http://127.0.0.1:{free_port()}")
    await channel.start()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.TRANSIENT
    with pytest.raises(TransientDeliveryError):
        await channel.check()


async def test_rejected_credentials_pause_and_log_loudly(
    make_channel: ChannelFactory, sandbox: TwilioSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 (20003) is transient with retry_after 60 and an error log, never a dead letter."""
    channel = make_channel(auth_token="wrong")
    await channel.start()
    with caplog.at_level(logging.ERROR, logger="warning.channels.sms"):
        [result] = await channel.send([message()])
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 60.0)
    assert any(r.levelno == logging.ERROR and "20003" in r.getMessage() for r in caplog.records)
    with pytest.raises(TransientDeliveryError):
        await channel.check()


async def test_check_fetches_the_account(make_channel: ChannelFactory) -> None:
    """`check()` passes when the account resource answers with our credentials."""
    channel = make_channel()
    await channel.start()
    await channel.check()


async def test_concurrency_respects_max_in_flight(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """With max_in_flight 4 the sandbox never sees more than 4 concurrent requests, but does see several."""
    sandbox.set_faults(latency=0.05)
    channel = make_channel(max_in_flight=4, connector_limit=100)
    await channel.start()
    results = await channel.send([message(n) for n in range(24)])
    assert all(r.outcome is Outcome.SENT for r in results)
    assert 2 <= sandbox.peak_in_flight <= 4


async def test_concurrency_respects_connector_limit(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """With connector_limit 3 the HTTP session opens at most 3 connections however many sends are in flight."""
    sandbox.set_faults(latency=0.05)
    channel = make_channel(max_in_flight=50, connector_limit=3)
    await channel.start()
    results = await channel.send([message(n) for n in range(24)])
    assert all(r.outcome is Outcome.SENT for r in results)
    assert sandbox.peak_in_flight == 3


async def test_paced_sends_never_hit_the_provider_cap(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """Sends paced under max_per_second are all accepted; bursting past it is answered 429 and counted."""
    sandbox.set_faults(max_per_second=10)
    channel = make_channel()
    await channel.start()
    results = await channel.send([message(n) for n in range(15)])
    assert sum(r.outcome is Outcome.TRANSIENT for r in results) == 5 == sandbox.capped
    await asyncio.sleep(1.05)
    for n in range(10):  # 10 per second, spread out: under the cap
        [result] = await channel.send([message(100 + n)])
        assert result.outcome is Outcome.SENT
        await asyncio.sleep(0.1)
    assert sandbox.capped == 5


async def test_nothing_is_sent_after_expiry(make_channel: ChannelFactory, sandbox: TwilioSandbox) -> None:
    """Messages whose alert expires while they wait for a slot are reported expired and never reach Twilio."""
    sandbox.set_faults(latency=0.15)
    channel = make_channel(max_in_flight=1)
    await channel.start()
    expires = datetime.now(UTC) + EXPIRY_MARGIN + timedelta(seconds=0.4)
    results = await channel.send([message(n, expires=expires) for n in range(6)])
    outcomes = [r.outcome for r in results]
    assert Outcome.SENT in outcomes and Outcome.EXPIRED in outcomes
    assert outcomes == sorted(outcomes, key=lambda o: o is Outcome.EXPIRED)  # sent first, then expired
    assert len(sandbox.messages) == outcomes.count(Outcome.SENT)
    # Not only before `expires`: none is handed over within the margin kept for its way to Twilio.
    last_call = expires - EXPIRY_MARGIN + timedelta(seconds=0.1)  # `received`: on arrival, before latency
    assert all(m.received is not None and m.received < last_call for m in sandbox.messages)
    [late] = await channel.send([message(99, expires=datetime.now(UTC) - timedelta(seconds=1))])
    assert late.outcome is Outcome.EXPIRED
    assert sandbox.requests == outcomes.count(Outcome.SENT)


async def test_status_callbacks_reach_the_hook_signed(
    make_channel: ChannelFactory, sandbox: TwilioSandbox
) -> None:
    """The keyed status callback URL receives sent and delivered, signed so twilio's validator accepts them."""
    received: list[tuple[str, dict[str, str], str]] = []

    async def hook(request: web.Request) -> web.Response:
        form = await request.post()
        received.append(
            (request.query["d"], {k: str(v) for k, v in form.items()}, request.headers["X-Twilio-Signature"])
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/twilio/status", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        callback = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/twilio/status"
        channel = make_channel(callback=callback)
        await channel.start()
        [result] = await channel.send([message()])
        await sandbox.drain()
    finally:
        await runner.cleanup()
    assert [(key, params["MessageStatus"]) for key, params, _ in received] == [
        ("a1:1:sms:r:1", "sent"),
        ("a1:1:sms:r:1", "delivered"),
    ]
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)
    signed_url = sandbox.message(result.provider_id).status_callback
    for _, params, signature in received:
        assert params["MessageSid"] == result.provider_id
        assert validator.validate(signed_url, params, signature)
        assert not validator.validate(signed_url, {**params, "To": "+8613900139000"}, signature)
