"""The Twilio sandbox over real HTTP: resource shapes, error codes, signed callbacks, faults and the cap."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.sandbox.twilio_faults import Faults

MESSAGES = f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json"


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


AUTH = basic(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN)
TO = "+8613800138000"


@dataclass
class Receiver:
    """A status-callback endpoint that records what it was sent and answers `status`."""

    url: str
    calls: list[tuple[dict[str, str], str]] = field(default_factory=list)
    status: int = 204


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        form = await request.post()
        box[0].calls.append(({k: str(v) for k, v in form.items()}, request.headers["X-Twilio-Signature"]))
        return web.Response(status=box[0].status)

    app = web.Application()
    app.router.add_post("/hooks/twilio/status", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.append(Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/twilio/status"))
    yield box[0]
    await runner.cleanup()


@pytest.fixture
def sandbox() -> TwilioSandbox:
    return TwilioSandbox(seed=7, faults=Faults(callback_delay=0.01))


@pytest.fixture
async def api(sandbox: TwilioSandbox) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with run_twilio_sandbox(sandbox) as url, aiohttp.ClientSession() as session:
        yield session, url


async def post(api: tuple[aiohttp.ClientSession, str], form: dict[str, str], **kw: Any) -> tuple[int, Any]:
    session, url = api
    async with session.post(url + MESSAGES, data=form, headers=kw.pop("headers", AUTH), **kw) as response:
        return response.status, await response.json()


async def test_create_answers_a_twilio_shaped_message(api: tuple[aiohttp.ClientSession, str]) -> None:
    """A valid create answers 201 with Twilio's Message resource: SM sid, strings for counts, RFC 2822 dates."""
    status, body = await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "台风橙色预警：请立即转移"})
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["account_sid"] == SANDBOX_ACCOUNT_SID
    assert (body["to"], body["from"], body["status"]) == (TO, SANDBOX_FROM, "queued")
    assert (body["direction"], body["api_version"], body["price"], body["error_code"]) == (
        "outbound-api",
        "2010-04-01",
        None,
        None,
    )
    assert (body["num_segments"], body["num_media"]) == ("1", "0")
    assert parsedate_to_datetime(body["date_created"]).utcoffset() is not None
    assert body["uri"] == f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages/{body['sid']}.json"
    assert body["subresource_uris"]["media"].endswith(f"/Messages/{body['sid']}/Media.json")


async def test_long_chinese_text_counts_ucs2_segments(api: tuple[aiohttp.ClientSession, str]) -> None:
    """A 100-character Chinese body is billed as two UCS-2 segments (67 characters each)."""
    _, body = await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "雨" * 100})
    assert body["num_segments"] == "2"


async def test_wrong_credentials_answer_20003(api: tuple[aiohttp.ClientSession, str]) -> None:
    """A wrong auth token is answered 401 with Twilio's error body, code 20003."""
    status, body = await post(
        api, {"To": TO, "From": SANDBOX_FROM, "Body": "x"}, headers=basic(SANDBOX_ACCOUNT_SID, "nope")
    )
    assert status == 401
    assert body == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "13800138000", "From": SANDBOX_FROM, "Body": "x"}, 21211),
        ({"To": "+15005550001", "From": SANDBOX_FROM, "Body": "x"}, 21211),
        ({"To": TO, "From": SANDBOX_FROM}, 21602),
        ({"To": TO, "From": "not a number!", "Body": "x"}, 21212),
        ({"To": TO, "From": "+15005550007", "Body": "x"}, 21606),
        ({"To": TO, "Body": "x"}, 21603),
        ({"To": "+15005550004", "From": SANDBOX_FROM, "Body": "x"}, 21610),
        ({"To": "+15005550009", "From": SANDBOX_FROM, "Body": "x"}, 21614),
        ({"To": TO, "From": SANDBOX_FROM, "Body": "x" * 1601}, 21617),
        ({"To": TO, "From": SANDBOX_FROM, "Body": "x", "ValidityPeriod": "36001"}, 21624),
        ({"To": TO, "From": SANDBOX_FROM, "Body": "x", "StatusCallback": "ftp://x"}, 21609),
    ],
)
async def test_invalid_requests_answer_twilio_error_codes(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox, form: dict[str, str], code: int
) -> None:
    """Each invalid create is answered 400 with its Twilio code and more_info link, and nothing is queued."""
    status, body = await post(api, form)
    assert (status, body["code"], body["status"]) == (400, code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert sandbox.messages == []
    assert sandbox.requests == 1


async def test_fetch_returns_the_message_and_404_for_unknown(api: tuple[aiohttp.ClientSession, str]) -> None:
    """`GET …/Messages/{sid}.json` returns the resource; an unknown sid is 404 with code 20404."""
    session, url = api
    _, created = await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "x"})
    async with session.get(url + created["uri"], headers=AUTH) as response:
        assert response.status == 200
        assert (await response.json())["sid"] == created["sid"]
    async with session.get(
        url + MESSAGES.replace(".json", "/SM" + "0" * 32 + ".json"), headers=AUTH
    ) as response:
        assert response.status == 404
        assert (await response.json())["code"] == 20404


