"""The live alert page, its server-sent events and actions, the fleet and directory pages, over real HTTP
with a signed-in operator: numbers against the sample county, counts that rise without reload, cancel
with an all-clear, one cadre's link resent through the Twilio sandbox, dead letters requeued, report
downloads, an offline loudspeaker, and the directory upload's report matching the CLI's."""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import openpyxl
import pytest

from tests.conftest import Servers
from tests.integration.conftest import County
from tests.integration.console_service import PASSWORD, Service, serving, settings_for
from warning.broadcast import AlertRequest
from warning.channels.liveness import status_key
from warning.cli_directory import _directory_import
from warning.config import RedisSettings, Settings
from warning.deliveries import Batch, Recipient
from warning.links import CADRE
from warning.live import live_view
from warning.model import Alert, Level
from warning.store import Store
from warning.web.app import ENGINE, STORE

VILLAGE = "331099101201"
OTHER = "331099101202"
VULNERABLE = {"elderly", "lives_alone", "no_smartphone", "disabled"}


def must_reach(county: County, village: str) -> list[dict[str, str]]:
    return [r for r in county.residents if r["village"] == village and VULNERABLE & set(r["tags"].split(";"))]


async def _start(
    sample_store: Store, servers: Servers, channels: list[str], upload_mb: int = 200
) -> AsyncIterator[Service]:
    settings = settings_for(sample_store, servers)
    settings = replace(settings, directory=replace(settings.directory, xlsx_max_unpacked_mb=upload_mb))
    users = {f"u-{role}": role for role in ("viewer", "operator", "admin")}
    async with serving(settings, users, channels=channels) as running:
        yield running


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service without channel workers (deliveries stay queued), users per role."""
    async for running in _start(sample_store, servers, []):
        yield running


@pytest.fixture
async def small_uploads(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service taking uploads of at most 1 MiB."""
    async for running in _start(sample_store, servers, [], upload_mb=1):
        yield running


@pytest.fixture
async def sending(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service with the SMS worker sending into the built-in Twilio sandbox."""
    async for running in _start(sample_store, servers, ["sms"]):
        yield running


class Browser:
    """A signed-in client: the session cookie, and the page's CSRF token from `<meta name="csrf">`."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base, self.csrf = session, base, ""

    async def sign_in(self, name: str) -> None:
        async with self.session.get(f"{self.base}/login") as response:
            page = await response.text()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token, page[:500]
        form = {"username": name, "password": PASSWORD, "csrf": token.group(1), "next": "/"}
        async with self.session.post(f"{self.base}/login", data=form, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
        page = (await self.get("/console/fleet"))[1]
        meta = re.search(r'<meta name="csrf" content="([^"]+)"', page)
        assert meta, page[:500]
        self.csrf = meta.group(1)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.base}{path}", allow_redirects=False) as response:
            return response.status, await response.text()

    async def post(self, path: str, csrf: bool = True, **form: str) -> tuple[int, str, str]:
        """(status, Location, body) of a form POST, carrying the CSRF token unless `csrf` is False."""
        data = form | ({"csrf": self.csrf} if csrf else {})
        async with self.session.post(f"{self.base}{path}", data=data, allow_redirects=False) as response:
            return response.status, response.headers.get("Location", ""), await response.text()


class Browsers:
    """Opens one signed-in client per user (each with its own cookie jar); closed after the test."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.sessions: list[aiohttp.ClientSession] = []

    async def __call__(self, role: str = "operator") -> Browser:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(session)
        browser = Browser(session, self.base)
        await browser.sign_in(f"u-{role}")
        return browser


@pytest.fixture
async def browsers(service: Service) -> AsyncIterator[Browsers]:
    opened = Browsers(service.base)
    yield opened
    for session in opened.sessions:
        await session.close()


@pytest.fixture
async def sending_browsers(sending: Service) -> AsyncIterator[Browsers]:
    opened = Browsers(sending.base)
    yield opened
    for session in opened.sessions:
        await session.close()


def request(
    area: str = VILLAGE, *, exercise: bool = True, audiences: tuple[str, ...] = ("vulnerable", "speakers")
) -> AlertRequest:
    return AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(area,),
        headline="台风将于今夜登陆",
        instruction="请低洼地区群众立即转移到村委会避灾点",
        expires=datetime.now(UTC) + timedelta(hours=2),
        audiences=audiences,
        exercise=exercise,
    )


async def cadre_confirms(service: Service, alert: Alert, resident: dict[str, str]) -> None:
    """The resident's cadre confirms them on the cadre page, as a cadre does."""
    assert alert.expires is not None
    token = await service.broadcaster.links.token(
        CADRE, alert.id, resident["cadre"], alert.expires.timestamp()
    )
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.post(
            f"{service.base}/c/{token}/confirm", data={"resident_id": resident["id"], "outcome": "reached"}
        ) as response,
    ):
        assert response.status == 200, await response.text()


