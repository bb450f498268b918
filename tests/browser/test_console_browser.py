"""A duty officer's night in a real browser (headless Chromium, Chinese UI, 1366×768): sign in, compose an
orange typhoon drill for a village found by name and one ticked on the map, see the previews and the reach
estimate, issue it, watch the village's confirmed count rise without a reload while cadres confirm, download
the after-action report, cancel with an all-clear; the same page on a 360 px phone and in English; the
public page of an Actual alert without login. And the two-person rule: an operator is offered no decision
on their red alert and told an approver must decide; an approver's own submission is refused with the
reason; another's they approve after seeing the preview and the reach estimate. Every request the pages
make goes to the service itself (no CDN) and no page has a JavaScript error. Screenshots of every step go to
build/screenshots/<test>/."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import openpyxl
import pytest

from tests.browser.conftest import MAPPED, SEARCHED, Console
from tests.browser.helpers import NetworkLog, Shots, confirm_residents, sign_in, wait_until
from tests.integration.conftest import County
from warning.web.keys import ENGINE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

VULNERABLE = {"elderly", "lives_alone", "no_smartphone", "disabled"}
HEADLINE = "台风“海燕”今夜登陆，请低洼地区群众立即转移"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 360, "height": 740}
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def must_reach(county: County, village: str) -> list[dict[str, str]]:
    return [r for r in county.residents if r["village"] == village and VULNERABLE & set(r["tags"].split(";"))]


async def new_page(browser: Any, console: Console, network: NetworkLog, **options: Any) -> tuple[Any, Any]:
    context = await browser.new_context(
        locale="zh-CN", viewport=DESKTOP, accept_downloads=True, base_url=console.base, **options
    )
    context.on("request", network.record)
    page = await context.new_page()
    page.on("pageerror", network.page_error)
    page.on("dialog", lambda dialog: dialog.accept())  # a confirm() before sending is answered "OK"
    page.set_default_timeout(10_000)
    return context, page


async def cell(page: Any, village: str, name: str) -> int:
    text = await page.inner_text(f"#villages tr[data-village='{village}'] [data-field={name}]")
    found = NUMBER.findall(text)
    assert found, f"village {village} {name} shows no number: {text!r}"
    return int(float(found[0]))


async def api(console: Console, role: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {console.tokens[role]}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{console.base}{path}", json=body, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


def actual_alert(level: str, headline: str) -> dict[str, Any]:
    return {
        "event": "暴雨",
        "level": level,
        "areas": [SEARCHED[0]],
        "audiences": ["vulnerable"],
        "headline": headline,
        "instruction": "请沿河群众立即转移到村委会避灾点。",
        "expires": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
    }


def xlsx_tables(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Each sheet of the workbook as rows keyed by its header row."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        tables = {}
        for sheet in book.worksheets:
            rows = list(sheet.iter_rows(values_only=True))
            header = [str(h) for h in rows[0]] if rows else []
            tables[sheet.title] = [dict(zip(header, row, strict=False)) for row in rows[1:]]
        return tables
    finally:
        book.close()


def check_report(tables: dict[str, list[dict[str, Any]]], people: list[dict[str, str]]) -> None:
    """The after-action report counts the two cadre confirmations in 上岩村's row, lists both residents by
    name among the confirmed and no longer among the unreached."""
    villages = [row for row in tables["各村"] if row.get("村代码") == SEARCHED[0]]
    assert villages, f"no row for {SEARCHED[0]} in {list(tables)}"
    assert int(villages[0]["干部已确认"]) >= 2, villages[0]
    unreached = {str(row.get("居民编号")) for row in tables["未确认人员"]}
    assert not unreached & {p["id"] for p in people}, "confirmed residents still listed as unreached"
    confirmed = {str(row.get("居民编号")): row for row in tables["已确认人员"]}
    for person in people:
        assert person["id"] in confirmed, f"{person['name']} is not among the confirmed"
        assert confirmed[person["id"]]["姓名"] == person["name"] and confirmed[person["id"]]["确认人"]


async def compose_drill(page: Any, shots: Shots) -> None:
    """Fill the compose form: event, 橙, 上岩村 by name search, 桃门村 on the map, audiences, texts."""
    await page.goto("/console/compose")
    await shots(page, "compose-empty")
    await page.fill("#event", "台风")
    if await page.locator("select#level").count():
        await page.select_option("#level", "orange")
    else:  # a radio group of the four colours
        await page.locator("#level label", has_text="橙").click()
    assert await page.locator("#level input[value=orange], #level option[value=orange]").first.evaluate(
        "e => e.checked || e.selected"
    ), "橙 is not selected"
    await page.fill("#area-search", SEARCHED[1])
    searched = page.locator(f"#area-tree input[name=areas][value='{SEARCHED[0]}']")
    await searched.wait_for(state="visible")
    await searched.check()
    await page.fill("#area-search", "")
    await page.click(f"#area-map circle[data-village='{MAPPED[0]}']")
    mapped = page.locator(f"#area-tree input[name=areas][value='{MAPPED[0]}']")
    assert await mapped.is_checked(), "clicking 桃门村 on the map did not tick it in the tree"
    vulnerable = page.locator("#audiences input[name=audiences][value=vulnerable]")
    if not await vulnerable.is_checked():
        await vulnerable.check()
    exercise = page.locator("#exercise")
    if not await exercise.is_checked():
        await exercise.check()
    await page.fill("#headline", HEADLINE)
    await page.fill("#description", "中心附近最大风力14级，伴有大暴雨。")
    await page.fill("#instruction", "请低洼地区、危旧房屋群众立即转移到村委会避灾点，不要外出。")


async def previews_and_estimate(page: Any) -> dict[str, float]:
    rows = page.locator("#preview .preview-row")
    await wait_until(lambda: _preview_has(rows, HEADLINE), 10, "previews with the headline")
    numbers: dict[str, float] = {}
    for field in ("residents", "must_reach", "phones", "speakers_online", "expected_seconds"):
        target = page.locator(f"#estimate [data-field={field}]")

        async def shown(target: Any = target, field: str = field) -> float | None:
            # "28", "3/4" (online / total: the first counts), "1 分 5 秒" (any part counts)
            found = [float(n) for n in NUMBER.findall(await target.inner_text())]
            if field == "expected_seconds":
                return sum(found) or None
            return found[0] if found and found[0] > 0 else None

        numbers[field] = await wait_until(shown, 10, f"#estimate {field} > 0")
    return numbers


async def _preview_has(rows: Any, text: str) -> bool:
    return await rows.count() > 0 and text in await rows.first.inner_text()


async def submit(page: Any) -> None:
    """#compose-submit, then the confirm step (a dialog is accepted; a second button, if any, pressed)."""
    await page.click("#compose-submit")
    await page.wait_for_load_state()
    for confirm in ("#compose-confirm", "#confirm-submit"):
        if "/console/alerts/" not in page.url and await page.locator(confirm).count():
            await page.click(confirm)
    await page.wait_for_url("**/console/alerts/*", timeout=15_000)