async def test_account_resource_requires_credentials(api: tuple[aiohttp.ClientSession, str]) -> None:
    """`GET /2010-04-01/Accounts/{sid}.json` answers the account with the right credentials, 401 without."""
    session, url = api
    account = f"{url}/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}.json"
    async with session.get(account, headers=AUTH) as response:
        assert (response.status, (await response.json())["status"]) == (200, "active")
    async with session.get(account) as response:
        assert response.status == 401


async def test_callbacks_are_signed_and_verify_with_request_validator(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox, receiver: Receiver
) -> None:
    """Status callbacks (sent, then delivered) carry an X-Twilio-Signature that twilio's validator accepts."""
    callback = receiver.url + "?d=a1%3A1%3Asms%3Ar%3A42"
    _, created = await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "x", "StatusCallback": callback})
    await sandbox.drain()
    assert [params["MessageStatus"] for params, _ in receiver.calls] == ["sent", "delivered"]
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)
    for params, signature in receiver.calls:
        assert params["MessageSid"] == params["SmsSid"] == created["sid"]
        assert (params["AccountSid"], params["To"], params["From"]) == (SANDBOX_ACCOUNT_SID, TO, SANDBOX_FROM)
        assert params["ApiVersion"] == "2010-04-01" and params["SmsStatus"] == params["MessageStatus"]
        assert validator.validate(callback, params, signature)
        assert not validator.validate(callback, {**params, "MessageStatus": "failed"}, signature)
        assert not validator.validate(receiver.url + "?d=other", params, signature)
    assert sandbox.message(created["sid"]).status == "delivered"


async def test_failure_rate_ends_messages_with_carrier_codes(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox, receiver: Receiver
) -> None:
    """With failure_rate 1 every message ends undelivered or failed with ErrorCode 30003, 30005 or 30006."""
    sandbox.set_faults(failure_rate=1.0)
    for _ in range(6):
        await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "x", "StatusCallback": receiver.url})
    await sandbox.drain()
    finals = [p for p, _ in receiver.calls if p["MessageStatus"] != "sent"]
    assert len(finals) == 6
    assert {p["MessageStatus"] for p in finals} <= {"undelivered", "failed"}
    assert {p["ErrorCode"] for p in finals} <= {"30003", "30005", "30006"}
    assert all(m.error_code in (30003, 30005, 30006) for m in sandbox.messages)


async def test_message_queued_past_its_validity_period_fails_30036(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox
) -> None:
    """A message that waits in the queue longer than its ValidityPeriod fails with 30036 and is never sent."""
    sandbox.set_faults(callback_delay=1.2)
    _, created = await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "x", "ValidityPeriod": "1"})
    await sandbox.drain()
    message = sandbox.message(created["sid"])
    assert (message.status, message.error_code, message.sent) == ("failed", 30036, None)