def row_of(page: str, village: str) -> dict[str, str]:
    """The live page's village row: data-field → cell text."""
    found = re.search(rf'<tr data-village="{village}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, page[:2000]
    return {
        name: html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
        for name, text in re.findall(r'data-field="([a-z_]+)"[^>]*>(.*?)</(?:td|span)>', found.group(1), re.S)
    }


async def test_live_view_counts_the_sample_county_and_cadre_confirmations(
    service: Service, county: County
) -> None:
    """Per village the must-reach total is the county's, confirmations through the cadre page count,
    the confirmed are off the unreached list, which names tags and the responsible cadre's phone; the
    loudspeakers of a village that never reported are offline; the next step is the cadre reminder."""
    alert, _ = await service.broadcaster.issue(request())
    people = must_reach(county, VILLAGE)
    for person in people[:2]:
        await cadre_confirms(service, alert, person)
    view = await live_view(service.broadcaster, alert.id)
    village = next(v for v in view["villages"] if v["code"] == VILLAGE)
    assert village["must_reach_total"] == len(people)
    assert village["confirmed"] == 2
    assert village["unreached"] == len(people) - 2
    assert village["speakers_total"] == len(county.speakers_in(VILLAGE)) > 0
    assert village["speakers_offline"] == village["speakers_total"] and village["speakers_played"] == 0
    listed = {u["resident_id"]: u for u in view["unreached"]}
    assert set(listed) == {p["id"] for p in people[2:]}
    contacts = {c["id"]: c for c in county.contacts}
    someone = people[2]
    entry = listed[someone["id"]]
    assert entry["responsible"]["contact_id"] == someone["cadre"]
    assert entry["responsible"]["phone"] == contacts[someone["cadre"]]["phone"]
    assert entry["tags"] and all(not re.fullmatch(r"[a-z_]+", tag) for tag in entry["tags"])  # 独居、老人 …
    step = view["next_step"]
    assert step is not None and step["step"] == 1 and step["role"] == "cadre"
    assert 800 < view["next_step_countdown"] <= 900
    assert someone["cadre"] in {c["contact_id"] for c in step["callees"]}
    assert view["alert"]["exercise"] is True and view["alert"]["state"] == "issued"


async def test_live_page_renders_for_a_viewer_without_actions(
    service: Service, browsers: Browsers, county: County
) -> None:
    """The page shows the drill mark, state, village cells and unreached phones as tel: links; a viewer
    gets no cancel form; English is one switch away."""
    alert, _ = await service.broadcaster.issue(request())
    browser = await browsers("viewer")
    status, page = await browser.get(f"/console/alerts/{alert.id}")
    assert status == 200
    assert "【演练】" in page and 'id="alert-state"' in page and "已发布" in page
    cells = row_of(page, VILLAGE)
    assert cells["unreached"] == str(len(must_reach(county, VILLAGE)))
    assert {"confirmed", "speakers_played", "speakers_silent", "speakers_offline"} <= set(cells)
    assert 'href="tel:' in page and 'id="report-xlsx"' in page
    assert 'id="cancel-form"' not in page
    status, english = await browser.get(f"/console/alerts/{alert.id}?lang=en")
    assert status == 200 and "[DRILL]" in english and "issued" in english
    operator = await browsers("operator")
    status, page = await operator.get(f"/console/alerts/{alert.id}")
    assert 'id="cancel-form"' in page and 'id="cancel-note"' in page and 'id="cancel-silent"' in page


async def next_snapshot(content: aiohttp.StreamReader, within: float = 15) -> tuple[str, Any]:
    """The next event (name, parsed data) of a server-sent event stream."""
    name, data = "", ""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(content.readline(), within)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            return name, json.loads(data)
    raise AssertionError("no event")


async def test_event_stream_shows_a_confirmation_without_reload_and_ends_on_cancel(
    service: Service, browsers: Browsers, county: County
) -> None:
    """The SSE stream's first snapshot has the village's count; a cadre's confirmation raises it in a
    later snapshot; cancelling ends the stream with `end`."""
    alert, _ = await service.broadcaster.issue(request())
    browser = await browsers("viewer")
    people = must_reach(county, VILLAGE)
    async with browser.session.get(f"{service.base}/console/alerts/{alert.id}/events") as stream:
        assert stream.status == 200 and stream.content_type == "text/event-stream"
        name, first = await next_snapshot(stream.content)
        assert name == "snapshot"
        before = next(v for v in first["villages"] if v["code"] == VILLAGE)["confirmed"]
        await cadre_confirms(service, alert, people[0])
        while True:
            name, view = await next_snapshot(stream.content)
            if name != "snapshot":
                continue
            confirmed = next(v for v in view["villages"] if v["code"] == VILLAGE)["confirmed"]
            if confirmed == before + 1:
                break
        await service.broadcaster.cancel(alert.id, silent=True)
        names = []
        while "end" not in names:
            name, _ = await next_snapshot(stream.content)
            names.append(name)
    assert browser.csrf


async def test_cancel_form_confirms_then_cancels_with_an_all_clear(
    sending: Service, sending_browsers: Browsers
) -> None:
    """Without the CSRF token 403; the form first shows a confirm page, the confirmation cancels, queues
    the all-clear, comes back to the live page with a flash, and the audit names the operator."""
    service = sending
    alert, _ = await service.broadcaster.issue(request(audiences=("vulnerable",)))
    deadline = time.monotonic() + 30
    while (sms := (await service.broadcaster.status(alert.id))[1]["sms"]).pending or not sms.get("sent"):
        assert time.monotonic() < deadline, sms.counts
        await asyncio.sleep(0.1)
    browser = await sending_browsers("operator")
    path = f"/console/alerts/{alert.id}/cancel"
    status, _, _ = await browser.post(path, csrf=False, note="可以回家了")
    assert status == 403
    status, _, page = await browser.post(path, note="可以回家了")
    assert status == 200 and 'id="cancel-confirm"' in page and "可以回家了" in page
    assert (await service.broadcaster.alerts.get(alert.id)).state.value == "issued"
    status, location, _ = await browser.post(path, note="可以回家了", confirmed="yes")
    assert status == 303 and location == f"/console/alerts/{alert.id}?done=cancelled"
    assert (await service.broadcaster.alerts.get(alert.id)).state.value == "cancelled"
    _, counts = await service.broadcaster.status(alert.id)
    assert sum(counts["sms.clear"].counts.values()) == sms.get("sent") + sms.get("delivered")
    status, page = await browser.get(location)
    assert "解除通知已排队" in page and "已撤销" in page and 'id="cancel-form"' not in page
    audit = await service.broadcaster.alerts.audit_log(alert.id)
    assert any(e["action"] == "cancel" and e["actor"] == "u-operator" for e in audit)


async def test_resend_sends_one_cadres_link_once_per_click(
    sending: Service, sending_browsers: Browsers, county: County
) -> None:
    """A resend reaches the cadre's phone in the sandbox once more; the same click again sends nothing;
    the resend is audited with who asked."""
    service = sending
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    alert, _ = await service.broadcaster.issue(request(audiences=("vulnerable",)))
    cadre_id = must_reach(county, VILLAGE)[0]["cadre"]
    phone = next(c["phone"] for c in county.contacts if c["id"] == cadre_id)

    async def to_cadre(at_least: int) -> list[str]:
        deadline = time.monotonic() + 30
        while True:
            found = [m.body for m in sandbox.messages if m.to == phone and "/c/" in m.body]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)

    assert len(await to_cadre(1)) == 1
    browser = await sending_browsers("operator")
    path = f"/console/alerts/{alert.id}/resend"
    status, location, _ = await browser.post(path, contact_id=cadre_id, click="ab12cd34ef")
    assert status == 303 and "done=resent" in location, location
    assert len(await to_cadre(2)) == 2
    status, location, _ = await browser.post(path, contact_id=cadre_id, click="ab12cd34ef")
    assert "done=resent_again" in location
    await asyncio.sleep(1.5)  # a second send would have reached the sandbox by now (the first took ms)
    assert len(await to_cadre(2)) == 2
    status, location, _ = await browser.post(path, contact_id="nobody", click="ab12cd34ee")
    assert "error=no_task" in location
    audit = await service.broadcaster.alerts.audit_log(alert.id)
    assert [e["actor"] for e in audit if e["action"] == "resend_link"] == ["u-operator"]