async def test_duty_officer_issues_watches_and_cancels_a_drill(
    browser: Any, console: Console, county: County, shots: Shots
) -> None:
    network = NetworkLog(console.base)
    context, page = await new_page(browser, console, network)
    name, password = console.user("operator")
    await sign_in(page, console.base, name, password)
    await shots(page, "signed-in")

    people = [r for r in must_reach(county, SEARCHED[0]) if r["phone"]][:2]
    sandbox = console.app[ENGINE].sandbox
    assert sandbox is not None, "the Twilio sandbox is not running"
    sandbox.set_callees(silent={p["phone"] for p in people})
    await compose_drill(page, shots)
    estimate = await previews_and_estimate(page)
    await shots(page, "compose-preview-estimate")
    expected = len(must_reach(county, SEARCHED[0])) + len(must_reach(county, MAPPED[0]))
    assert estimate["must_reach"] == expected, estimate

    await submit(page)
    alert_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    await page.locator(f"#villages tr[data-village='{SEARCHED[0]}']").wait_for()
    await page.evaluate("window.__h5_loaded = true")
    await shots(page, "live-issued")

    # Two of 上岩村's must-reach residents (their phones answer but never press 1) stay on the unreached
    # list until their cadre confirms them, outside the browser; the open page follows without a reload.
    unreached = [page.locator(f"#unreached li[data-resident='{p['id']}']") for p in people]
    for person, item in zip(people, unreached, strict=True):
        await item.wait_for(timeout=15_000)
        assert person["name"] in await item.inner_text()
    before = await cell(page, SEARCHED[0], "confirmed")
    await confirm_residents(console.base, console.tokens["operator"], alert_id, [p["id"] for p in people])

    async def followed() -> int | None:
        now = await cell(page, SEARCHED[0], "confirmed")
        gone = all([await item.count() == 0 for item in unreached])
        return now if now >= before + 2 and gone else None

    await wait_until(followed, 15, f"上岩村 confirmed rising from {before} by 2, both off #unreached")
    navigations = await page.evaluate("performance.getEntriesByType('navigation').length")
    assert await page.evaluate("window.__h5_loaded === true") and navigations == 1, "the page was reloaded"

    # The loudspeakers: 上岩村's two play; 桃门村's second never connected and shows offline.
    async def speakers_shown() -> bool:
        played = await cell(page, SEARCHED[0], "speakers_played")
        return played == 2 and await cell(page, MAPPED[0], "speakers_offline") >= 1

    await wait_until(speakers_shown, 15, "上岩村 2 loudspeakers played, 桃门村 1 offline")
    await shots(page, "live-confirmed")
    events = f"{console.base}/console/alerts/{alert_id}/events"
    assert any(url.startswith(events) for url in network.urls), "the live page opened no event stream"

    async with page.expect_download() as waiting:
        await page.click("#report-xlsx")
    download = await waiting.value
    assert download.suggested_filename.endswith(".xlsx"), download.suggested_filename
    report = shots.folder / "report.xlsx"
    await download.save_as(report)
    check_report(xlsx_tables(report), people)
    href = await page.get_attribute("#report-csv", "href")
    assert href, "#report-csv has no link"
    answer = await context.request.get(href)
    assert answer.status == 200, answer.status
    text = (await answer.body()).decode("utf-8-sig").replace("\r\n", "\n")
    # The CSV has the same tables, one after another, each under its "# name" line.
    sections = dict(part.split("\n", 1) for part in text.split("# ")[1:])
    assert SEARCHED[1] in sections["各村"], text[:500]
    assert all(p["id"] not in sections["未确认人员"] for p in people), sections["未确认人员"][:500]
    assert all(p["id"] in sections["已确认人员"] for p in people), sections["已确认人员"][:500]

    await page.fill("#cancel-note", "演练结束，解除预警")
    async with page.expect_navigation():
        await page.click("#cancel-submit")
    if await page.locator("#cancel-confirm").count():  # the confirm step: "确认撤销"
        await shots(page, "cancel-confirm")
        async with page.expect_navigation():
            await page.click("#cancel-confirm")
    assert urlsplit(page.url).path == f"/console/alerts/{alert_id}", page.url
    await wait_until(
        lambda: _text_has(page, "#alert-state", ("已撤销", "已取消", "cancelled")),
        10,
        "#alert-state cancelled",
    )
    await shots(page, "live-cancelled")
    await check_clock(page)

    await page.set_viewport_size(PHONE)
    await page.reload()
    await page.locator("#alert-state").wait_for()
    await shots(page, "live-phone")
    await check_clock(page)
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"horizontal scroll on a 360 px phone: {widths}"
    await page.set_viewport_size(DESKTOP)

    async with page.expect_navigation():
        await page.click("#lang-en")
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert await _text_has(page, "#alert-state", ("cancel", "Cancel")), await page.inner_text("#alert-state")
    await shots(page, "live-english")
    async with page.expect_navigation():
        await page.click("#lang-zh")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"

    # The public page of an Actual alert (yellow: below the approval level), with no session at all.
    status, issued = await api(
        console, "operator", "POST", "/api/v1/alerts", actual_alert("yellow", "暴雨黄色预警")
    )
    assert status == 201, issued
    public_context, public = await new_page(browser, console, network)
    response = await public.goto(f"/alerts/{issued['id']}")
    assert response is not None and response.status == 200
    assert "暴雨黄色预警" in await public.inner_text("body")
    await shots(public, "public-actual")
    response = await public.goto(f"/alerts/{alert_id}")
    assert response is not None and response.status == 404, "a drill must have no public page"
    await public_context.close()
    await context.close()

    assert network.urls, "no request was recorded"
    assert not network.foreign(), f"requests outside the service: {network.foreign()}"
    assert not network.errors, f"JavaScript errors: {network.errors}"


