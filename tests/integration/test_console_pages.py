"""The console's dashboard, compose and approval pages and the public alert page, over real HTTP with a
real sign-in (the whole service, no channel workers, on the sample county): what a duty officer sees in
the HTML, where each form leads, and that no page or asset points outside the service."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Servers
from tests.integration.console_service import PASSWORD, Service, serving, settings_for
from warning.broadcast import AlertRequest
from warning.model import Alert, AlertState, Level
from warning.store import Store

VILLAGE = "331099101201"  # 上岩村, 龙墩镇
TOWNSHIP = "331099101"
STATIC = Path(__file__).resolve().parents[2] / "warning" / "web" / "static"


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service on a loopback port over the sample county, with a password user per role."""
    users = {"viewer": "viewer", "operator": "operator", "approver": "approver", "approver2": "approver"}
    async with serving(settings_for(sample_store, servers), users) as running:
        yield running


class Browser:
    """A signed-in client: cookies kept, the CSRF token read from the page it last loaded."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, name: str) -> Browser:
        status, page = await self.get("/login")
        assert status == 200, page
        token = _attr(page, 'name="csrf" value="', '"')
        async with self.session.post(
            self.base + "/login",
            data={"username": name, "password": PASSWORD, "csrf": token, "next": "/"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303, await response.text()
        status, _ = await self.get("/")  # the session's CSRF token, as the first page shows it
        assert status == 200 and self.csrf
        return self

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path, allow_redirects=False) as response:
            text = await response.text()
            found = re.search(r'<meta name="csrf" content="([^"]*)"', text)
            if found and found.group(1):
                self.csrf = found.group(1)
            return response.status, text

    async def post(
        self, path: str, fields: list[tuple[str, str]], *, csrf: bool = True
    ) -> tuple[int, str, str]:
        """(status, Location, body) of a form POST (the CSRF token added unless `csrf` is False)."""
        data = [*fields, ("csrf", self.csrf)] if csrf else fields
        async with self.session.post(self.base + path, data=data, allow_redirects=False) as response:
            return response.status, response.headers.get("Location", ""), await response.text()

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def browsers(service: Service) -> AsyncIterator[dict[str, Browser]]:
    opened = {
        name: await Browser(service.base).login(name)
        for name in ("viewer", "operator", "approver", "approver2")
    }
    try:
        yield opened
    finally:
        for browser in opened.values():
            await browser.close()


def _attr(page: str, before: str, after: str) -> str:
    start = page.index(before) + len(before)
    return html.unescape(page[start : page.index(after, start)])


def _element(page: str, tag: str, marker: str) -> str:
    """The HTML of the first `<tag …marker…>…</tag>` (no nesting of the same tag inside)."""
    start = page.index(marker)
    start = page.rindex(f"<{tag}", 0, start + len(tag) + 1)
    return page[start : page.index(f"</{tag}>", start)]


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def request(
    *, level: Level = Level.YELLOW, exercise: bool = False, headline: str = "台风将于今夜登陆"
) -> AlertRequest:
    return AlertRequest(
        event="台风",
        level=level,
        areas=(VILLAGE,),
        headline=headline,
        instruction="请立即转移到村委会。",
        expires=datetime.now(UTC) + timedelta(hours=2),
        audiences=("vulnerable", "public"),
        exercise=exercise,
    )


def form(**changes: str | list[str]) -> list[tuple[str, str]]:
    fields: dict[str, str | list[str]] = {
        "event": "暴雨",
        "level": "orange",
        "areas": [VILLAGE],
        "audiences": ["vulnerable", "public", "speakers"],
        "exercise": "on",
        "headline": "特大暴雨今夜到达",
        "description": "预计降雨 200 毫米",
        "instruction": "请低洼地区群众立即转移到村委会",
        "expires": "6",
    }
    fields.update(changes)
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        pairs.extend((name, v) for v in ([value] if isinstance(value, str) else value))
    return pairs


async def _issued(service: Service, alert_request: AlertRequest) -> Alert:
    alert = await service.broadcaster.prepare(alert_request, actor="operator", role="operator")
    await service.broadcaster.fan_out(alert)
    return alert


# -- dashboard ------------------------------------------------------------------------------------


async def test_dashboard_lists_alerts_in_words(service: Service, browsers: dict[str, Browser]) -> None:
    """Each alert is a row with its level, 【演练】 for a drill, event, area name and state in words; the
    waiting one is in the approvals box with a 审批 link for an approver, and English follows the switch."""
    actual = await _issued(service, request())
    drill = await _issued(service, request(exercise=True, headline="演练：台风"))
    pending = await service.broadcaster.submit(request(level=Level.RED), actor="operator", role="operator")
    assert pending.state is AlertState.PENDING_APPROVAL

    status, page = await browsers["viewer"].get("/")
    assert status == 200
    row = _text(_element(page, "tr", f'<tr data-alert="{actual.id}"'))
    assert "黄色" in row and "台风" in row and "上岩村" in row and "已发布" in row and "【演练】" not in row
    assert "【演练】" in _text(_element(page, "tr", f'<tr data-alert="{drill.id}"'))
    assert f'href="/console/alerts/{actual.id}"' in _element(page, "tr", f'<tr data-alert="{actual.id}"')
    assert "待审批" in _text(_element(page, "tr", f'<tr data-alert="{pending.id}"'))
    assert 'id="compose-button"' not in page  # a viewer cannot compose

    box = _element(page, "section", 'id="pending"')
    assert pending.id in box and "查看" in _text(box)
    _, page = await browsers["approver"].get("/")
    assert "审批" in _text(_element(page, "section", 'id="pending"'))
    assert 'id="compose-button"' in page

    browsers["viewer"].session.cookie_jar.update_cookies({"lang": "en"})
    _, page = await browsers["viewer"].get("/")
    assert "Yellow" in _text(_element(page, "tr", f'<tr data-alert="{actual.id}"'))
    assert "issued" in _text(_element(page, "tr", f'<tr data-alert="{actual.id}"'))


async def test_console_pages_need_a_sign_in_and_the_right_role(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """Not signed in: 303 to the login page; a viewer may read but not compose nor decide; a form
    POST without its CSRF token is refused and changes nothing."""
    anonymous = Browser(service.base)
    try:
        status, _ = await anonymous.get("/console/compose")
        assert status == 303
    finally:
        await anonymous.close()
    assert (await browsers["viewer"].get("/console/compose"))[0] == 403
    assert (await browsers["viewer"].get("/console/approvals"))[0] == 200
    before = len(await service.broadcaster.alerts.recent())
    status, _, _ = await browsers["operator"].post("/console/compose", form(), csrf=False)
    assert status == 403
    assert len(await service.broadcaster.alerts.recent()) == before


# -- compose --------------------------------------------------------------------------------------


async def test_compose_form_has_every_id_the_contract_names(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """The compose page carries every element id of the contract, the village tree and map from the
    directory, drill on by default, and the confirm step."""
    status, page = await browsers["operator"].get("/console/compose")
    assert status == 200
    for element in (
        "event",
        "level",
        "area-search",
        "area-tree",
        "area-map",
        "audiences",
        "exercise",
        "headline",
        "description",
        "instruction",
        "expires",
        "preview",
        "estimate",
        "compose-submit",
        "confirm",
        "confirm-submit",
        "drill-banner",
    ):
        assert f'id="{element}"' in page, element
    tree = _element(page, "ul", 'id="area-tree"')
    assert f'name="areas" value="{VILLAGE}"' in tree and f'name="areas" value="{TOWNSHIP}"' in tree
    assert "上岩村" in tree and "龙墩镇" in tree
    svg = _element(page, "svg", 'id="area-map"')
    assert svg.count("<circle data-village=") == 20  # every village of the sample county has coordinates
    for value in ("blue", "yellow", "orange", "red"):
        assert f'name="level" value="{value}"' in _element(page, "div", 'id="level"')
    for field in ("residents", "must_reach", "phones", "speakers_online", "expected_seconds"):
        assert f'data-field="{field}"' in page
    assert re.search(r'id="exercise"[^>]*checked', page)
    assert "【演练】" in _text(_element(page, "div", 'id="drill-banner"'))
    for script in ("/static/console.js", "/static/compose.js", "/static/map.js"):
        assert script in page


async def test_compose_post_issues_a_drill_and_goes_to_its_live_page(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """A drill submitted by an operator is issued (drills self-approve) and the browser is sent to its
    live page; a township ticked with its villages becomes the township code alone."""
    status, location, body = await browsers["operator"].post(
        "/console/compose", form(areas=[TOWNSHIP, VILLAGE, "331099101202"])
    )
    assert status == 303, body
    assert location.startswith("/console/alerts/")
    alert = await service.broadcaster.alerts.get(location.rsplit("/", 1)[1])
    assert alert.state is AlertState.ISSUED and alert.exercise
    assert alert.areas == (TOWNSHIP,) and alert.level is Level.ORANGE and alert.event == "暴雨"
    assert alert.expires is not None and timedelta(hours=5.9) < alert.expires - alert.sent < timedelta(
        hours=6.1
    )
    moves = await service.broadcaster.moves(alert.id)
    assert moves and moves[-1].actor == "operator"


async def test_a_refused_field_rerenders_the_form_with_the_message_and_the_values(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """Without a headline the form comes back (400) with the service's message next to the headline
    field and everything the operator typed or ticked still there; nothing is saved."""
    before = len(await service.broadcaster.alerts.recent())
    status, _, page = await browsers["operator"].post(
        "/console/compose", form(headline="  ", level="red", areas=["331099101203"])
    )
    assert status == 400
    message = _text(_element(page, "p", 'data-error-for="headline"'))
    assert "标题" in message
    assert 'value="暴雨"' in page and "请低洼地区群众立即转移到村委会</textarea>" in page
    assert re.search(r'name="level" value="red" checked', page)
    assert re.search(r'name="areas" value="331099101203"[^>]*checked', page)
    assert not re.search(rf'name="areas" value="{VILLAGE}"[^>]*checked', page)
    assert len(await service.broadcaster.alerts.recent()) == before

    status, _, page = await browsers["operator"].post("/console/compose", form(expires="next week"))
    assert status == 400
    assert "有效期" in _text(_element(page, "p", 'data-error-for="expires"'))


async def test_compose_from_an_issued_alert_updates_it(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """?from=ID of an issued alert fills the form and carries `updates`; submitting it makes version 2."""
    alert = await _issued(service, request())
    status, page = await browsers["operator"].get(f"/console/compose?from={alert.id}")
    assert status == 200
    assert f'name="updates" value="{alert.id}"' in page and 'value="台风将于今夜登陆"' in page
    # Below the approval level (orange by default) an update goes out at once.
    fields = form(level="yellow", exercise=[], headline="台风升级：今夜登陆", areas=[VILLAGE])
    status, location, body = await browsers["operator"].post(
        "/console/compose", [*fields, ("updates", alert.id)]
    )
    assert status == 303, body
    assert location == f"/console/alerts/{alert.id}"
    updated = await service.broadcaster.alerts.get(alert.id)
    assert updated.version == 2 and updated.headline == "台风升级：今夜登陆" and updated.msg_type == "Update"


# -- approvals ------------------------------------------------------------------------------------


async def _submit_red(browser: Browser) -> str:
    status, location, body = await browser.post(
        "/console/compose", form(level="red", exercise=[], headline="红色预警：台风正面登陆")
    )
    assert status == 303, body
    assert location.startswith("/console/approvals/"), location
    return location.rsplit("/", 1)[1]


async def test_a_red_actual_waits_on_a_review_page_with_texts_reach_and_submitter(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """A red Actual alert goes to its review page, not out: the page shows the exact texts per audience
    × channel, the reach fields, who submitted it and when, and the three decisions for an approver."""
    alert_id = await _submit_red(browsers["operator"])
    assert (await service.broadcaster.alerts.get(alert_id)).state is AlertState.PENDING_APPROVAL

    status, page = await browsers["approver"].get(f"/console/approvals/{alert_id}")
    assert status == 200
    rows = re.findall(r'<div class="preview-row" data-audience="(\w+)" data-channel="(\w+)"', page)
    assert ("public", "sms") in rows and ("vulnerable", "voice") in rows
    assert "红色预警：台风正面登陆" in _element(page, "section", 'id="preview-box"')
    assert 'data-field="residents"' in page and '"areas": ["331099101201"]' in html.unescape(page)
    assert "operator" in _text(_element(page, "p", 'id="submitted-by"'))
    for element in ("decision-approve", "decision-return", "decision-reject", "reason"):
        assert f'id="{element}"' in page
    assert "待审批" in _text(_element(page, "span", 'id="alert-state"'))

    _, listing = await browsers["viewer"].get("/console/approvals")
    assert alert_id in _element(listing, "table", 'id="waiting"')
    _, page = await browsers["viewer"].get(f"/console/approvals/{alert_id}")
    assert 'id="decision-approve"' not in page  # a viewer sees it but cannot decide


async def test_self_approval_is_refused_in_words_and_another_approver_issues(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """The approver who submitted a red Actual cannot approve it (409, the two-person rule in words,
    still waiting); a second approver can, and lands on the live page with the alert issued."""
    alert_id = await _submit_red(browsers["approver"])
    _, page = await browsers["approver"].get(f"/console/approvals/{alert_id}")
    assert "您提交的" in page
    status, _, page = await browsers["approver"].post(
        f"/console/approvals/{alert_id}", [("decision", "approve")]
    )
    assert status == 409
    assert "两人规则" in _text(_element(page, "div", 'id="form-error"'))
    assert (await service.broadcaster.alerts.get(alert_id)).state is AlertState.PENDING_APPROVAL

    status, location, _ = await browsers["approver2"].post(
        f"/console/approvals/{alert_id}", [("decision", "approve")]
    )
    assert status == 303 and location == f"/console/alerts/{alert_id}"
    assert (await service.broadcaster.alerts.get(alert_id)).state is AlertState.ISSUED
    assert [m.action for m in await service.broadcaster.moves(alert_id)][-1] == "approve"


async def test_return_needs_a_reason_and_the_returned_draft_is_revised(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """Returning without a reason is refused next to the reason field (400); with one the alert becomes a
    draft its submitter revises from the compose page and resubmits under the same id; reject needs a
    reason too."""
    alert_id = await _submit_red(browsers["operator"])
    status, _, page = await browsers["approver"].post(
        f"/console/approvals/{alert_id}", [("decision", "return")]
    )
    assert status == 400
    assert "理由" in _text(_element(page, "p", 'data-error-for="reason"'))
    assert (await service.broadcaster.alerts.get(alert_id)).state is AlertState.PENDING_APPROVAL

    status, location, _ = await browsers["approver"].post(
        f"/console/approvals/{alert_id}", [("decision", "return"), ("reason", "请写明转移地点")]
    )
    assert status == 303 and location == f"/console/approvals/{alert_id}"
    _, page = await browsers["operator"].get(f"/console/approvals/{alert_id}")
    assert "请写明转移地点" in _text(_element(page, "section", 'id="moves"')) and 'id="revise"' in page

    _, page = await browsers["operator"].get(f"/console/compose?from={alert_id}")
    assert f'name="revise" value="{alert_id}"' in page
    fields = form(level="red", exercise=[], instruction="请立即转移到村委会二楼避灾点")
    status, location, _ = await browsers["operator"].post("/console/compose", [*fields, ("revise", alert_id)])
    assert status == 303 and location == f"/console/approvals/{alert_id}"
    revised = await service.broadcaster.alerts.get(alert_id)
    assert revised.state is AlertState.PENDING_APPROVAL and "二楼" in revised.instruction

    status, _, _ = await browsers["approver"].post(f"/console/approvals/{alert_id}", [("decision", "reject")])
    assert status == 400
    status, _, _ = await browsers["approver"].post(
        f"/console/approvals/{alert_id}", [("decision", "reject"), ("reason", "已由省台发布")]
    )
    assert status == 303
    assert (await service.broadcaster.alerts.get(alert_id)).state is AlertState.REJECTED


# -- the public page ------------------------------------------------------------------------------


async def test_public_page_shows_the_official_text_its_update_and_the_all_clear(service: Service) -> None:
    """Anyone (no sign-in) reads an issued Actual alert's text with share tags, cacheable for 30 s; after
    an update the earlier version is listed; after a cancel the all-clear is on top."""
    alert = await _issued(service, request())
    page_url = f"{service.base}/alerts/{alert.id}"
    async with aiohttp.ClientSession() as session:
        async with session.get(page_url) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "public, max-age=30"
            page = await response.text()
        assert "台风将于今夜登陆" in _element(page, "h1", 'id="headline"')
        assert "请立即转移到村委会。" in page and "上岩村" in _text(_element(page, "dd", 'id="areas"'))
        assert f'<meta property="og:url" content="{page_url}">' in page
        assert 'property="og:title" content="【黄色预警】台风' in page and '<meta name="description"' in page
        assert f"/api/v1/alerts/{alert.id}/cap" in page and "/feeds/alerts.atom" in page
        assert 'id="all-clear"' not in page and 'id="updates"' not in page


async def test_public_page_after_update_and_cancel(service: Service) -> None:
    """A page first read after an update and a cancel lists version 1's text and the all-clear with its
    note, and the current version says it is an update."""
    alert = await _issued(service, request())
    await service.broadcaster.update(
        alert.id, replace(request(level=Level.ORANGE), headline="台风加强：今夜正面登陆"), actor="operator"
    )
    await service.broadcaster.cancel(alert.id, note="台风已远离，可以返回家中", actor="operator")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{service.base}/alerts/{alert.id}") as response,
    ):
        assert response.status == 200
        page = await response.text()
    assert "台风加强：今夜正面登陆" in _element(page, "h1", 'id="headline"')
    assert "第 2 版" in page and "橙色预警" in page
    updates = _text(_element(page, "section", 'id="updates"'))
    assert "第 1 版" in updates and "台风将于今夜登陆" in updates
    clear = _text(_element(page, "section", 'id="all-clear"'))
    assert "预警已解除" in clear and "台风已远离，可以返回家中" in clear


async def test_public_page_is_404_for_drills_waiting_and_unknown_alerts(service: Service) -> None:
    """A drill, an alert waiting for approval and an unknown id all answer the same 404 page."""
    drill = await _issued(service, request(exercise=True))
    waiting = await service.broadcaster.submit(request(level=Level.RED), actor="operator", role="operator")
    async with aiohttp.ClientSession() as session:
        for alert_id in (drill.id, waiting.id, "W20260101T000000-000000"):
            async with session.get(f"{service.base}/alerts/{alert_id}") as response:
                assert response.status == 404, alert_id
                page = await response.text()
                assert "没有这条预警" in page and "台风" not in page


# -- offline --------------------------------------------------------------------------------------


async def test_no_page_or_asset_points_outside_the_service(
    service: Service, browsers: dict[str, Browser]
) -> None:
    """Every console page, the public page and every static file name no URL but the service's own."""
    actual = await _issued(service, request())
    waiting = await service.broadcaster.submit(request(level=Level.RED), actor="operator", role="operator")
    pages = [
        await browsers["approver"].get(path)
        for path in ("/", "/console/compose", "/console/approvals", f"/console/approvals/{waiting.id}")
    ]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{service.base}/alerts/{actual.id}") as response,
    ):
        pages.append((response.status, await response.text()))
    assert all(status == 200 for status, _ in pages)
    texts = [page for _, page in pages] + [
        p.read_text(encoding="utf-8") for p in STATIC.iterdir() if p.is_file()
    ]
    for text in texts:
        for url in re.findall(r"https?://[^\s\"'<>)]+", text):
            assert url.startswith(service.base), url
        assert not re.search(r"(?:src|href)=\"//", text)