async def test_requeue_puts_dead_letters_back(service: Service, browsers: Browsers) -> None:
    """A dead-lettered batch shows on the live page; requeueing empties the dead letters and says how many."""
    alert, _ = await service.broadcaster.issue(request(audiences=("vulnerable",)))
    deliveries = service.broadcaster.deliveries
    batch = Batch(
        alert.id, alert.version, "sms", "vulnerable", VILLAGE, (Recipient("r:X1", "+8613800000001", "zh-CN"),)
    )
    await deliveries.enqueue(batch, urgent=True)
    await deliveries.move(alert.id, alert.version, "sms", [("r:X1", "L")])
    await deliveries.redis.xadd(deliveries.dead_key("sms"), {"b": batch.to_json(), "reason": "test"})
    browser = await browsers("operator")
    _, page = await browser.get(f"/console/alerts/{alert.id}")
    assert 'id="requeue-sms"' in page
    status, location, _ = await browser.post("/console/deadletters/requeue", channel="sms", alert_id=alert.id)
    assert status == 303 and location == f"/console/alerts/{alert.id}?done=requeued&n=1"
    assert await service.broadcaster.dead_count("sms") == 0
    assert await deliveries.state(alert.id, alert.version, "sms", "r:X1") == "queued"
    viewer = await browsers("viewer")
    status, _, _ = await viewer.post("/console/deadletters/requeue", channel="sms", alert_id=alert.id)
    assert status == 403


