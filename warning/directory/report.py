"""What an import did, as people read it: one table (per file or sheet: rows, created, updated,
unchanged, errors, warnings) and the notes under it — the same words for `warning directory import`
and the console's upload page."""

from __future__ import annotations

from typing import Any

from warning.directory.importer import ImportReport
from warning.i18n import t
from warning.model import Kind

KIND_NAMES = {
    Kind.VILLAGES: ("村庄", "villages"),
    Kind.RESIDENTS: ("居民", "residents"),
    Kind.CONTACTS: ("联系人", "contacts"),
    Kind.SPEAKERS: ("大喇叭", "loudspeakers"),
}


def report_header() -> list[str]:
    return [
        t("文件", "file"),
        t("类型", "kind"),
        t("行数", "rows"),
        t("新增", "created"),
        t("更新", "updated"),
        t("未变", "unchanged"),
        t("错误", "errors"),
        t("警告", "warnings"),
    ]


def report_rows(report: ImportReport) -> list[list[Any]]:
    """One row per imported table, under `report_header()`."""
    return [
        [
            table.source,
            t(*KIND_NAMES[table.kind]),
            table.rows,
            table.created,
            table.updated,
            table.unchanged,
            table.errors,
            table.warnings,
        ]
        for table in report.tables
    ]


def unassigned_note(report: ImportReport) -> str:
    """The attention line about residents whose cadre was not found ("" when there are none)."""
    unassigned = sum(table.cadres_not_found for table in report.tables)
    if not unassigned:
        return ""
    return t(
        "注意：{n} 名居民写的包联干部在联系人名录中找不到或不唯一，已导入但未分配干部（见上方警告行）。",
        "Attention: {n} residents name a cadre who is not (or not uniquely) in the contacts: imported "
        "without a cadre (see the warnings above).",
        n=unassigned,
    )


def bad_file_notes(report: ImportReport) -> list[str]:
    """One line per file that imported nothing, saying why."""
    return [t("未导入：{m}", "not imported: {m}", m=message) for message in report.bad_files]


def errors_note(report: ImportReport) -> str:
    """What to do about the rows in error ("" without errors)."""
    if not report.errors:
        return ""
    return t(
        "有 {n} 处错误：出错的行未导入，其余已导入。改正后重新导入即可（按编号更新，不会重复）。",
        "{n} errors: the rows in error were not imported, the rest were. Fix them and import again "
        "(records update by id, never duplicate).",
        n=report.errors,
    )
