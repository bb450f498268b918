"""Probing the whole service over real HTTP as an attacker or a careless client would: bad bodies on the
API, the cadre page and the webhooks are 4xx with our error body (never 500); the CAP route without a
token is 200 only for a public alert, 401 otherwise; a viewer's task lists carry no signed links."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers, free_port, start_app
from warning.broadcast import AlertRequest
from warning.config import MqttSettings, Settings
from warning.links import CADRE, link_expiry
from warning.model import Alert, Level
from warning.store import Store
from warning.users import Users
from warning.web.app import BROADCASTER, STORE, WECHAT_TOKEN, build_app
from warning.web.openapi import ERROR_CODES
from warning.web.signatures import wechat_signature

VILLAGE = "331099101201"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Service:
    app: web.Application
    base: str
    tokens: dict[str, str]
    actual: Alert
    drill: Alert


def request(*, exercise: bool = False) -> AlertRequest:
    return AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(VILLAGE,),
        headline="台风将于今夜登陆",
        instruction="请立即转移到村委会。",
        expires=datetime.now(UTC) + timedelta(hours=2),
        audiences=("vulnerable",),
        exercise=exercise,
    )


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service (no channel workers) on a loopback port, the sample county, an Actual alert
    and a drill, and a token per role."""
    port = free_port()
    base = Settings()
    settings = replace(
        base,
        server=replace(base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"),
        redis=replace(
            base.redis, url=servers.redis_url, namespace=sample_store.keys.namespace, allow_volatile=True
        ),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
    )
    app = build_app(settings, channels=[])
    runner = await start_app(app, port)
    try:
        users = Users(app[STORE].redis, app[STORE].keys)
        tokens = {role: await users.add(f"u-{role}", role) for role in ("viewer", "operator", "approver")}
        actual, _ = await app[BROADCASTER].issue(request())
        drill, _ = await app[BROADCASTER].issue(request(exercise=True))
        yield Service(app, settings.server.base_url, tokens, actual, drill)
    finally:
        await runner.cleanup()


async def answer(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, Any]:
    """(status, parsed JSON error body or None) — asserting that an error is our error body."""
    async with session.request(method, url, data=body, headers=headers) as response:
        raw = await response.read()
        if response.status < 400:
            return response.status, None
        assert response.content_type == JSON, (url, response.status, raw[:200])
        document = await response.json()
        error = document["error"]
        assert error["code"] in ERROR_CODES and error["message"], document
        return response.status, error


GOOD = {"event": "台风", "level": "orange", "areas": [VILLAGE], "headline": "台风", "instruction": "转移"}


def encoded(**changes: Any) -> bytes:
    return json.dumps(GOOD | changes, ensure_ascii=False).encode()


# (what, body, content type, status, code, field or a word the message must contain)
API_PROBES: list[tuple[str, bytes, str | None, int, str, str]] = [
    ("not UTF-8", '{"event": "台风"}'.encode("gbk"), JSON, 400, "invalid_body", "UTF-8"),
    ("declared GBK", encoded(), f"{JSON}; charset=gbk", 400, "invalid_body", "UTF-8"),
    ("unknown charset", encoded(), f"{JSON}; charset=bogus", 400, "invalid_body", "UTF-8"),
    ("empty", b"", JSON, 400, "invalid_json", ""),
    ("malformed", b'{"event": ', JSON, 400, "invalid_json", ""),
    ("not an object", b"[1, 2]", JSON, 400, "invalid_json", ""),
    ("a string", b'"hello"', JSON, 400, "invalid_json", ""),
    ("huge integer", b'{"level": ' + b"9" * 5000 + b"}", JSON, 400, "invalid_json", ""),
    ("deep nesting", b"[" * 100_000, JSON, 400, "invalid_json", ""),
    ("NaN", b'{"event": NaN}', JSON, 400, "invalid_json", ""),
    ("huge float", encoded(level=1e308), JSON, 400, "invalid", ""),
    ("level a number", encoded(level=5), JSON, 400, "invalid", ""),
    ("event a number", encoded(event=1), JSON, 400, "invalid", "event"),
    ("areas of numbers", encoded(areas=[1]), JSON, 400, "invalid", "areas"),
    ("areas an object", encoded(areas={"a": 1}), JSON, 400, "invalid", "areas"),
    ("exercise a string", encoded(exercise="yes"), JSON, 400, "invalid", "exercise"),
    ("expires a number", encoded(expires=10**30), JSON, 400, "invalid", "expires"),
    ("expires a list", encoded(expires=[1]), JSON, 400, "invalid", "expires"),
    ("audiences a string", encoded(audiences="vulnerable"), JSON, 400, "invalid", "audiences"),
    ("unknown field", encoded(severity="x"), JSON, 400, "invalid", "severity"),
    ("plain text", encoded(), "text/plain", 415, "unsupported_media_type", "application/json"),
    ("a form", b"event=x", FORM, 415, "unsupported_media_type", "application/json"),
    ("CAP not UTF-8", "<alert>台风</alert>".encode("gbk"), "application/cap+xml", 400, "invalid_cap", ""),
    ("over 1 MiB", b'{"event": "' + b"x" * (1024 * 1024 + 10) + b'"}', JSON, 413, "too_large", ""),
]


@pytest.mark.parametrize(("what", "body", "content_type", "status", "code", "hint"), API_PROBES)
async def test_bad_alert_bodies_are_4xx_with_our_error(
    service: Service, what: str, body: bytes, content_type: str | None, status: int, code: str, hint: str
) -> None:
    """Each malformed POST /api/v1/alerts (and /update) answers the documented 4xx and error code."""
    headers = {"Authorization": f"Bearer {service.tokens['operator']}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/alerts", f"/api/v1/alerts/{service.actual.id}/update"):
            if path.endswith("/update") and content_type == "application/cap+xml":
                continue  # updates are JSON only
            got, error = await answer(session, "POST", service.base + path, body, headers)
            assert (got, error["code"]) == (status, code), (what, path, error)
            assert hint in error["message"] or error.get("field") == hint, (what, error)


async def test_no_content_type_is_read_as_json(service: Service) -> None:
    """A JSON body without a Content-Type is still read (a field error, not a 415 or a 500)."""
    headers = {"Authorization": f"Bearer {service.tokens['operator']}"}
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session:
        status, error = await answer(
            session, "POST", f"{service.base}/api/v1/alerts", encoded(color="red"), headers
        )
    assert status == 400 and error["field"] == "color"


async def test_cap_without_a_token(service: Service) -> None:
    """Anonymous CAP: 200 for a public alert; 401 for a drill, an unknown id and `/api/v1/alerts/cap`
    (once a 500); with a token an unknown id is 404."""
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{service.base}/api/v1/alerts/{service.actual.id}/cap") as response:
            assert response.status == 200 and response.content_type == "application/cap+xml"
            assert service.actual.id in await response.text()
        for path in (
            f"/api/v1/alerts/{service.drill.id}/cap",
            "/api/v1/alerts/nope/cap",
            "/api/v1/alerts/cap",
        ):
            status, error = await answer(anonymous, "GET", service.base + path, None, {})
            assert (status, error["code"]) == (401, "unauthorized"), path
        bad_token = {"Authorization": "Bearer not-a-token"}
        status, _ = await answer(anonymous, "GET", f"{service.base}/api/v1/alerts/nope/cap", None, bad_token)
        assert status == 401
    viewer = {"Authorization": f"Bearer {service.tokens['viewer']}"}
    async with aiohttp.ClientSession(headers=viewer) as session:
        async with session.get(f"{service.base}/api/v1/alerts/{service.drill.id}/cap") as response:
            assert response.status == 200  # a token sees any alert
        status, error = await answer(session, "GET", f"{service.base}/api/v1/alerts/nope/cap", None, {})
        assert (status, error["code"]) == (404, "not_found")


async def test_viewer_task_lists_carry_no_links(service: Service) -> None:
    """A viewer sees each cadre's name and counts but no signed link; operators and approvers get links."""
    url = f"{service.base}/api/v1/alerts/{service.actual.id}/tasks"
    seen: dict[str, list[dict[str, Any]]] = {}
    async with aiohttp.ClientSession() as session:
        for role in ("viewer", "operator", "approver"):
            async with session.get(url, headers={"Authorization": f"Bearer {service.tokens[role]}"}) as r:
                assert r.status == 200
                seen[role] = (await r.json())["tasks"]
    assert seen["viewer"] and all(
        "link" not in task and task["name"] and task["total"] for task in seen["viewer"]
    )
    assert all("/c/" not in str(task) for task in seen["viewer"])
    for role in ("operator", "approver"):
        assert all(task["link"].startswith(f"{service.base}/c/") for task in seen[role])
        assert [t["contact_id"] for t in seen[role]] == [t["contact_id"] for t in seen["viewer"]]


async def test_cadre_confirm_with_a_bad_body(service: Service) -> None:
    """A valid cadre link with a non-UTF-8, wrongly typed or unknown-charset form is 400/415, never 500."""
    broadcaster = service.app[BROADCASTER]
    [contact, *_] = await broadcaster.reach.cadres(service.actual.id)
    token = await broadcaster.links.token(
        CADRE, service.actual.id, contact, link_expiry(service.actual.sent, service.actual.expires)
    )
    url = f"{service.base}/c/{token}/confirm"
    probes = [
        (b"resident_id=\xff&outcome=reached", FORM, 400, "invalid_body"),
        (b"resident_id=%FF&outcome=reached", FORM, 400, "invalid_body"),
        (b"resident_id=x", f"{FORM}; charset=bogus", 400, "invalid_body"),
        (b'{"resident_id": "x"}', JSON, 415, "unsupported_media_type"),
        (b"--b\r\nbroken", "multipart/form-data; boundary=b", 415, "unsupported_media_type"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, content_type, status, code in probes:
            got, error = await answer(session, "POST", url, body, {"Content-Type": content_type})
            assert (got, error["code"]) == (status, code), body
        # A good form still reaches the page (here: an outcome that is not one, 400 HTML).
        async with session.post(url, data={"resident_id": "x", "outcome": "gone"}) as response:
            assert response.status == 400 and response.content_type == "text/html"


HOOKS = (
    "/hooks/twilio/status?d=a:1:sms:r:x",
    "/hooks/twilio/sms",
    "/hooks/twilio/voice/twiml?d=a:1:voice:r:x",
)


async def test_webhooks_refuse_bad_bodies_before_the_signature(service: Service) -> None:
    """Twilio hooks: an unreadable body is 400/415 with our error body; a readable one with a bad
    signature is still 403; WeChat's signed event with an unknown XML encoding is 400, not 500."""
    probes = [
        (b"MessageStatus=\xff", FORM, 400),
        (b"Body=%FF%FE", FORM, 400),
        (b"a=b", f"{FORM}; charset=bogus", 400),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 415),
        ("Body=台风".encode("gbk"), FORM, 400),
    ]
    signed = {"X-Twilio-Signature": "forged"}
    async with aiohttp.ClientSession() as session:
        for path in HOOKS:
            for body, content_type, status in probes:
                got, error = await answer(
                    session, "POST", service.base + path, body, signed | {"Content-Type": content_type}
                )
                assert got == status, (path, body, error)
                assert "UTF-8" in error["message"] or "Content-Type" in error["message"], error
            async with session.post(
                service.base + path, data={"MessageStatus": "delivered", "Body": "收到"}, headers=signed
            ) as response:
                assert response.status == 403, path
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        query = {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": wechat_signature(service.app[WECHAT_TOKEN], timestamp, nonce),
        }
        async with session.post(
            f"{service.base}/hooks/wechat",
            params=query,
            data=b'<?xml version="1.0" encoding="bogus"?><xml/>',
            headers={"Content-Type": "text/xml"},
        ) as response:
            assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_body"