async def test_report_downloads_name_the_file_in_chinese(
    service: Service, browsers: Browsers, county: County
) -> None:
    """The xlsx opens with its summary sheet and the unreached residents; the CSV has a BOM and the same
    tables; both are attachments with an RFC 5987 zh file name."""
    alert, _ = await service.broadcaster.issue(request(audiences=("vulnerable",)))
    browser = await browsers("viewer")
    async with browser.session.get(f"{service.base}/console/alerts/{alert.id}/report.xlsx") as response:
        assert response.status == 200
        assert response.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        disposition = response.headers["Content-Disposition"]
        body = await response.read()
    assert disposition.startswith("attachment;") and "filename*=UTF-8''" in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]).startswith("复盘报告-台风-")
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert "概况" in book.sheetnames and "未确认人员" in book.sheetnames
    names = {row[0] for row in book["未确认人员"].iter_rows(min_row=2, values_only=True)}
    assert names == {p["name"] for p in must_reach(county, VILLAGE)}
    async with browser.session.get(f"{service.base}/console/alerts/{alert.id}/report.csv") as response:
        assert response.status == 200 and response.content_type == "text/csv"
        assert unquote(response.headers["Content-Disposition"]).endswith(".csv")
        text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufeff# 概况") and must_reach(county, VILLAGE)[0]["name"] in text


