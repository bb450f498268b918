"""Importing a bureau's files that name villages and cadres instead of coding them, in real Redis."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook

from warning.directory.importer import ImportReport, import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory
from warning.store import Store

QINGSHI, XINCUN_CG, XINCUN_HS, DONGXI = "331099101001", "331099101002", "331099102003", "331099102004"

VILLAGES = f"""村代码,村名,乡镇,县
{QINGSHI},青石村,城关镇,海屿县
{XINCUN_CG},新村,城关镇,海屿县
{XINCUN_HS},新村,湖山乡,海屿县
{DONGXI},东溪村,湖山乡,海屿县
"""

# Residents name their village and cadre as a bureau's Excel does; line 4 is an ambiguous village,
# line 5 an unknown cadre, line 6 a cadre given by id.
RESIDENTS = f"""\ufeff编号,姓名,手机,村名,标签,包联干部
R1,王秀英,13800138000,青石村,老人,李建国
R2,张桂兰,,湖山乡新村,独居,王芳
R3,陈明,13800138002,新村,,
R4,刘芳,13800138003,东溪村,老人,赵六
R5,赵磊,,{QINGSHI},,C2
"""


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _xlsx(tmp_path: Path, name: str, sheets: dict[str, list[list[object]]]) -> Path:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def _contacts(tmp_path: Path) -> Path:
    return _xlsx(
        tmp_path,
        "contacts.xlsx",
        {
            "联系人": [
                ["编号", "姓名", "手机", "负责村", "角色"],
                ["C1", "李建国", "13900139000", "青石村", "网格员"],
                ["C2", "王芳", "13900139001", "城关镇新村", "网格员"],
                ["C3", "王芳", "13900139002", "湖山乡新村；东溪村", "网格员"],
                ["C4", "吴镇长", "13900139003", "湖山乡", "乡镇值班"],
            ]
        },
    )


async def _import(directory: Directory, paths: list[Path]) -> tuple[ImportReport, list[RowProblem]]:
    problems: list[RowProblem] = []
    report = await import_files(directory, paths, on_problem=problems.append)
    return report, problems


async def test_names_resolve_within_one_batch_in_any_order(store: Store, tmp_path: Path) -> None:
    """Residents given before the villages and contacts they name keep their village code and cadre id,
    and each unresolvable reference is a file:line warning or error at import time."""
    directory = Directory(store)
    residents = _csv(tmp_path, "residents.csv", RESIDENTS)
    speakers = _xlsx(tmp_path, "speakers.xlsx", {"喇叭": [["设备编号", "村名"], ["spk-1", "东溪村"]]})
    files = [residents, speakers, _contacts(tmp_path), _csv(tmp_path, "villages.csv", VILLAGES)]

    report, problems = await _import(directory, files)

    assert [str(p) for p in problems] == [
        f"{residents}:4: 村名“新村”有 2 个：{XINCUN_CG}（城关镇）、{XINCUN_HS}（湖山乡），"
        "请填写村代码（或写成“乡镇+村名”，如“城关镇新村”）",
        f"{residents}:5: 包联干部“赵六”不在联系人名录中，此行已导入但未设包联干部：请填写联系人编号或姓名，"
        "或先导入联系人文件（或与本文件一起导入）",
    ]
    table = next(t for t in report.tables if t.source == str(residents))
    assert (table.created, table.errors, table.warnings, table.cadres_not_found) == (4, 1, 1, 1)

    stored = await directory.residents(["R1", "R2", "R3", "R4", "R5"])
    assert {rid: (r.village, r.cadre) for rid, r in stored.items()} == {
        "R1": (QINGSHI, "C1"),
        "R2": (XINCUN_HS, "C3"),  # of the two 王芳, the one covering 湖山乡新村
        "R4": (DONGXI, ""),
        "R5": (QINGSHI, "C2"),
    }
    assert [r.id async for b in directory.residents_of_cadre("C1") for r in b] == ["R1"]
    contacts = await directory.contacts(["C3", "C4"])
    assert contacts["C3"].areas == (XINCUN_HS, DONGXI) and contacts["C4"].areas == ("331099102",)
    speaker = await directory.speaker("spk-1")
    assert speaker is not None and speaker.village == DONGXI

    stats = await directory.stats()
    assert stats.unassigned == 1  # R4, elderly, whose cadre was not found: the stats still flag them
    assert stats.unknown_cadres == {}


async def test_names_resolve_against_an_earlier_import(store: Store, tmp_path: Path) -> None:
    """An XLSX of residents imported after the villages and contacts (in Redis already) resolves names."""
    directory = Directory(store)
    first, problems = await _import(
        directory, [_csv(tmp_path, "villages.csv", VILLAGES), _contacts(tmp_path)]
    )
    assert (first.errors, problems) == (0, [])

    residents = _xlsx(
        tmp_path,
        "residents.xlsx",
        {
            "居民": [
                ["编号", "姓名", "所在村", "包联干部"],
                ["R1", "王秀英", "青石村", "李建国"],
                ["R2", "张桂兰", "新村", "王芳"],
                ["R3", "李四", "东溪村", "王芳"],
                ["R4", "周五", "城关镇新村", "C9"],
            ]
        },
    )
    report, problems = await _import(directory, [residents])

    source = str(residents)  # a workbook with one sheet is named by its path alone
    assert [(p.source, p.line, p.severity) for p in problems] == [
        (source, 3, "error"),
        (source, 5, "warning"),
    ]
    assert "请填写村代码" in problems[0].message and "“C9”" in problems[1].message
    stored = await directory.residents(["R1", "R2", "R3", "R4"])
    assert {rid: (r.village, r.cadre) for rid, r in stored.items()} == {
        "R1": (QINGSHI, "C1"),
        "R3": (DONGXI, "C3"),
        "R4": (XINCUN_CG, ""),
    }
    assert report.tables[0].cadres_not_found == 1
