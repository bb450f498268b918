"""Directory import: files → checked records → Redis, in batches, reporting every bad row.

A file with a bad header imports nothing; a bad row is reported as `file:line: reason` and skipped;
the good rows are imported. Villages are imported before the files that refer to them, and contacts
before residents; each row's village, areas and cadre are then resolved (by code, id or unique name)
against one in-memory index of the directory, built once per import from Redis, so files given together
in any order, or imported earlier, are found alike.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from warning.config import DirectorySettings
from warning.directory.read import Table, open_tables
from warning.directory.refs import References
from warning.directory.rows import RowProblem, parse_row
from warning.directory.store import CREATED, DUPLICATE, UNCHANGED, UPDATED, Directory
from warning.errors import ImportFileError
from warning.i18n import t
from warning.model import Kind, Record

BATCH = 500
_ORDER = {Kind.VILLAGES: 0, Kind.CONTACTS: 1, Kind.RESIDENTS: 2, Kind.SPEAKERS: 3}

ProblemSink = Callable[[RowProblem], None]
Progress = Callable[[str, int, int | None], None]


@dataclass
class TableReport:
    """What happened to one table (a CSV file or one workbook sheet)."""

    source: str
    kind: Kind
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    warnings: int = 0
    cadres_not_found: int = 0  # residents imported without the cadre their row named (unknown or ambiguous)


@dataclass
class ImportReport:
    tables: list[TableReport] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)  # one message per file that imported nothing

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.tables) + len(self.bad_files)


def _parse_chunk(
    rows: Iterator[tuple[int, dict[str, str]]], table: Table, region: str, refs: References | None
) -> list[tuple[int, Record | None, list[RowProblem]]]:
    parsed = []
    for line, fields in itertools.islice(rows, BATCH):
        record, problems = parse_row(table.kind, table.source, line, fields, region, refs)
        parsed.append((line, record, problems))
    return parsed


async def _import_table(
    directory: Directory,
    table: Table,
    *,
    region: str,
    run_id: str,
    refs: References | None,
    on_problem: ProblemSink,
    progress: Progress | None,
) -> TableReport:
    report = TableReport(table.source, table.kind)
    rows = table.rows()
    while True:
        # Parsing (phone numbers, XLSX cells, name lookups) is CPU work: keep it off the event loop.
        chunk = await asyncio.to_thread(_parse_chunk, rows, table, region, refs)
        if not chunk:
            break
        good: list[tuple[int, Record]] = []
        for line, record, problems in chunk:
            report.rows += 1
            for problem in problems:
                on_problem(problem)
                if problem.severity == "error":
                    report.errors += 1
                else:
                    report.warnings += 1
                    if problem.column == "cadre" and record is not None:
                        report.cadres_not_found += 1
            if record is not None:
                good.append((line, record))
        statuses = await directory.upsert([r for _, r in good], run_id=run_id)
        for (line, _), status in zip(good, statuses, strict=True):
            if status == CREATED:
                report.created += 1
            elif status == UPDATED:
                report.updated += 1
            elif status == UNCHANGED:
                report.unchanged += 1
            elif status == DUPLICATE:
                report.errors += 1
                on_problem(
                    RowProblem(
                        table.source,
                        line,
                        t(
                            "编号与本次导入中前面的某一行重复，此行未导入：请给每条记录唯一的编号",
                            "the id repeats an earlier row of this import, so this row was not imported: give every "
                            "record its own id",
                        ),
                        "error",
                    )
                )
        if progress is not None:
            done, total = table.progress()
            progress(table.source, done, total)
    return report


async def import_files(
    directory: Directory,
    paths: Sequence[Path],
    *,
    region: str = "CN",
    on_problem: ProblemSink,
    progress: Progress | None = None,
    limits: DirectorySettings | None = None,
) -> ImportReport:
    """Import directory files (CSV or XLSX, kind detected from the header) and report what happened.

    A file whose header is bad, or that is over a budget of `limits` (default: `DirectorySettings()`)
    on its declared sizes, imports nothing and is reported in `bad_files`; the other files import. A
    table found over the row or cell budget only while streaming stops the import with ImportFileError.
    """
    report = ImportReport()
    tables: list[Table] = []
    for path in paths:
        try:
            tables += await asyncio.to_thread(open_tables, path, limits or DirectorySettings())
        except ImportFileError as exc:
            report.bad_files.append(str(exc))
    tables.sort(key=lambda table: _ORDER[table.kind])
    run_id = uuid.uuid4().hex
    refs: References | None = None
    contacts_loaded = False
    try:
        for table in tables:
            # Tables are in _ORDER, so the index is read once, after what it indexes was written.
            if table.kind is not Kind.VILLAGES and refs is None:
                refs = References(await directory.villages(await directory.village_codes()))
            if table.kind is Kind.RESIDENTS and refs is not None and not contacts_loaded:
                async for contacts in directory.stream_contacts():
                    refs.add_contacts(contacts)
                contacts_loaded = True
            report.tables.append(
                await _import_table(
                    directory,
                    table,
                    region=region,
                    run_id=run_id,
                    refs=refs,
                    on_problem=on_problem,
                    progress=progress,
                )
            )
    finally:
        for table in tables:
            table.close()
        await directory.end_run(run_id)
    return report