async def test_fleet_shows_an_offline_loudspeaker(
    service: Service, browsers: Browsers, county: County
) -> None:
    """One loudspeaker reporting online, the others silent: the offline filter lists only those, and the
    township counts add up."""
    devices = sorted(county.speakers_in(VILLAGE))
    assert len(devices) >= 2
    store = service.app[STORE]
    status = {
        "online": True,
        "ts": None,
        "volume": 80,
        "fault": None,
        "seen": "2026-12-04T10:00:00.000+08:00",
    }
    await store.redis.hset(status_key(store), devices[0], json.dumps(status))
    browser = await browsers("viewer")
    code, page = await browser.get(f"/console/fleet?township={VILLAGE[:9]}&offline=1")
    assert code == 200
    assert f'data-device="{devices[0]}"' not in page
    assert f'data-device="{devices[1]}"' in page and "离线" in page
    _, everything = await browser.get(f"/console/fleet?township={VILLAGE[:9]}")
    assert f'data-device="{devices[0]}"' in everything and "12月4日 10:00" in everything
    township = [s for s in county.speakers if s["village"].startswith(VILLAGE[:9])]
    found = re.search(rf'<tr data-township="{VILLAGE[:9]}"[^>]*>(.*?)</tr>', everything, re.S)
    assert found
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", found.group(1), re.S)
    ]
    assert cells[1:] == [str(len(township)), "1", str(len(township) - 1)]


VILLAGES_CSV = "code,name,township,county,lat,lon\n331099109201,新村,测试镇,测试县,28.1,121.1\n3310991092,短码村,测试镇,测试县,28.2,121.2\n"
RESIDENTS_CSV = (
    "id,name,phone,village,tags,language,wechat_openid,cadre\n"
    "T-R1,测试甲,13800138001,331099109201,老人;独居,,,\n"
    "T-R2,,13800138002,331099109201,,,,\n"
    "T-R3,测试丙,13800138003,12345,,,,\n"
)


def problems_of(page: str) -> list[str]:
    """The report page's problem rows as `file:line: message`, the CLI's words."""
    rows = re.findall(
        r'<tr class="(?:error|warning)" data-line="(\d+)"><td>(.*?)</td><td>\d+</td><td>.*?</td><td>.*?</td>'
        r'<td class="message">(.*?)</td></tr>',
        page,
        re.S,
    )
    return sorted(f"{html.unescape(f)}:{line}: {html.unescape(m)}" for line, f, m in rows)


