"""The console's fleet and directory pages (served under live_routes, see console_live.py).

    GET  /console/fleet        (read)  loudspeakers per township / village: online, last seen, last played
    GET  /console/directory    (read)  directory stats as `warning directory stats` prints them; upload form
    POST /console/directory    (admin) multipart CSV/XLSX file(s) → the import's row-level report page

The upload is streamed part by part to a temporary folder (never read whole into memory), at most
`directory.xlsx_max_unpacked_mb` MiB in all, then imported exactly as `warning directory import` does
(warning/directory/importer.py), and reported in the words of warning/directory/report.py.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from warning.directory.importer import ImportReport, import_files
from warning.directory.report import bad_file_notes, errors_note, report_header, report_rows, unassigned_note
from warning.directory.rows import RowProblem
from warning.errors import ImportFileError
from warning.fleet import fleet_view
from warning.i18n import current_language, t
from warning.labels import label
from warning.live import tag_names
from warning.users import User
from warning.web.access import requires
from warning.web.bodies import query_value
from warning.web.keys import BROADCASTER, DIRECTORY, READ_MODEL, SETTINGS
from warning.web.pages import PAGE_CSRF, PAGE_USER, render_page

PROBLEMS_SHOWN = 1000  # problem lines on the report page (the counts are complete)
CHUNK = 64 * 1024
MAX_FILES = 20
_SAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


class UploadTooLarge(Exception):
    """The upload is over the directory's byte budget."""


class UploadRefused(Exception):
    """The upload is not one the page accepts (no file, bad token, too many files)."""


def _safe_name(filename: str, taken: set[str]) -> str:
    """A file name fit for the temp folder, keeping what the user calls it (the report names it)."""
    name = _SAFE.sub("_", Path(filename.replace("\\", "/")).name).strip("._") or "upload.csv"
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
    taken.add(candidate)
    return candidate


async def _save_part(part: BodyPartReader, path: Path, budget: int) -> int:
    """Write one file part to `path` chunk by chunk; returns its size. Raises UploadTooLarge past `budget`."""
    size = 0
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > budget:
                raise UploadTooLarge
            await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)
    return size


async def receive_upload(request: web.Request, folder: Path, budget: int) -> list[Path]:
    """The uploaded files, saved under `folder`, after checking the form's CSRF token (the console's
    middleware cannot read a multipart body without consuming it). Raises UploadTooLarge / UploadRefused."""
    expected = request.get(PAGE_CSRF, "")
    token = query_value(request, "csrf")
    saved: list[Path] = []
    taken: set[str] = set()
    used = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise UploadRefused
        if part.name == "csrf":
            token = (await part.read_chunk(256)).decode("utf-8", "replace")
        elif part.filename:
            if len(saved) >= MAX_FILES:
                raise UploadRefused
            path = folder / _safe_name(part.filename, taken)
            used += await _save_part(part, path, budget - used)
            saved.append(path)
        else:
            await part.release()
    if expected and not secrets.compare_digest(token, expected):
        raise web.HTTPForbidden(
            text=t("缺少或无效的 CSRF 令牌，请刷新页面再试", "missing or invalid CSRF token")
        )
    if not saved:
        raise UploadRefused
    return saved


def _problem_json(problem: RowProblem, folder: Path) -> dict[str, Any]:
    return {
        "file": problem.source.replace(f"{folder}/", ""),
        "line": problem.line,
        "column": problem.column,
        "severity": problem.severity,
        "message": problem.message,
        "text": str(problem).replace(f"{folder}/", ""),
    }


def _report_json(report: ImportReport, problems: list[RowProblem], more: int, folder: Path) -> dict[str, Any]:
    rows = [[str(row[0]).replace(f"{folder}/", ""), *row[1:]] for row in report_rows(report)]
    return {
        "header": report_header(),
        "rows": rows,
        "problems": [_problem_json(p, folder) for p in problems],
        "more_problems": more,
        "notes": [n for n in (unassigned_note(report), *bad_file_notes(report), errors_note(report)) if n],
        "errors": report.errors,
    }


def _user(request: web.Request) -> User:
    user = request.get(PAGE_USER)
    if not isinstance(user, User):
        raise web.HTTPForbidden(text=t("请先登录", "sign in first"))
    return user


