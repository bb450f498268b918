"""API routes of issue 4 on a minimal app: reject a draft, progress as server-sent events, bad limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from warning.broadcast import AlertRequest, Broadcaster
from warning.config import Settings
from warning.model import AlertStatus, Level
from warning.store import Store
from warning.users import Users
from warning.web.api import api_routes, auth_middleware

BROADCASTER = web.AppKey("broadcaster", Broadcaster)
USERS = web.AppKey("users", Users)
BACKGROUND: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("background", set)


@pytest.fixture
async def api(sample_store: Store) -> AsyncIterator[tuple[Broadcaster, str, dict[str, str]]]:
    base = Settings()
    settings = replace(
        base, redis=replace(base.redis, namespace=sample_store.keys.namespace, allow_volatile=True)
    )
    service = Broadcaster(sample_store, settings)
    users = Users(sample_store.redis, sample_store.keys)
    app = web.Application(middlewares=[auth_middleware(USERS)])
    app[BROADCASTER], app[USERS], app[BACKGROUND] = service, users, set()
    app.add_routes(api_routes(BROADCASTER, BACKGROUND))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tokens = {role: await users.add(f"u-{role}", role) for role in ("viewer", "operator", "approver")}
    try:
        yield service, str(server.make_url("")).rstrip("/"), tokens
    finally:
        await server.close()


def request(level: Level = Level.YELLOW) -> AlertRequest:
    return AlertRequest(
        event="暴雨",
        level=level,
        areas=("331099101201",),
        headline="暴雨",
        instruction="请低洼地区群众立即转移到村委会避灾点",
        expires=datetime.now(UTC) + timedelta(hours=1),
        audiences=("vulnerable",),
    )


async def test_reject_a_draft(api: tuple[Broadcaster, str, dict[str, str]]) -> None:
    service, base, tokens = api
    draft = service._draft(
        request(), [service.audiences["vulnerable"]], datetime.now(UTC), status=AlertStatus.ACTUAL
    )
    await service.alerts.save(draft)
    url = f"{base}/api/v1/alerts/{draft.id}/reject"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, headers={"Authorization": f"Bearer {tokens['operator']}"}) as r:
            assert r.status == 403  # an operator may not reject
        async with session.post(url, headers={"Authorization": f"Bearer {tokens['approver']}"}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "reason"  # a reason is due
        async with session.post(
            url, json={"reason": "不需要发布"}, headers={"Authorization": f"Bearer {tokens['approver']}"}
        ) as r:
            assert r.status == 200 and (await r.json())["state"] == "rejected"
        approve = f"{base}/api/v1/alerts/{draft.id}/approve"
        async with session.post(approve, headers={"Authorization": f"Bearer {tokens['approver']}"}) as r:
            assert r.status == 409  # a rejected draft is never issued
    assert [e["action"] for e in await service.alerts.audit_log(draft.id)] == ["reject"]


async def test_progress_events_until_the_alert_ends(api: tuple[Broadcaster, str, dict[str, str]]) -> None:
    service, base, tokens = api
    alert, _ = await service.issue(request(Level.RED))
    events: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {tokens['viewer']}"}) as session:
        async with session.get(f"{base}/api/v1/alerts/{alert.id}/events") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            name = ""
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if name == "progress" and len(events) == 2:
                        await service.cancel(alert.id)
                    if name == "end":
                        break
        async with session.get(f"{base}/api/v1/alerts?limit=abc") as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "limit"
    assert [n for n, _ in events][:2] == ["progress", "progress"] and events[-1][0] == "end"
    assert events[0][1]["must_reach"]["total"] > 0 and events[-1][1]["state"] == "cancelled"