async def test_directory_upload_reports_rows_as_the_cli_does(
    service: Service,
    browsers: Browsers,
    tmp_path: Path,
    servers: Servers,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Uploading a villages and a residents file with bad rows imports the good rows and lists each bad
    one with file, line and what to fix — the same lines `warning directory import` prints; a viewer
    may not upload; the upload is audited."""
    villages, residents = tmp_path / "villages.csv", tmp_path / "residents.csv"
    villages.write_text(VILLAGES_CSV, encoding="utf-8")
    residents.write_text(RESIDENTS_CSV, encoding="utf-8")
    cli_settings = replace(
        Settings(), redis=RedisSettings(url=servers.redis_url, namespace=namespace, allow_volatile=True)
    )
    assert await _directory_import(cli_settings, [villages, residents], quiet=True) == 2
    printed = capsys.readouterr()
    cli_lines = sorted(
        line.replace(f"{tmp_path}/", "")
        for line in printed.err.splitlines()
        if re.match(r"^\S+\.csv:\d+: ", line.replace(f"{tmp_path}/", ""))
    )
    assert len(cli_lines) >= 3, printed.err

    viewer = await browsers("viewer")
    _, page = await viewer.get("/console/directory")
    assert 'id="directory-upload"' not in page and "合计" in page
    admin = await browsers("admin")
    _, page = await admin.get("/console/directory")
    assert 'id="directory-upload"' in page
    form = aiohttp.FormData()
    form.add_field("csrf", admin.csrf)
    form.add_field("files", villages.read_bytes(), filename="villages.csv", content_type="text/csv")
    form.add_field("files", residents.read_bytes(), filename="residents.csv", content_type="text/csv")
    async with admin.session.post(
        f"{service.base}/console/directory?csrf={admin.csrf}", data=form
    ) as response:
        assert response.status == 200
        report = await response.text()
    assert problems_of(report) == cli_lines
    assert await service.broadcaster.directory.resident("T-R1") is not None
    assert await service.broadcaster.directory.resident("T-R3") is None
    audit = await service.broadcaster.alerts.audit_log("directory")
    assert any(e["action"] == "directory_import" and e["actor"] == "u-admin" for e in audit)


async def test_an_upload_over_the_limit_imports_nothing_and_says_the_limit(
    small_uploads: Service, servers: Servers
) -> None:
    """A 2 MiB upload against a 1 MiB budget: 413, the page names the limit, nothing is imported (the
    body is streamed, so the app's 1 MiB body limit is not what refuses it)."""
    opened = Browsers(small_uploads.base)
    admin = await opened("admin")
    try:
        rows = "".join(f"B-{i},测试{i},,331099101201,,,,\n" for i in range(40_000))
        body = ("id,name,phone,village,tags,language,wechat_openid,cadre\n" + rows).encode()
        assert len(body) > 1024 * 1024
        form = aiohttp.FormData()
        form.add_field("files", body, filename="residents.csv", content_type="text/csv")
        async with admin.session.post(
            f"{small_uploads.base}/console/directory?csrf={admin.csrf}", data=form
        ) as response:
            assert response.status == 413
            page = await response.text()
        assert "1 MiB" in page and 'id="upload-problem"' in page
        assert await small_uploads.broadcaster.directory.resident("B-1") is None
        form = aiohttp.FormData()
        form.add_field("files", body[:2000].rsplit(b"\n", 1)[0] + b"\n", filename="residents.csv")
        async with admin.session.post(f"{small_uploads.base}/console/directory", data=form) as response:
            assert response.status == 403  # no CSRF token
    finally:
        for session in opened.sessions:
            await session.close()


async def test_fifty_viewers_cost_about_one_snapshot_a_second(
    service: Service, browsers: Browsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty open event streams on one alert each get their snapshot, while the snapshot is built about
    once a second for all of them (the shared cache), not fifty times."""
    import warning.web.console_live as console_live

    builds = 0
    real = console_live.live_view

    async def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal builds
        builds += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(console_live, "live_view", counted)
    alert, _ = await service.broadcaster.issue(request())
    viewer = await browsers("viewer")

    async def watch(index: int) -> str:
        await asyncio.sleep(index * 0.02)  # spread over a second, as real viewers come and go
        async with viewer.session.get(f"{service.base}/console/alerts/{alert.id}/events") as stream:
            name, view = await next_snapshot(stream.content)
            assert name == "snapshot" and view["alert"]["id"] == alert.id
            await asyncio.sleep(3)
            return name

    started = time.monotonic()
    names = await asyncio.gather(*(watch(i) for i in range(50)))
    elapsed = time.monotonic() - started
    assert names == ["snapshot"] * 50
    assert builds <= elapsed + 3, (builds, elapsed)  # about one a second, whatever the viewers
