"""The cadre's task page and the resident's confirm page over real HTTP: the authorization matrix
(own residents only; another cadre's → 403; another alert's token → 403; expired → 410; forged → 403),
nothing changes on GET, every refusal is audited."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import County
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import Settings
from warning.evidence import Evidence
from warning.links import CADRE, RESIDENT
from warning.model import Alert, Level
from warning.store import Store
from warning.web.cadre import cadre_routes

VILLAGE = "331099101201"
OTHER_VILLAGE = "331099101202"
EVIDENCE = web.AppKey("evidence", Evidence)
VULNERABLE = {"elderly", "lives_alone", "no_smartphone", "disabled"}


def must_reach(county: County, village: str) -> list[dict[str, str]]:
    return [r for r in county.residents if r["village"] == village and VULNERABLE & set(r["tags"].split(";"))]


@pytest.fixture
async def site(sample_store: Store) -> AsyncIterator[tuple[Broadcaster, str]]:
    base = Settings()
    settings = replace(
        base, redis=replace(base.redis, namespace=sample_store.keys.namespace, allow_volatile=True)
    )
    service = Broadcaster(sample_store, settings)
    app = web.Application()
    app[EVIDENCE] = Evidence(service)
    app.add_routes(cadre_routes(EVIDENCE))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield service, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def issue(service: Broadcaster, area: str, hours: float = 6) -> Alert:
    request = AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(area,),
        headline="台风将于今夜登陆",
        instruction="请低洼地区群众立即转移到村委会避灾点",
        expires=datetime.now(UTC) + timedelta(hours=hours),
        audiences=("vulnerable",),
    )
    alert, _ = await service.issue(request)
    return alert


async def token(service: Broadcaster, alert: Alert, contact: str, purpose: str = CADRE) -> str:
    assert alert.expires is not None
    return await service.links.token(purpose, alert.id, contact, alert.expires.timestamp())


async def post(session: aiohttp.ClientSession, url: str, **form: str) -> tuple[int, str]:
    async with session.post(url, data=form, allow_redirects=False) as response:
        return response.status, await response.text()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_cadre_sees_and_confirms_only_their_own_residents(
    site: tuple[Broadcaster, str], county: County
) -> None:
    service, base = site
    alert = await issue(service, VILLAGE[:9])
    mine = must_reach(county, VILLAGE)
    cadre = mine[0]["cadre"]
    theirs = must_reach(county, OTHER_VILLAGE)
    assert theirs and theirs[0]["cadre"] != cadre
    url = f"{base}/c/{await token(service, alert, cadre)}"
    async with aiohttp.ClientSession() as session:
        status, html = await get(session, url)
        assert status == 200
        for person in mine:
            assert person["name"] in html
        assert theirs[0]["name"] not in html
        assert "<script" not in html
        before = await service.reach.counts(alert.id)
        # GET changes nothing.
        assert (await service.reach.counts(alert.id)).raw == before.raw
        # Own resident: recorded.
        status, html = await post(
            session, f"{url}/confirm", resident_id=mine[0]["id"], outcome="evacuated", note="已转移到村委会"
        )
        assert status == 200 and "已记录" in html
        entry = await service.reach.entry(alert.id, mine[0]["id"])
        assert entry is not None and entry.state == "confirmed"
        # Another cadre's resident: 403, nothing changes, audited.
        status, _ = await post(session, f"{url}/confirm", resident_id=theirs[0]["id"], outcome="reached")
        assert status == 403
        other = await service.reach.entry(alert.id, theirs[0]["id"])
        assert other is not None and other.state == "pending"
        # A form naming another alert: 403.
        status, _ = await post(
            session, f"{url}/confirm", resident_id=mine[1]["id"], outcome="reached", alert_id="W-other"
        )
        assert status == 403
        # A bad outcome: 400 with the page.
        status, _ = await post(session, f"{url}/confirm", resident_id=mine[1]["id"], outcome="gone")
        assert status == 400
    audit = await service.alerts.audit_log(alert.id)
    refused = [e for e in audit if e["result"] == "forbidden"]
    assert len(refused) == 2
    confirmed = [e for e in audit if e["action"] == "confirm" and e["result"] == "ok"]
    assert len(confirmed) == 1


async def test_another_alerts_token_is_refused(site: tuple[Broadcaster, str], county: County) -> None:
    service, base = site
    first = await issue(service, VILLAGE)
    second = await issue(service, OTHER_VILLAGE)
    person = must_reach(county, OTHER_VILLAGE)[0]
    # The cadre of the first alert's village, holding the first alert's link, tries the second's resident.
    cadre = must_reach(county, VILLAGE)[0]["cadre"]
    url = f"{base}/c/{await token(service, first, cadre)}"
    async with aiohttp.ClientSession() as session:
        status, _ = await post(session, f"{url}/confirm", resident_id=person["id"], outcome="reached")
        assert status == 403
        # A token for the right cadre but the other alert cannot touch this alert's residents either.
        url2 = f"{base}/c/{await token(service, second, cadre)}"
        mine = must_reach(county, VILLAGE)[0]
        status, _ = await post(session, f"{url2}/confirm", resident_id=mine["id"], outcome="reached")
        assert status == 403
    assert (await service.reach.entry(second.id, person["id"])).state == "pending"  # type: ignore[union-attr]
    assert (await service.reach.entry(first.id, mine["id"])).state == "pending"  # type: ignore[union-attr]


async def test_forged_expired_and_wrong_purpose_tokens(site: tuple[Broadcaster, str], county: County) -> None:
    service, base = site
    alert = await issue(service, VILLAGE)
    person = must_reach(county, VILLAGE)[0]
    good = await token(service, alert, person["cadre"])
    body, mac = good.split(".")
    forged = f"{body}.{'A' * len(mac)}"
    expired = await service.links.token(CADRE, alert.id, person["cadre"], time.time() - 1)
    resident_token = await token(service, alert, person["id"], RESIDENT)
    async with aiohttp.ClientSession() as session:
        assert (await get(session, f"{base}/c/{forged}"))[0] == 403
        assert (
            await post(session, f"{base}/c/{forged}/confirm", resident_id=person["id"], outcome="reached")
        )[0] == 403
        assert (await get(session, f"{base}/c/{expired}"))[0] == 410
        assert (
            await post(session, f"{base}/c/{expired}/confirm", resident_id=person["id"], outcome="reached")
        )[0] == 410
        assert (await get(session, f"{base}/c/{resident_token}"))[
            0
        ] == 403  # a resident's link is not a cadre's
        assert (await get(session, f"{base}/c/garbage"))[0] == 403
    entry = await service.reach.entry(alert.id, person["id"])
    assert entry is not None and entry.state == "pending"


async def test_a_cancelled_alert_closes_its_links(site: tuple[Broadcaster, str], county: County) -> None:
    service, base = site
    alert = await issue(service, VILLAGE)
    person = must_reach(county, VILLAGE)[0]
    url = f"{base}/c/{await token(service, alert, person['cadre'])}"
    await service.cancel(alert.id)
    async with aiohttp.ClientSession() as session:
        assert (await get(session, url))[0] == 410
        assert (await post(session, f"{url}/confirm", resident_id=person["id"], outcome="reached"))[0] == 410


async def test_resident_confirm_link_acknowledges(site: tuple[Broadcaster, str], county: County) -> None:
    service, base = site
    alert = await issue(service, VILLAGE)
    person = must_reach(county, VILLAGE)[0]
    url = f"{base}/r/{await token(service, alert, person['id'], RESIDENT)}"
    async with aiohttp.ClientSession() as session:
        status, html = await get(session, url)
        assert status == 200 and "我已收到" in html
        assert (await service.reach.entry(alert.id, person["id"])).state == "pending"  # type: ignore[union-attr]
        status, html = await post(session, f"{url}/ack", ack="1")
        assert status == 200
        status, html = await get(session, f"{url}?lang=en")
        assert "I got it" in html
    entry = await service.reach.entry(alert.id, person["id"])
    assert entry is not None and entry.state == "acknowledged"


async def test_page_is_english_on_request(site: tuple[Broadcaster, str], county: County) -> None:
    service, base = site
    alert = await issue(service, VILLAGE)
    person = must_reach(county, VILLAGE)[0]
    url = f"{base}/c/{await token(service, alert, person['cadre'])}?lang=en"
    async with aiohttp.ClientSession() as session:
        status, html = await get(session, url)
    assert status == 200 and "Evacuated" in html and re.search(r'action="/c/[^"]+/confirm\?lang=en"', html)
