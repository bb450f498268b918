"""The resident and cadre pages show what to do, until when (Beijing time) and whom to call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import County
from tests.integration.test_cadre_pages import EVIDENCE, VILLAGE, get, must_reach, token
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import Settings
from warning.evidence import Evidence
from warning.labels import beijing
from warning.links import RESIDENT
from warning.model import Level
from warning.store import Store
from warning.web.cadre import cadre_routes

INSTRUCTION = "请立即转移到村委会避灾点"


@pytest.fixture
async def phone_site(sample_store: Store) -> AsyncIterator[tuple[Broadcaster, str]]:
    base = Settings()
    settings = replace(
        base,
        redis=replace(base.redis, namespace=sample_store.keys.namespace, allow_volatile=True),
        bureau=replace(base.bureau, phone="0570-1234567"),
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


async def test_pages_show_instruction_expiry_and_phone(
    phone_site: tuple[Broadcaster, str], county: County
) -> None:
    """Both pages carry the instruction, the expiry in Beijing time, the duty phone and 110; ?lang=en too."""
    service, base = phone_site
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=6)
    alert, _ = await service.issue(
        AlertRequest(
            event="台风",
            level=Level.ORANGE,
            areas=(VILLAGE,),
            headline="台风将于今夜登陆",
            instruction=INSTRUCTION,
            expires=expires,
            audiences=("vulnerable",),
        )
    )
    person = must_reach(county, VILLAGE)[0]
    cadre = await token(service, alert, person["cadre"])
    resident = await token(service, alert, person["id"], RESIDENT)
    async with aiohttp.ClientSession() as session:
        for url in (f"{base}/c/{cadre}", f"{base}/r/{resident}"):
            status, html = await get(session, url)
            assert status == 200, html
            assert INSTRUCTION in html and f"有效至：{beijing(expires)}" in html
            assert 'href="tel:0570-1234567"' in html and 'href="tel:110"' in html
            status, html = await get(session, url + "?lang=en")
            assert status == 200 and f"Valid until: {beijing(expires, language='en')}" in html
            assert "Duty phone 0570-1234567" in html
