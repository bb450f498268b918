"""The console's audit page (admins): newest first, filters, the chain's status and "verify now"; the
CSV export keeps formulas inert; `warning audit export` filters by object; the client IP comes from
X-Forwarded-For only behind a trusted proxy; a trimmed log says how many were trimmed; a verifier with
another key says so instead of crying tampering."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Servers
from tests.integration.console_service import Service, sign_in, start
from tests.integration.test_audit_chain import verify
from tests.integration.test_users_password import cli
from warning.alerts import AlertStore
from warning.audit import AuditLog
from warning.store import Store
from warning.web.app import BROADCASTER


@pytest.fixture
async def service(store: Store, servers: Servers) -> AsyncIterator[Service]:
    async for running in start(store, servers, trust_proxy=True):
        yield running


async def test_the_page_filters_and_verifies(service: Service) -> None:
    """An admin sees entries newest first, filtered by object; "verify now" records the chain's status."""
    alerts = service.app[BROADCASTER].alerts
    await alerts.audit(actor="张三", role="operator", action="issue", obj="W-ONE", result="ok")
    await alerts.audit(actor="李四", role="approver", action="approve", obj="W-TWO", result="ok")
    client, csrf = await sign_in(service.base, "u-admin")
    async with client:
        async with client.get(f"{service.base}/console/audit") as page:
            text = await page.text()
            assert page.status == 200 and "尚未校验" in text
            assert text.index("李四") < text.index("张三")  # newest first
        async with client.get(f"{service.base}/console/audit?object=W-ONE") as page:
            text = await page.text()
            assert "张三" in text and "李四" not in text
        async with client.post(f"{service.base}/console/audit/verify", data={"csrf": csrf}) as page:
            assert page.status == 200 and "审计日志完整" in await page.text()


async def test_csv_export_keeps_formulas_inert(service: Service) -> None:
    """A cell a spreadsheet would run (=, +, -, @) is exported with a leading apostrophe."""
    await service.app[BROADCASTER].alerts.audit(
        actor='=HYPERLINK("http://evil")', role="operator", action="issue", obj="W-CSV", result="ok"
    )
    client, _ = await sign_in(service.base, "u-admin")
    async with client, client.get(f"{service.base}/console/audit.csv?object=W-CSV") as answer:
        text = await answer.text()
        assert answer.status == 200 and "attachment" in answer.headers["Content-Disposition"]
        assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


async def test_forwarded_address_is_used_behind_a_trusted_proxy(service: Service) -> None:
    """With server.trust_proxy the audit records X-Forwarded-For's first hop for a failed sign-in."""
    async with aiohttp.ClientSession() as client:
        headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "Cookie": "warning_login=" + "k" * 32}
        form = {"username": "u-viewer", "password": "wrong password", "csrf": "k" * 32}
        async with client.post(f"{service.base}/login", data=form, headers=headers) as answer:
            assert answer.status == 401
    entries = await service.app[BROADCASTER].alerts.audit_log("u-viewer")
    assert entries[-1]["ip"] == "203.0.113.7"


async def test_cli_export_filters_by_object(store: Store, servers: Servers) -> None:
    """`warning audit export --format json --object ID` prints only that object's entries."""
    alerts = AlertStore(store.redis, store.keys)
    for obj in ("A", "B", "A"):
        await alerts.audit(actor="x", role="operator", action="issue", obj=obj, result="ok")
    done = cli(servers, store, "audit", "export", "--format", "json", "--object", "A")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["object"] for r in rows] == ["A", "A"] and [r["seq"] for r in rows] == ["1", "3"]


async def test_a_trimmed_log_verifies_and_says_how_many_went(store: Store, servers: Servers) -> None:
    """With a small MAXLEN the oldest entries go; verification starts at the first left and counts the rest."""
    log = AuditLog(store.redis, store.keys, maxlen=10)
    for i in range(400):
        await log.append(actor="x", role="operator", action="noise", obj=f"N{i}", result="ok")
    first = int((await store.redis.xrange(log.stream, count=1))[0][1]["seq"])
    assert first > 1
    done = verify(servers, store)
    assert done.returncode == 0, done.stderr
    assert f"最早的 {first - 1} 条" in done.stdout


async def test_another_key_is_named_as_such(store: Store, servers: Servers) -> None:
    """A log written with server.secret, verified without it: exit 1 saying the key differs."""
    await AuditLog(store.redis, store.keys, secret="s" * 32).append(
        actor="x", role="admin", action="user.add", obj="y", result="ok"
    )
    done = verify(servers, store)
    assert done.returncode == 1 and "WARNING_SERVER_SECRET" in done.stderr
