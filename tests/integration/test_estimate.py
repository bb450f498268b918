"""The reach estimate before sending and the directory tree for the area picker, checked against the
sample county's CSV files: residents, must-reach, phones, loudspeakers online (from their liveness
reports), per channel recipients and SMS segments, and seconds at the configured provider rates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import County
from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster
from warning.channels.liveness import status_key
from warning.config import Settings
from warning.model import VULNERABLE_TAGS, Level
from warning.store import Store
from warning.users import Users
from warning.web.api import api_routes, auth_middleware
from warning.web.approvals import approval_routes
from warning.web.directory_api import directory_routes
from warning.web.keys import BACKGROUND, BROADCASTER, USERS

VILLAGE = "331099101201"
TOWNSHIP = "331099101"


def settings_for(store: Store) -> Settings:
    base = Settings()
    return replace(
        base,
        redis=replace(base.redis, namespace=store.keys.namespace, allow_volatile=True),
        sms=replace(base.sms, rate_per_second=10.0),
        voice=replace(base.voice, rate_per_second=2.0),
        wechat=replace(base.wechat, rate_per_second=4.0),
    )


@pytest.fixture
async def api(sample_store: Store) -> AsyncIterator[tuple[Broadcaster, str, dict[str, str]]]:
    """The API routes on a loopback port over the sample county, with a token per role."""
    service = Broadcaster(sample_store, settings_for(sample_store))
    users = Users(sample_store.redis, sample_store.keys)
    app = web.Application(middlewares=[auth_middleware(USERS)])
    app[BROADCASTER], app[USERS], app[BACKGROUND] = service, users, set()
    app.add_routes(api_routes(BROADCASTER, BACKGROUND))
    app.add_routes(approval_routes())
    app.add_routes(directory_routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tokens = {role: await users.add(f"u-{role}", role) for role in ("viewer", "operator")}
    try:
        yield service, str(server.make_url("")).rstrip("/"), tokens
    finally:
        await server.close()


def alert_body(area: str = VILLAGE, **changes: Any) -> dict[str, Any]:
    return {
        "event": "台风",
        "level": "red",
        "areas": [area],
        "headline": "台风将于今夜登陆",
        "instruction": "请低洼地区群众立即转移到村委会避灾点",
        "expires": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
    } | changes


def vulnerable(row: dict[str, str]) -> bool:
    return not VULNERABLE_TAGS.isdisjoint(row["tags"].split(";"))


def contacts_reached(county: County, area: str) -> list[dict[str, str]]:
    villages = [v["code"] for v in county.villages if v["code"].startswith(area)]
    roles = ("cadre", "village_head", "township_duty", "county_duty")
    return [
        c
        for c in county.contacts
        if c["role"] in roles
        and any(v.startswith(a) for v in villages for a in c["villages"].split(";") if a)
    ]


async def post(base: str, token: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.post(base + path, json=body) as response,
    ):
        return response.status, await response.json()


async def get(base: str, token: str, path: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(base + path) as response,
    ):
        return response.status, await response.json()


async def test_estimate_of_a_village_matches_the_county_files(
    api: tuple[Broadcaster, str, dict[str, str]], county: County, sample_store: Store
) -> None:
    """Residents, must-reach, phones, speakers online, per channel counts and seconds, as the CSVs say."""
    service, base, tokens = api
    speakers = sorted(county.speakers_in(VILLAGE))
    assert len(speakers) >= 2
    # One loudspeaker reported online, one offline, the rest never reported: only the first counts online.
    await sample_store.redis.hset(
        status_key(sample_store),
        mapping={
            speakers[0]: json.dumps({"v": 1, "online": True, "ts": 1}),
            speakers[1]: json.dumps({"v": 1, "online": False, "ts": 1}),
        },
    )
    status, estimate = await post(base, tokens["operator"], "/api/v1/alerts/estimate", alert_body())
    assert status == 200, estimate
    people = [r for r in county.residents if r["village"] == VILLAGE]
    contacts = contacts_reached(county, VILLAGE)
    sms = len([r for r in people if r["phone"]]) + len([c for c in contacts if c["phone"]])
    voice = len([r for r in people if r["phone"] and vulnerable(r)])
    wechat = len([r for r in people if r["wechat_openid"]])
    assert estimate["villages"] == 1
    assert estimate["residents"] == len(people)
    assert estimate["must_reach"] == len([r for r in people if vulnerable(r)]) > 0
    assert estimate["phones"] == len(county.phones_in(VILLAGE))
    assert estimate["speakers"] == {"total": len(speakers), "online": 1}
    channels = estimate["channels"]
    assert channels["sms"]["recipients"] == sms
    assert channels["voice"]["recipients"] == voice
    assert channels["wechat"]["recipients"] == wechat
    assert channels["speaker"]["recipients"] == len(speakers)
    assert channels["sms"]["seconds"] == round(sms / 10.0, 1)
    assert channels["voice"]["seconds"] == round(voice / 2.0, 1)
    assert channels["wechat"]["seconds"] == round(wechat / 4.0, 1)
    assert estimate["expected_seconds"] == max(c["seconds"] for c in channels.values())
    # SMS segments: as many as the preview's SMS texts need, for each recipient of each language.
    preview = await service.preview(
        AlertRequest(
            event="台风",
            level=Level.RED,
            areas=(VILLAGE,),
            headline="台风将于今夜登陆",
            instruction="请低洼地区群众立即转移到村委会避灾点",
            audiences=DEFAULT_AUDIENCES,
        )
    )
    segments = sum(
        text.recipients * (text.segments or 0)
        for row in preview.rows
        if row.channel == "sms"
        for text in row.texts
    )
    assert channels["sms"]["segments"] == segments >= sms
    # Nothing was saved or queued.
    assert await service.alerts.recent() == []


async def test_estimate_follows_the_audiences_and_needs_no_headline_yet(
    api: tuple[Broadcaster, str, dict[str, str]], county: County
) -> None:
    """Only the vulnerable audience: no WeChat and no loudspeakers; a blank headline still estimates;
    a viewer may not ask; an unknown area is 400."""
    _, base, tokens = api
    body = alert_body(TOWNSHIP, audiences=["vulnerable"], headline="", instruction="")
    status, estimate = await post(base, tokens["operator"], "/api/v1/alerts/estimate", body)
    assert status == 200, estimate
    people = [r for r in county.residents if r["village"].startswith(TOWNSHIP)]
    assert estimate["villages"] == len([v for v in county.villages if v["code"].startswith(TOWNSHIP)])
    assert estimate["residents"] == len(people)
    assert estimate["must_reach"] == len([r for r in people if vulnerable(r)])
    assert estimate["channels"]["wechat"]["recipients"] == 0
    assert estimate["channels"]["speaker"]["recipients"] == 0
    assert estimate["speakers"]["total"] == len(county.speakers_in(TOWNSHIP))
    assert estimate["phones"] == len({r["phone"] for r in people if r["phone"] and vulnerable(r)})
    status, _ = await post(base, tokens["viewer"], "/api/v1/alerts/estimate", body)
    assert status == 403
    status, error = await post(base, tokens["operator"], "/api/v1/alerts/estimate", alert_body("999999"))
    assert status == 400 and error["error"]["code"] == "invalid"


async def test_villages_tree_and_search(api: tuple[Broadcaster, str, dict[str, str]], county: County) -> None:
    """Every township with its villages (coordinates and counts from the CSVs); `q` filters by village
    name, township name or code."""
    _, base, tokens = api
    status, tree = await get(base, tokens["viewer"], "/api/v1/directory/villages")
    assert status == 200 and tree["truncated"] is False
    listed = {v["code"]: v | {"township": t["code"]} for t in tree["townships"] for v in t["villages"]}
    assert set(listed) == {v["code"] for v in county.villages}
    row = next(v for v in county.villages if v["code"] == VILLAGE)
    village = listed[VILLAGE]
    assert village["name"] == row["name"] and village["township"] == VILLAGE[:9]
    assert (village["lat"], village["lon"]) == (float(row["lat"]), float(row["lon"]))
    people = [r for r in county.residents if r["village"] == VILLAGE]
    assert village["residents"] == len(people)
    assert village["must_reach"] == len([r for r in people if vulnerable(r)])
    assert village["speakers"] == len(county.speakers_in(VILLAGE))
    township = next(t for t in tree["townships"] if t["code"] == TOWNSHIP)
    assert township["name"] == row["township"]

    status, found = await get(base, tokens["viewer"], f"/api/v1/directory/villages?q={row['name']}")
    assert [v["code"] for t in found["townships"] for v in t["villages"]] == [
        v["code"] for v in county.villages if row["name"] in v["name"] or row["name"] in v["township"]
    ]
    status, by_township = await get(base, tokens["viewer"], f"/api/v1/directory/villages?q={row['township']}")
    assert {v["code"] for t in by_township["townships"] for v in t["villages"]} == {
        v["code"] for v in county.villages if v["township"] == row["township"]
    }
    status, by_code = await get(base, tokens["viewer"], f"/api/v1/directory/villages?q={VILLAGE[-3:]}")
    assert VILLAGE in {v["code"] for t in by_code["townships"] for v in t["villages"]}
    status, none = await get(base, tokens["viewer"], "/api/v1/directory/villages?q=不存在的村")
    assert status == 200 and none["townships"] == []
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/api/v1/directory/villages") as response,
    ):
        assert response.status == 401
