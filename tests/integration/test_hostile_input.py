"""Bounded cost of hostile input (issue 10 item 7), against real Redis, a real broker and real HTTP:

- an XLSX zip bomb is refused from its zip directory before openpyxl inflates it (RSS stays flat), and
  the row and cell budgets hold while a sheet streams;
- junk requests to `/c/{token}` are limited per client (429 + Retry-After) and counted, the audit
  stream gets one summary per client per minute, and a real cadre on another address is unaffected;
- `/readyz` makes at most one provider call per channel per TTL, however many probes hit it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest
from aiohttp import web

from tests.conftest import Servers, free_port, start_app
from tests.integration.conftest import County
from warning.broadcast import AlertRequest
from warning.config import DirectorySettings, MqttSettings, Settings, TwilioSettings
from warning.directory.importer import import_files
from warning.directory.read import open_tables
from warning.directory.rows import RowProblem
from warning.directory.store import Directory
from warning.errors import ImportFileError
from warning.i18n import set_language
from warning.links import CADRE, link_expiry
from warning.model import Alert, Level
from warning.sandbox.serve import serve
from warning.sandbox.twilio import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM, TwilioSandbox
from warning.store import Store
from warning.web.app import BROADCASTER, SETTINGS, STORE, THROTTLE, build_app
from warning.web.health import FAILED_CHECK_TTL

VILLAGE = "331099101201"
HEADER = ["code", "name", "township", "county", "lat", "lon"]

# ---- XLSX budgets ----------------------------------------------------------------------------------

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="villages" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/></Relationships>'
)


def _cells(values: list[str]) -> str:
    return "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in values)


def write_bomb(path: Path, unpacked_mb: int) -> Path:
    """A valid-looking villages workbook whose sheet XML is `unpacked_mb` MB of one repeated row."""
    row = "<row>" + _cells(["331099101201", "上村", "城关镇", "测试县", "28.1", "121.1"]) + "</row>"
    chunk = (row * (1024 * 1024 // len(row.encode()) + 1)).encode()[: 1024 * 1024]
    chunk = chunk[: chunk.rfind(b"</row>") + len(b"</row>")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                + ("<row>" + _cells(HEADER) + "</row>").encode()
            )
            for _ in range(unpacked_mb):
                sheet.write(chunk)
            sheet.write(b"</sheetData></worksheet>")
    return path


def refusal(path: Path, limits: DirectorySettings | None = None, language: str = "en") -> str:
    set_language(language)
    try:
        with pytest.raises(ImportFileError) as refused:
            open_tables(path, limits or DirectorySettings())
    finally:
        set_language("zh-CN")
    return str(refused.value)


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "villages.xlsx", unpacked_mb=260)
    assert bomb.stat().st_size < 3 * 1024 * 1024  # a small file …
    message = refusal(bomb)  # … that would unpack to 260 MB of XML
    assert "260 MB" in message and "200 MB" in message and "directory.xlsx_max_unpacked_mb" in message
    assert "split the file" in message and "CSV UTF-8" in message
    zh = refusal(bomb, language="zh-CN")
    assert "解压后有 260 MB" in zh and "拆分" in zh


def test_a_highly_compressed_member_is_refused_by_its_ratio(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "villages.xlsx", unpacked_mb=20)  # under the size budget
    message = refusal(bomb)
    assert "xl/worksheets/sheet1.xml" in message and "directory.xlsx_max_ratio" in message
    assert "100:1" in message and "zip bomb" in message


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "villages.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(20):
            archive.writestr(f"junk/{i}.xml", "<x/>")
    message = refusal(path, DirectorySettings(xlsx_max_members=10))
    assert "20 parts" in message and "directory.xlsx_max_members" in message


_RSS_PROBE = """
import sys
from pathlib import Path
from warning.directory.read import open_tables
from warning.errors import ImportFileError

def hwm_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")

before = hwm_kb()
try:
    open_tables(Path(sys.argv[1]))
