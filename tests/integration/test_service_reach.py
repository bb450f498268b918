"""The whole service on a loopback port: a vulnerable resident's call through the Twilio sandbox, the
TwiML and keypress webhooks, and press 1 acknowledging them in the reach ledger and the reach API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers, free_port, start_app
from tests.integration.conftest import County
from warning.broadcast import AlertRequest
from warning.config import MqttSettings, Settings
from warning.model import Level
from warning.store import Store
from warning.users import Users
from warning.web.app import BROADCASTER, ENGINE, STORE, build_app

VILLAGE = "331099101203"
VULNERABLE = {"elderly", "lives_alone", "no_smartphone", "disabled"}


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[tuple[web.Application, str]]:
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
        voice=replace(base.voice, retry_after=0.2),
    )
    app = build_app(settings, channels=["sms", "voice"])
    runner = await start_app(app, port)
    try:
        yield app, settings.server.base_url
    finally:
        await runner.cleanup()


async def test_press_one_acknowledges_through_the_whole_service(
    service: tuple[web.Application, str], county: County
) -> None:
    app, base_url = service
    sandbox = app[ENGINE].sandbox
    assert sandbox is not None
    people = [
        r for r in county.residents if r["village"] == VILLAGE and VULNERABLE & set(r["tags"].split(";"))
    ]
    with_phone = [p for p in people if p["phone"]]
    silent = with_phone[0]["phone"]
    busy = with_phone[1]["phone"]
    sandbox.set_callees(silent={silent}, busy={busy})
    alert, _ = await app[BROADCASTER].issue(
        AlertRequest(
            event="台风",
            level=Level.RED,
            areas=(VILLAGE,),
            headline="台风将于今夜登陆",
            instruction="请低洼地区群众立即转移到村委会避灾点",
            expires=datetime.now(UTC) + timedelta(hours=2),
            audiences=("vulnerable",),
        )
    )
    reach = app[BROADCASTER].reach
    deadline = time.monotonic() + 60
    while (await reach.counts(alert.id)).scope("must")["acknowledged"] < len(with_phone) - 2:
        assert time.monotonic() < deadline, (await reach.counts(alert.id)).scope("must")
        await asyncio.sleep(0.2)
    # Everyone who pressed 1 is acknowledged; the silent one answered (delivered) without pressing; the busy
    # line was called voice.max_attempts times, then failed.
    while True:
        states = await app[BROADCASTER].deliveries.states(alert.id, alert.version, "voice")
        if (
            states.get(f"r:{with_phone[1]['id']}") == "failed"
            and states.get(f"r:{with_phone[0]['id']}") == "delivered"
        ):
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.2)
    calls_to_busy = [c for c in sandbox.calls if c.to == busy]
    assert len(calls_to_busy) == app[BROADCASTER].settings.voice.max_attempts
    for person in with_phone[2:]:
        entry = await reach.entry(alert.id, person["id"])
        assert entry is not None and entry.state == "acknowledged", person
    assert (await reach.entry(alert.id, with_phone[0]["id"])).state == "notified"  # type: ignore[union-attr]
    # The reach API says the same (an operator: the task links are for operators and up).
    token = await Users(app[STORE].redis, app[STORE].keys).add("值班员", "operator")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"{base_url}/api/v1/alerts/{alert.id}/reach") as response:
            assert response.status == 200
            view = await response.json()
        async with session.get(f"{base_url}/api/v1/alerts/{alert.id}/reach?format=csv") as response:
            assert response.status == 200 and "text/csv" in response.headers["Content-Type"]
        async with session.get(f"{base_url}/api/v1/alerts/{alert.id}/tasks") as response:
            tasks = await response.json()
    assert view["must_reach"]["total"] == len(people)
    assert view["must_reach"]["acknowledged"] == len(with_phone) - 2
    unreached = {u["resident_id"] for u in view["unreached"]}
    assert unreached == {p["id"] for p in people} - {p["id"] for p in with_phone[2:]}
    assert all(
        u["responsible"]["contact_id"] and u["responsible"]["role"] == "cadre" for u in view["unreached"]
    )
    [task] = tasks["tasks"]
    assert task["total"] == len(people) and task["link"].startswith(f"{base_url}/c/")
