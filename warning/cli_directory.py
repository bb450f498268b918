"""`warning directory import` and `warning directory stats`: the resident directory from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from warning.config import Settings
from warning.datadir import require_data
from warning.directory.importer import ImportReport, import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory, DirectoryStats
from warning.i18n import t
from warning.model import Kind
from warning.progress import ProgressBar
from warning.store import open_store
from warning.textable import render

_KIND_NAMES = {
    Kind.VILLAGES: ("村庄", "villages"),
    Kind.RESIDENTS: ("居民", "residents"),
    Kind.CONTACTS: ("联系人", "contacts"),
    Kind.SPEAKERS: ("大喇叭", "loudspeakers"),
}


def _print_problem(problem: RowProblem) -> None:
    print(str(problem), file=sys.stderr)


def _print_import_report(report: ImportReport) -> None:
    rows = []
    for table in report.tables:
        zh, en = _KIND_NAMES[table.kind]
        rows.append(
            [
                table.source,
                t(zh, en),
                table.rows,
                table.created,
                table.updated,
                table.unchanged,
                table.errors,
                table.warnings,
            ]
        )
    header = [
        t("文件", "file"),
        t("类型", "kind"),
        t("行数", "rows"),
        t("新增", "created"),
        t("更新", "updated"),
        t("未变", "unchanged"),
        t("错误", "errors"),
        t("警告", "warnings"),
    ]
    if rows:
        print(render(header, rows))
    unassigned = sum(table.cadres_not_found for table in report.tables)
    if unassigned:
        print(
            t(
                "注意：{n} 名居民写的包联干部在联系人名录中找不到或不唯一，已导入但未分配干部（见上方警告行）。",
                "Attention: {n} residents name a cadre who is not (or not uniquely) in the contacts: imported "
                "without a cadre (see the warnings above).",
                n=unassigned,
            ),
            file=sys.stderr,
        )
    for message in report.bad_files:
        print(t("未导入：{m}", "not imported: {m}", m=message), file=sys.stderr)


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
    for bar in bars.values():
        bar.close()
    _print_import_report(report)
    if report.errors:
        print(
            t(
                "有 {n} 处错误：出错的行未导入，其余已导入。改正后重新导入即可（按编号更新，不会重复）。",
                "{n} errors: the rows in error were not imported, the rest were. Fix them and import again "
                "(records update by id, never duplicate).",
                n=report.errors,
            ),
            file=sys.stderr,
        )
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