except ImportFileError as exc:
    print("refused", (hwm_kb() - before) // 1024, str(exc).splitlines()[0][:200])
else:
    print("imported", (hwm_kb() - before) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_zip_bomb_never_inflates_memory(tmp_path: Path) -> None:
    """In a fresh process: refusing the bomb raises the peak RSS by a few MB, not by gigabytes."""
    bomb = write_bomb(tmp_path / "villages.xlsx", unpacked_mb=2000)  # ~2 GB of XML in a few MB
    assert bomb.stat().st_size < 12 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(bomb)], capture_output=True, text=True, timeout=120, check=True
    )
    outcome, grown_mb, *_ = done.stdout.split(maxsplit=2)
    assert outcome == "refused", done.stdout
    assert int(grown_mb) < 50, done.stdout


def _workbook(path: Path, rows: list[list[str]]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "villages"
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def _lie_about_dimension(path: Path, ref: str) -> None:
    """Rewrite the sheet's declared <dimension> (writers do get it wrong; a hostile one lies)."""
    source = path.with_suffix(".orig.xlsx")
    path.rename(source)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                start = data.index(b"<dimension ref=")
                end = data.index(b"/>", start) + 2
                data = data[:start] + f'<dimension ref="{ref}"/>'.encode() + data[end:]
            new.writestr(info, data)


def _villages(count: int) -> list[list[str]]:
    return [HEADER] + [
        [f"3310991012{i:02d}", f"村{i}", "城关镇", "测试县", "28.1", "121.1"] for i in range(count)
    ]


async def test_row_budget_refuses_a_file_before_import_and_while_streaming(
    store: Store, tmp_path: Path
) -> None:
    limits = DirectorySettings(max_rows=20)
    directory = Directory(store)
    problems: list[RowProblem] = []
    declared = _workbook(tmp_path / "declared.xlsx", _villages(40))
    report = await import_files(directory, [declared], on_problem=problems.append, limits=limits)
    assert len(report.bad_files) == 1 and "directory.max_rows" in report.bad_files[0]
    assert await directory.village_codes() == []  # nothing imported

    lying = _workbook(tmp_path / "lying.xlsx", _villages(40))
    _lie_about_dimension(lying, "A1:F2")
    with pytest.raises(ImportFileError) as refused:
        await import_files(directory, [lying], on_problem=problems.append, limits=limits)
    assert "directory.max_rows" in str(refused.value) and "20" in str(refused.value)
    assert len(await directory.village_codes()) <= 20  # stopped at the budget

    within = _workbook(tmp_path / "within.xlsx", _villages(19))
    report = await import_files(directory, [within], on_problem=problems.append, limits=limits)
    assert report.bad_files == [] and len(await directory.village_codes()) == 19


def test_cell_budget_names_the_row(tmp_path: Path) -> None:
    rows = _villages(3)
    rows[2][1] = "村" * 5000  # (openpyxl itself cuts cells at Excel's 32,767 characters)
    path = _workbook(tmp_path / "long.xlsx", rows)
    [table] = open_tables(path, DirectorySettings(max_cell_chars=1000))
    with pytest.raises(ImportFileError) as refused:
        list(table.rows())
    assert ":3:" in str(refused.value) and "5000" in str(refused.value)
    assert "directory.max_cell_chars" in str(refused.value)
    csv_path = tmp_path / "long.csv"
    csv_path.write_text("\n".join(",".join(r) for r in rows), encoding="utf-8")
    [table] = open_tables(csv_path, DirectorySettings(max_cell_chars=1000))
    with pytest.raises(ImportFileError, match="max_cell_chars"):
        list(table.rows())


# ---- the link pages --------------------------------------------------------------------------------


@dataclass
class Service:
    app: web.Application
    base: str
    alert: Alert


def _settings(store: Store, servers: Servers, port: int, **server: Any) -> Settings:
    base = Settings()
    return replace(
        base,
        server=replace(
            base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}", **server
        ),
        redis=replace(base.redis, url=servers.redis_url, namespace=store.keys.namespace, allow_volatile=True),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
    )


