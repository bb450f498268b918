"""`warning directory import` and `warning directory stats`: the resident directory from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from warning.alerts import AlertStore
from warning.config import Settings
from warning.datadir import require_data
from warning.directory.importer import ImportReport, import_files
from warning.directory.report import (
    bad_file_notes,
    errors_note,
    report_header,
    report_rows,
    unassigned_note,
)
from warning.directory.rows import RowProblem
from warning.directory.store import Directory, DirectoryStats
from warning.i18n import t
from warning.progress import ProgressBar
from warning.store import open_store
from warning.textable import render


def _print_problem(problem: RowProblem) -> None:
    print(str(problem), file=sys.stderr)


def _print_import_report(report: ImportReport) -> None:
    """The table and notes of warning.directory.report: the console's upload page says the same."""
    rows = report_rows(report)
    if rows:
        print(render(report_header(), rows))
    for note in [unassigned_note(report), *bad_file_notes(report)]:
        if note:
            print(note, file=sys.stderr)


async def _directory_import(settings: Settings, paths: Sequence[Path], quiet: bool) -> int:
    bars: dict[str, ProgressBar] = {}

    def progress(source: str, done: int, total: int | None) -> None:
        if source not in bars:
            for bar in bars.values():
                bar.close()
            bars[source] = ProgressBar(source, unit="B" if source.endswith(".csv") else "", enabled=not quiet)
        bars[source].update(done, total)

    async with open_store(settings.redis, settings.data.dir) as store:
        report = await import_files(
            Directory(store),
            paths,
            region=settings.directory.default_region,
            on_problem=_print_problem,
            progress=progress,
            limits=settings.directory,
        )
        await AlertStore(store.redis, store.keys, secret=settings.server.secret).audit(
            actor="cli",
            role="admin",
            action="directory_import",
            obj="directory",
            result="ok" if not report.errors else "errors",
            detail=f"{', '.join(p.name for p in paths)}: {sum(r.rows for r in report.tables)} rows, "
            f"{report.errors} errors",
        )
    for bar in bars.values():
        bar.close()
    _print_import_report(report)
    if report.errors:
        print(errors_note(report), file=sys.stderr)
        return 2
    return 0


def _stats_json(stats: DirectoryStats) -> dict[str, Any]:
    return {
        "totals": {
            "villages": len(stats.villages),
            "residents": stats.residents,
            "vulnerable": stats.vulnerable,
            "vulnerable_without_cadre": stats.unassigned,
            "contacts": stats.contacts,
            "speakers": stats.speakers,
        },
        "contacts_by_role": stats.contacts_by_role,
        "tags": stats.tags(),
        "unknown_cadres": stats.unknown_cadres,
        "villages": [vars(v) for v in stats.villages],
    }


def _print_stats(stats: DirectoryStats) -> None:
    if not stats.villages:
        print(
            t(
                "名录为空。用 warning directory import 文件… 导入，或用 warning serve --sample 载入示例县。",
                "The directory is empty. Import files with `warning directory import FILE…`, or load the sample "
                "county with `warning serve --sample`.",
            )
        )
        return
    townships: dict[str, list[Any]] = {}
    for v in stats.villages:
        row = townships.setdefault(v.code[:9], [v.code[:9], v.township, 0, 0, 0, 0])
        row[2] += 1
        row[3] += v.residents
        row[4] += v.vulnerable
        row[5] += v.speakers
    print(
        t(
            "合计：{v} 个村，{r} 名居民（其中需确认到人 {vu} 名），{c} 名联系人，{s} 个大喇叭",
            "Totals: {v} villages, {r} residents ({vu} must be confirmed in person), {c} contacts, "
            "{s} loudspeakers",
            v=len(stats.villages),
            r=f"{stats.residents:,}",
            vu=f"{stats.vulnerable:,}",
            c=stats.contacts,
            s=stats.speakers,
        )
    )
    print()
    print(
        render(
            [
                t("乡镇代码", "township"),
                t("名称", "name"),
                t("村", "villages"),
                t("居民", "residents"),
                t("脆弱人群", "vulnerable"),
                t("大喇叭", "speakers"),
            ],
            list(townships.values()),
        )
    )
    print()
    print(
        render(
            [
                t("村代码", "village"),
                t("名称", "name"),
                t("乡镇", "township"),
                t("居民", "residents"),
                t("脆弱人群", "vulnerable"),
                t("未分配干部", "no cadre"),
                t("大喇叭", "speakers"),
                t("联系人", "contacts"),
            ],
            [
                [v.code, v.name, v.township, v.residents, v.vulnerable, v.unassigned, v.speakers, v.contacts]
                for v in stats.villages
            ],
        )
    )
    print()
    print(render([t("标签", "tag"), t("人数", "residents")], [[k, n] for k, n in stats.tags().items()]))
    print()
    print(
        render(
            [t("角色", "role"), t("人数", "contacts")], [[k, n] for k, n in stats.contacts_by_role.items()]
        )
    )
    if stats.unassigned:
        print(
            t(
                "\n注意：{n} 名脆弱居民没有包联干部，无法安排上门确认。请在居民文件的 cadre 列补上。",
                "\nAttention: {n} vulnerable residents have no cadre, so nobody will confirm them in person. "
                "Fill in the cadre column of the residents file.",
                n=stats.unassigned,
            )
        )
    for cadre, n in stats.unknown_cadres.items():
        print(
            t(
                "注意：{n} 名居民的包联干部 {c} 不在联系人名录中。",
                "Attention: {n} residents name cadre {c}, who is not in the contacts.",
                n=n,
                c=cadre,
            )
        )


async def _directory_stats(settings: Settings, as_json: bool) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        stats = await Directory(store).stats()
    if as_json:
        print(json.dumps(_stats_json(stats), ensure_ascii=False, indent=2))
    else:
        _print_stats(stats)
    return 0


async def _directory(settings: Settings, args: argparse.Namespace) -> int:
    if args.directory_command == "import":
        return await _directory_import(settings, args.paths, args.quiet)
    require_data(settings)
    return await _directory_stats(settings, args.json)


COMMANDS = {"directory": _directory}
