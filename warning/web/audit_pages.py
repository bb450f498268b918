"""The console's audit log: GET /console/audit (newest first, paged, filters by object, actor, action,
date; the chain's last verification and a "verify now" button), POST /console/audit/verify, and
GET /console/audit.csv (the same filters, spreadsheet-safe cells). Admins only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from warning.audit import AuditLog
from warning.i18n import current_language, t
from warning.views import safe_cell
from warning.web.access import requires
from warning.web.keys import BROADCASTER
from warning.web.pages import render_page

PAGE = 50
CSV_COLUMNS = ("id", "seq", "ts", "actor", "role", "ip", "action", "object", "result", "detail", "hash")
_FILTERS = ("object", "actor", "action", "since", "until")


def _log(request: web.Request) -> AuditLog:
    return request.app[BROADCASTER].alerts.audit_log_store


def _date(value: str, *, end: bool) -> datetime | None:
    """A day (2026-08-01, Beijing time) or an ISO time; None if empty or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC) - timedelta(hours=8)  # a bare day or time is Beijing's
    if end and len(value) <= 10:
        when += timedelta(days=1)
    return when


def _filters(request: web.Request) -> dict[str, str]:
    return {name: request.query.get(name, "").strip()[:200] for name in _FILTERS}


@requires("admin")
async def audit_page(request: web.Request) -> web.Response:
    filters = _filters(request)
    cursor = request.query.get("cursor", "")
    if cursor and not all(c.isdigit() or c == "-" for c in cursor):
        cursor = ""
    log = _log(request)
    page = await log.page(
        cursor=cursor,
        limit=PAGE,
        obj=filters["object"],
        actor=filters["actor"],
        action=filters["action"],
        since=_date(filters["since"], end=False),
        until=_date(filters["until"], end=True),
    )
    status = await log.last_verification()
    summary = status.get("summary_en" if current_language() == "en" else "summary_zh", "")
    verified_at = (
        datetime.fromtimestamp(float(status["at"]), UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if status.get("at")
        else ""
    )
    query = {k: v for k, v in filters.items() if v}
    return render_page(
        request,
        "console/audit.html",
        title=t("审计日志", "Audit log"),
        entries=page.entries,
        next_cursor=page.next,
        filters=filters,
        filter_query=query,
        chain_ok=status.get("ok"),
        chain_summary=summary,
        verified_at=verified_at,
        total=await log.count(),
    )


@requires("admin")
async def verify_now(request: web.Request) -> web.Response:
    await _log(request).verify()
    return web.Response(status=303, headers={"Location": "/console/audit"})


@requires("admin")
async def audit_csv(request: web.Request) -> web.StreamResponse:
    filters = _filters(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="audit.csv"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    await response.write(_row(["\ufeff" + CSV_COLUMNS[0], *CSV_COLUMNS[1:]]))
    async for entry in _log(request).scan(
        since=_date(filters["since"], end=False),
        until=_date(filters["until"], end=True),
        obj=filters["object"],
        actor=filters["actor"],
        action=filters["action"],
    ):
        await response.write(_row([safe_cell(entry.get(c, "")) for c in CSV_COLUMNS]))
    await response.write_eof()
    return response


def _row(cells: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue().encode()


def audit_routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/console/audit", audit_page),
        web.post("/console/audit/verify", verify_now),
        web.get("/console/audit.csv", audit_csv),
    ]