async def _start(settings: Settings, channels: list[str]) -> tuple[web.AppRunner, web.Application]:
    app = build_app(settings, channels=channels)
    runner = await start_app(app, settings.server.port)
    return runner, app


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service (no channel workers) on 127.0.0.1, the sample county and an issued alert."""
    settings = _settings(sample_store, servers, free_port())
    runner, app = await _start(settings, channels=[])
    try:
        alert, _ = await app[BROADCASTER].issue(
            AlertRequest(
                event="台风",
                level=Level.ORANGE,
                areas=(VILLAGE,),
                headline="台风将于今夜登陆",
                instruction="请立即转移到村委会。",
                expires=datetime.now(UTC) + timedelta(hours=2),
                audiences=("vulnerable",),
            )
        )
        yield Service(app, settings.server.base_url, alert)
    finally:
        await runner.cleanup()


def _from(address: str) -> aiohttp.ClientSession:
    """A client whose requests come from `address` (any 127.x.y.z is ours on Linux loopback)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=50))


async def _audit_size(store: Store) -> tuple[int, int]:
    key = store.keys.key("audit")
    return int(await store.redis.xlen(key)), int(await store.redis.memory_usage(key) or 0)


async def test_junk_link_requests_are_limited_counted_and_summarised_once(
    service: Service, county: County
) -> None:
    app, store = service.app, service.app[STORE]
    broadcaster, throttle = app[BROADCASTER], app[THROTTLE]
    limit = app[SETTINGS].server.link_refusals_per_minute
    [contact, *_] = await broadcaster.reach.cadres(service.alert.id)
    token = await broadcaster.links.token(
        CADRE, service.alert.id, contact, link_expiry(service.alert.sent, service.alert.expires)
    )
    body, _, mac = token.rpartition(".")
    forged = f"{body}.{'A' * len(mac)}"
    entries_before, bytes_before = await _audit_size(store)

    statuses: Counter[int] = Counter()
    waits: set[str] = set()
    async with _from("127.0.0.1") as junk:

        async def attempt() -> None:
            async with junk.get(f"{service.base}/c/{forged}") as response:
                statuses[response.status] += 1
                if response.status == 429:
                    waits.add(response.headers["Retry-After"])
                    text = await response.text()
                    assert "请稍后再试" in text

        for _ in range(30):  # 3,000 requests, 100 at a time
            await asyncio.gather(*(attempt() for _ in range(100)))
        # The guesser's own real link is refused now too: the limit is the client's, not the token's.
        async with junk.get(f"{service.base}/c/{token}") as response:
            assert response.status == 429

    assert sum(statuses.values()) == 3000
    # 20 invalid links a minute, then 429. Requests already admitted when the 20th refusal is counted
    # still get their 403 (at most a burst of them), and a minute boundary may allow a second round.
    burst = app[SETTINGS].server.link_burst
    assert limit <= statuses[403] <= 2 * (limit + burst), statuses
    assert statuses[429] == 3000 - statuses[403], statuses
    assert waits and all(1 <= int(w) <= 60 for w in waits), waits

    # A real cadre from another address is unaffected.
    async with _from("127.0.0.2") as cadre, cadre.get(f"{service.base}/c/{token}") as response:
        assert response.status == 200
        assert "叫应任务" in await response.text()

    # Nothing was appended per request …
    entries_after, _ = await _audit_size(store)
    assert entries_after == entries_before
    # … the refusals were counted …
    minutes = {int(time.time() // 60) * 60, int(time.time() // 60) * 60 - 60}
    counted = [await throttle.counts("127.0.0.1", m) for m in minutes]
    assert sum(sum(c.values()) for c in counted) == 3001
    # … and once the minute is over, one summary per client per minute is written.
    written = await throttle.sweep(broadcaster.alerts.audit, now=time.time() + 120)
    assert 1 <= written <= 2
    entries, size = await _audit_size(store)
    assert entries - entries_before == written
    print(
        f"3,000 junk requests: {dict(statuses)}; audit +{entries - entries_before} entries, +{size - bytes_before} B"
    )
    assert size - bytes_before < 2048, size - bytes_before
    summaries = [e for e in await broadcaster.alerts.audit_log() if e["action"] == "refused_link_attempts"]
    assert len(summaries) == written and all(e["actor"] == "client:127.0.0.1" for e in summaries)
    told = [re.search(r"(\d+) refused attempts|有 (\d+) 次", e["detail"]) for e in summaries]
    assert sum(int(m[1] or m[2]) for m in told if m) == 3001, [e["detail"] for e in summaries]
    assert await throttle.sweep(broadcaster.alerts.audit, now=time.time() + 120) == 0  # never twice

    async with aiohttp.ClientSession() as session, session.get(f"{service.base}/metrics") as response:
        metrics = await response.text()
    assert f'warning_link_refusals_total{{reason="forbidden"}} {float(statuses[403])}' in metrics
    assert f'warning_link_refusals_total{{reason="throttled"}} {float(statuses[429] + 1)}' in metrics


# ---- /readyz ----------------------------------------------------------------------------------------


@pytest.fixture
async def counted_twilio() -> AsyncIterator[tuple[TwilioSandbox, TwilioSettings, Counter[str]]]:
    """The Twilio sandbox over HTTP, counting account fetches (what a channel check calls)."""
    sandbox = TwilioSandbox()
    fetches: Counter[str] = Counter()
    app = sandbox.app()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith(f"/Accounts/{SANDBOX_ACCOUNT_SID}.json"):
            fetches["account"] += 1
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.insert(0, count)
    async with serve(app) as url:
        yield (
            sandbox,
            TwilioSettings(
                account_sid=SANDBOX_ACCOUNT_SID,
                auth_token=SANDBOX_AUTH_TOKEN,
                from_number=SANDBOX_FROM,
                base_url=url,
            ),
            fetches,
        )


async def test_readyz_calls_each_provider_at_most_once_per_ttl(
    store: Store, servers: Servers, counted_twilio: tuple[TwilioSandbox, TwilioSettings, Counter[str]]
) -> None:
    sandbox, twilio, fetches = counted_twilio
    settings = replace(_settings(store, servers, free_port(), readyz_check_ttl=1.5), twilio=twilio)
    runner, _ = await _start(settings, channels=["sms"])
    url = f"{settings.server.base_url}/readyz"
    try:
        async with aiohttp.ClientSession() as session:

            async def probe() -> dict[str, Any]:
                async with session.get(url) as response:
                    assert response.status == 200
                    document: dict[str, Any] = await response.json()
                    return document

            baseline = fetches["account"]  # a worker may check its channel when it starts
            answers = await asyncio.gather(*(probe() for _ in range(50)))
            assert fetches["account"] - baseline <= 1
            for document in answers:
                check = document["checks"]["channel:sms"]
                assert check["ok"] is True and check["checked_s_ago"] >= 0
                assert document["checks"]["redis"]["ok"] and document["checks"]["mqtt"]["ok"]
            first = fetches["account"]

            # Past the TTL: the stale answer comes back at once (its age shows) and one refresh runs.
            await asyncio.sleep(1.6)
            stale = await asyncio.gather(*(probe() for _ in range(50)))
            assert max(d["checks"]["channel:sms"]["checked_s_ago"] for d in stale) >= 1.5
            await asyncio.sleep(0.3)
            fresh = await probe()
            assert fresh["checks"]["channel:sms"]["checked_s_ago"] < 1.0
            assert fetches["account"] - first == 1

            # A failing provider makes the service degraded; once it is back, that clears within
            # seconds (a failure is kept FAILED_CHECK_TTL, not the whole TTL).
            sandbox.set_faults(error_rate=1.0)
            await asyncio.sleep(1.6)
            await probe()
            await asyncio.sleep(0.3)
            down = await probe()
            assert down["status"] == "degraded" and down["checks"]["channel:sms"]["ok"] is False
            sandbox.set_faults(error_rate=0.0)
            deadline = time.monotonic() + FAILED_CHECK_TTL + 2
            while (await probe())["status"] != "ready":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