def fleet_routes() -> list[web.AbstractRouteDef]:
    @requires("read")
    async def fleet(request: web.Request) -> web.Response:
        """Loudspeakers of one township per page, with every township's counts; ?offline=1 filters."""
        service = request.app[READ_MODEL] if READ_MODEL in request.app else request.app[BROADCASTER]
        view = await fleet_view(
            service, query_value(request, "township"), offline_only=query_value(request, "offline") == "1"
        )
        return render_page(request, "console/fleet.html", title=t("大喇叭", "Loudspeakers"), view=view)

    async def _directory_page(request: web.Request, *, status: int = 200, problem: str = "") -> web.Response:
        stats = await request.app[DIRECTORY].stats()
        townships: dict[str, dict[str, Any]] = {}
        for v in stats.villages:
            row = townships.setdefault(
                v.code[:9],
                {
                    "code": v.code[:9],
                    "name": v.township,
                    "villages": 0,
                    "residents": 0,
                    "vulnerable": 0,
                    "speakers": 0,
                },
            )
            row["villages"] += 1
            row["residents"] += v.residents
            row["vulnerable"] += v.vulnerable
            row["speakers"] += v.speakers
        budget = request.app[SETTINGS].directory.xlsx_max_unpacked_mb
        english = current_language() == "en"
        tags = [(tag_names([tag], english)[0], n) for tag, n in stats.tags().items()]
        roles = [(label("role", role), n) for role, n in stats.contacts_by_role.items()]
        return render_page(
            request,
            "console/directory.html",
            status=status,
            title=t("名录", "Directory"),
            stats=stats,
            townships=list(townships.values()),
            budget_mb=budget,
            tags=tags,
            roles=roles,
            problem=problem,
            may_admin=_user(request).may("admin"),
        )

    @requires("read")
    async def directory(request: web.Request) -> web.Response:
        """Directory totals, per township and village, tags and roles; the upload form for admins."""
        return await _directory_page(request)

    @requires("admin")
    async def upload(request: web.Request) -> web.Response:
        """Import uploaded directory files and show the row-level report (as the CLI prints it)."""
        user = _user(request)
        settings = request.app[SETTINGS]
        budget_mb = settings.directory.xlsx_max_unpacked_mb
        problems: list[RowProblem] = []
        more = 0

        def sink(problem: RowProblem) -> None:
            nonlocal more
            if len(problems) < PROBLEMS_SHOWN:
                problems.append(problem)
            else:
                more += 1

        with tempfile.TemporaryDirectory(prefix="warning-upload-") as name:
            folder = Path(name)
            try:
                paths = await receive_upload(request, folder, budget_mb * 1024 * 1024)
            except UploadTooLarge:
                message = t(
                    "上传的文件超过 {m} MiB 的上限，未导入任何内容：请拆分成几个文件分别上传。",
                    "The upload is over the {m} MiB limit; nothing was imported. Split it into smaller files.",
                    m=budget_mb,
                )
                return await _directory_page(request, status=413, problem=message)
            except UploadRefused:
                message = t(
                    "请选择一个或多个 CSV / XLSX 文件再上传。",
                    "Choose one or more CSV / XLSX files to upload.",
                )
                return await _directory_page(request, status=400, problem=message)
            try:
                report = await import_files(
                    request.app[DIRECTORY],
                    paths,
                    region=settings.directory.default_region,
                    on_problem=sink,
                    limits=settings.directory,
                )
            except ImportFileError as exc:
                report = ImportReport(bad_files=[str(exc).replace(f"{folder}/", "")])
            document = _report_json(report, problems, more, folder)
        files = ", ".join(p.name for p in paths)
        await request.app[BROADCASTER].alerts.audit(
            actor=user.name,
            role=user.role.value,
            action="directory_import",
            obj="directory",
            result="ok" if not report.errors else "errors",
            detail=f"{files}: {sum(r.rows for r in report.tables)} rows, {report.errors} errors",
        )
        return render_page(
            request,
            "console/directory_report.html",
            status=200,
            title=t("导入结果", "Import report"),
            report=document,
        )

    return [
        web.get("/console/fleet", fleet),
        web.get("/console/directory", directory),
        web.post("/console/directory", upload),
    ]