async def check_clock(page: Any) -> None:
    """The live page's "更新于" shows a time of day (02:07:31), never a raw Unix time."""
    if await page.locator("#live-updated").count():
        await page.wait_for_timeout(1500)  # past the first event-stream message
        updated = await page.inner_text("#live-updated")
        assert re.search(r"\d{1,2}:\d{2}", updated), f"#live-updated shows {updated!r}"


async def _text_has(page: Any, selector: str, words: tuple[str, ...]) -> bool:
    text = await page.inner_text(selector)
    return any(word in text for word in words)


async def test_approver_approves_what_the_operator_cannot(
    browser: Any, console: Console, shots: Shots
) -> None:
    status, pending = await api(
        console, "operator", "POST", "/api/v1/alerts", actual_alert("red", "特大暴雨红色预警")
    )
    assert status == 202 and pending["state"] == "pending_approval", pending
    alert_id = pending["id"]
    status, own = await api(
        console, "approver", "POST", "/api/v1/alerts", actual_alert("orange", "暴雨橙色预警")
    )
    assert status == 202 and own["state"] == "pending_approval", own
    network = NetworkLog(console.base)

    # The operator who submitted it may not approve (the role): no decision buttons, and the page says
    # that an approver must.
    context, page = await new_page(browser, console, network)
    await sign_in(page, console.base, *console.user("operator"))
    await page.goto(f"/console/approvals/{alert_id}")
    await shots(page, "operator-own-alert")
    assert await page.locator("#decision-approve").count() == 0, "an operator is offered the approve button"
    said = await page.inner_text("main")
    assert "审批人" in said, f"the operator is not told who must approve: {said[:300]}"
    await context.close()

    # An approver: their own submission is refused (two-person rule) and the page says why ...
    context, page = await new_page(browser, console, network)
    await sign_in(page, console.base, *console.user("approver"))
    await page.goto(f"/console/approvals/{own['id']}")
    await shots(page, "approver-own-alert")
    async with page.expect_navigation():
        await page.click("#decision-approve")
    await shots(page, "approver-own-refused")
    refusal = page.locator(".form-error:visible, #problem:visible")
    assert await refusal.count(), "approving one's own alert showed no refusal"
    assert "另一" in await refusal.first.inner_text(), await refusal.first.inner_text()
    status, still = await api(console, "operator", "GET", f"/api/v1/alerts/{own['id']}")
    assert still["state"] == "pending_approval", still

    # ... and the operator's: the waiting list, the review page with the preview and estimate, approve.
    await page.goto("/console/approvals")
    await shots(page, "approver-list")
    await page.click(f"a[href$='/console/approvals/{alert_id}']")
    await page.wait_for_url(f"**/console/approvals/{alert_id}")
    assert "特大暴雨红色预警" in await page.inner_text("#alert-headline")
    assert await page.locator("#preview .preview-row").count() > 0
    residents = page.locator("#estimate [data-field=residents]")

    async def estimated() -> bool:
        return bool(NUMBER.search(await residents.inner_text()))

    await wait_until(estimated, 10, "the reach estimate on the review page")
    await shots(page, "approver-review")
    async with page.expect_navigation():
        await page.click("#decision-approve")
    await shots(page, "approver-approved")
    status, approved = await api(console, "operator", "GET", f"/api/v1/alerts/{alert_id}")
    assert approved["state"] == "issued", approved
    await context.close()

    public_context, public = await new_page(browser, console, network)
    response = await public.goto(f"/alerts/{alert_id}")
    assert response is not None and response.status == 200
    assert "特大暴雨红色预警" in await public.inner_text("body")
    await shots(public, "public-approved")
    await public_context.close()
    assert not network.foreign(), f"requests outside the service: {network.foreign()}"
    assert not network.errors, f"JavaScript errors: {network.errors}"