async def test_rejected_callbacks_are_retried_then_dropped(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox, receiver: Receiver
) -> None:
    """A callback answered 503 is retried three times in all, then dropped and counted."""
    receiver.status = 503
    _, created = await post(
        api, {"To": TO, "From": SANDBOX_FROM, "Body": "x", "StatusCallback": receiver.url}
    )
    await sandbox.drain()
    message = sandbox.message(created["sid"])
    assert len(receiver.calls) == message.callback_attempts == 6  # sent ×3, delivered ×3
    assert message.callbacks_dropped == 2 and sandbox.callbacks_dropped == 2


async def test_rate_limit_fault_answers_429_with_retry_after(api: tuple[aiohttp.ClientSession, str]) -> None:
    """rate_limit_rate 1 answers 429, code 20429, with the configured Retry-After."""
    session, url = api
    async with session.post(
        url + "/_sandbox/faults", json={"rate_limit_rate": 1.0, "retry_after": 4}, headers=AUTH
    ) as response:
        assert response.status == 200
    async with session.post(
        url + MESSAGES, data={"To": TO, "From": SANDBOX_FROM, "Body": "x"}, headers=AUTH
    ) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "4")
        assert (await response.json())["code"] == 20429


async def test_error_fault_answers_twilio_shaped_5xx(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox
) -> None:
    """error_rate 1 answers 500 (20500) or 503 (20503) with Twilio's error body, and queues nothing."""
    sandbox.set_faults(error_rate=1.0)
    answers = [await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "x"}) for _ in range(10)]
    codes = {(status, body["code"]) for status, body in answers}
    assert codes == {(500, 20500), (503, 20503)}
    assert sandbox.messages == []


async def test_faults_endpoint_rejects_unknown_knobs(api: tuple[aiohttp.ClientSession, str]) -> None:
    """`POST /_sandbox/faults` with an unknown knob or an out-of-range rate is 400 and changes nothing."""
    session, url = api
    for change in ({"eror_rate": 0.5}, {"error_rate": 2}):
        async with session.post(url + "/_sandbox/faults", json=change, headers=AUTH) as response:
            assert response.status == 400
    async with session.get(url + "/_sandbox/faults", headers=AUTH) as response:
        assert (await response.json())["error_rate"] == 0.0


async def test_max_per_second_cap_answers_429(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox
) -> None:
    """Beyond `max_per_second` accepted requests in a rolling second, creates are answered 429 (20429)."""
    sandbox.set_faults(max_per_second=5)
    answers = await asyncio.gather(
        *(post(api, {"To": TO, "From": SANDBOX_FROM, "Body": str(i)}) for i in range(8))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] * 5 + [429] * 3
    assert {body["code"] for status, body in answers if status == 429} == {20429}
    assert sandbox.capped == 3 and len(sandbox.messages) == 5


async def test_inspection_lists_messages_and_counts_per_recipient(
    api: tuple[aiohttp.ClientSession, str], sandbox: TwilioSandbox
) -> None:
    """`GET /_sandbox/messages` lists accepted messages; attempts count repeated requests for the same text."""
    session, url = api
    sandbox.set_faults(error_rate=1.0)
    await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "same"})
    sandbox.set_faults(error_rate=0.0)
    await post(api, {"To": TO, "From": SANDBOX_FROM, "Body": "same"})
    async with session.get(url + "/_sandbox/messages", headers=AUTH) as response:
        listed = await response.json()
    assert [(m["to"], m["body"], m["attempts"]) for m in listed] == [(TO, "same", 2)]
    assert sandbox.requests == 2 and sandbox.requests_by_to[TO] == 2


async def test_same_seed_gives_same_sids() -> None:
    """Two sandboxes with the same seed issue the same message sids (drills are reproducible)."""
    sids = []
    for _ in range(2):
        sandbox = TwilioSandbox(seed=42)
        async with run_twilio_sandbox(sandbox) as url, aiohttp.ClientSession() as session:
            await post((session, url), {"To": TO, "From": SANDBOX_FROM, "Body": "x"})
        sids.append(sandbox.messages[0].sid)
    assert sids[0] == sids[1]
