"""The parsing layer of directory imports: headers, CSV/XLSX readers and row validation (DESIGN §7)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook

from warning.directory.headers import ALIASES, OVERFLOW, normalize, read_header
from warning.directory.read import Table, cell_text, open_tables
from warning.directory.rows import RowProblem, parse_row
from warning.errors import ImportFileError
from warning.i18n import set_language
from warning.model import Contact, Kind, Resident, Role, Speaker, Village

CODE = "330110101201"


@pytest.fixture(autouse=True)
def _chinese() -> Iterator[None]:
    set_language("zh-CN")
    yield
    set_language("zh-CN")


def write_csv(tmp_path: Path, text: str, *, encoding: str = "utf-8", name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(tmp_path: Path, sheets: dict[str, list[list[object]]], name: str = "f.xlsx") -> Path:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def rows_of(table: Table) -> list[tuple[int, dict[str, str]]]:
    return list(table.rows())


def parse(kind: Kind, **fields: str) -> tuple[object, list[RowProblem]]:
    return parse_row(kind, "f.csv", 2, fields)


def errors(problems: list[RowProblem]) -> list[str]:
    return [p.message for p in problems if p.severity == "error"]


# ---- headers -----------------------------------------------------------------------------------------


def test_aliases_are_unambiguous_within_each_kind() -> None:
    """No two columns of one kind share a normalised alias, so a header cell names at most one column."""
    for aliases in ALIASES.values():
        names = [normalize(n) for column, more in aliases.items() for n in (column, *more)]
        assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("cells", "kind", "columns"),
    [
        (
            ["村代码", "村名", "乡镇", "县", "纬度", "经度"],
            Kind.VILLAGES,
            ("code", "name", "township", "county", "lat", "lon"),
        ),
        (
            ["编号", "姓名", "手机号码", "村代码", "人群标签", "语言", "微信OpenID", "网格员"],
            Kind.RESIDENTS,
            ("id", "name", "phone", "village", "tags", "language", "wechat_openid", "cadre"),
        ),
        (
            ["人员编号", "姓名", "联系电话", "负责区域", "职务", "企业微信"],
            Kind.CONTACTS,
            ("id", "name", "phone", "villages", "role", "wechat_userid"),
        ),
        (["设备ID", "村代码", "名称"], Kind.SPEAKERS, ("device_id", "village", "name")),
        (["终端编号", "所在村", "安装位置"], Kind.SPEAKERS, ("device_id", "village", "name")),
    ],
)
def test_chinese_headers_detect_kind_and_resolve_ambiguous_aliases(
    cells: list[str], kind: Kind, columns: tuple[str, ...]
) -> None:
    """Chinese headers select the kind, and 村代码/名称/姓名 mean the column that kind gives them."""
    header = read_header(cells, "f.csv:1")
    assert (header.kind, header.columns) == (kind, columns)


def test_header_matching_ignores_case_spaces_bom_and_trailing_blank_cells() -> None:
    """`\\ufeff CODE `, `Device ID` style cells match, and empty cells after the last column are dropped."""
    header = read_header(["\ufeff CODE ", "Name", "TOWNSHIP", "county", "", ""], "f.csv:1")
    assert header.columns == ("code", "name", "township", "county")
    assert read_header(["Device ID", "village"], "f.csv:1").kind is Kind.SPEAKERS


@pytest.mark.parametrize(
    ("cells", "needles"),
    [
        (["code", "name", "township", "county", "population"], ["第 5 列（E）“population”", "lat（纬度"]),
        (["id", "name", "phone", "tags"], ["village", "居民"]),
        (["code", "name", "township", "county", "村代码"], ["村代码", "code", "删除其中一列"]),
        (["foo", "bar"], ["foo, bar", "device_id"]),
        (["code", "", "name", "township", "county"], ["第 2 列（B）没有列名"]),
        (["id", "name", "village", "role"], ["居民", "联系人"]),
    ],
    ids=["unknown", "missing", "duplicate", "no-kind", "unnamed", "ambiguous"],
)
def test_bad_header_raises_with_what_to_fix(cells: list[str], needles: list[str]) -> None:
    """An unknown, missing, duplicate or unnamed column, or no/two fitting kinds, is an ImportFileError."""
    with pytest.raises(ImportFileError) as info:
        read_header(cells, "f.csv:1")
    assert str(info.value).startswith("f.csv:1: ")
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("header", "needle"),
    [("id,name,phnoe,village", "phnoe"), ("id,name,phone", "village"), ("id,name,village,所在村", "所在村")],
    ids=["unknown", "missing", "duplicate"],
)
def test_bad_csv_header_imports_nothing(tmp_path: Path, header: str, needle: str) -> None:
    """A CSV whose header has an unknown, missing or duplicate column yields no table, so no row at all."""
    path = write_csv(tmp_path, f"{header}\nr1,张三,{CODE},{CODE}\n")
    with pytest.raises(ImportFileError, match=needle):
        open_tables(path)


# ---- CSV ---------------------------------------------------------------------------------------------


def test_csv_without_bom(tmp_path: Path) -> None:
    """A plain UTF-8 CSV gives one table of the detected kind with every data row and its line."""
    path = write_csv(tmp_path, f"code,name,township,county\n{CODE},上村,城关镇,临安县\n")
    [table] = open_tables(path)
    assert (table.source, table.kind) == (str(path), Kind.VILLAGES)
    assert rows_of(table) == [(2, {"code": CODE, "name": "上村", "township": "城关镇", "county": "临安县"})]


def test_csv_with_bom_and_chinese_header(tmp_path: Path) -> None:
    """A UTF-8 BOM (Excel's "CSV UTF-8") does not end up in the first column name."""
    path = write_csv(tmp_path, f"\ufeff编号,姓名,所在村\r\nr1,张三,{CODE}\r\n")
    [table] = open_tables(path)
    assert table.columns == ("id", "name", "village")
    assert rows_of(table) == [(2, {"id": "r1", "name": "张三", "village": CODE})]


def test_gb18030_csv_is_decoded(tmp_path: Path) -> None:
    """A CSV saved by Chinese Excel in GBK/GB18030 is read with Chinese header and values intact."""
    path = write_csv(tmp_path, f"编号,姓名,村代码,标签\nr1,王老五,{CODE},老人\n", encoding="gb18030")
    [table] = open_tables(path)
    assert rows_of(table) == [(2, {"id": "r1", "name": "王老五", "village": CODE, "tags": "老人"})]


def test_gb18030_after_a_long_ascii_start_is_decoded(tmp_path: Path) -> None:
    """Chinese text first appearing after 64 KiB of ASCII still selects GB18030 rather than failing."""
    ascii_rows = "".join(f"r{i},Zhang San,{CODE}\n" for i in range(4000))
    path = write_csv(tmp_path, f"id,name,village\n{ascii_rows}late,李四,{CODE}\n", encoding="gb18030")
    [table] = open_tables(path)
    assert rows_of(table)[-1] == (4002, {"id": "late", "name": "李四", "village": CODE})


def test_undecodable_csv_names_the_line(tmp_path: Path) -> None:
    """Bytes valid in neither UTF-8 nor GB18030 raise ImportFileError naming their line."""
    path = tmp_path / "f.csv"
    path.write_bytes("id,name,village\nr1,张三,1\n".encode() + b"r2,\xff\xff,2\n")
    with pytest.raises(ImportFileError, match=r"f\.csv:3: "):
        open_tables(path)


def test_utf16_csv_asks_for_csv_utf8(tmp_path: Path) -> None:
    """Excel's "Unicode text" (UTF-16) is refused with the format to save as instead."""
    path = write_csv(tmp_path, "\ufeffid,name,village\n", encoding="utf-16-le")
    with pytest.raises(ImportFileError, match="CSV UTF-8"):
        open_tables(path)


def test_multiline_quoted_cell_reports_the_line_where_the_record_starts(tmp_path: Path) -> None:
    """A quoted cell spanning lines keeps its newline, and later rows keep their physical line numbers."""
    path = write_csv(tmp_path, f'id,name,village\nr1,"张\n三",{CODE}\n\nr2,李四,{CODE}\n')
    [table] = open_tables(path)
    assert [(line, fields["name"]) for line, fields in rows_of(table)] == [(2, "张\n三"), (5, "李四")]


def test_blank_and_short_rows(tmp_path: Path) -> None:
    """Blank rows (also `,,,`) are skipped and missing trailing cells read as empty text."""
    path = write_csv(tmp_path, f"id,name,village,phone\n,,,\nr1,张三,{CODE}\n")
    [table] = open_tables(path)
    assert rows_of(table) == [(3, {"id": "r1", "name": "张三", "village": CODE, "phone": ""})]


def test_values_beyond_the_header_are_an_error_not_dropped(tmp_path: Path) -> None:
    """Cells right of the last named column reach parse_row, which rejects the row naming the values."""
    path = write_csv(tmp_path, f"id,name,village\nr1,张三,{CODE},13800138000\n")
    [table] = open_tables(path)
    [(line, fields)] = rows_of(table)
    assert fields[OVERFLOW] == "13800138000"
    record, problems = parse_row(table.kind, table.source, line, fields)
    assert record is None
    assert "13800138000" in errors(problems)[0]


def test_unclosed_quote_stops_the_import_at_its_line(tmp_path: Path) -> None:
    """A quote left open would swallow every later row, so reading stops with the line where it opened."""
    path = write_csv(tmp_path, f'id,name,village\nr1,张三,{CODE}\nr2,"李四,{CODE}\nr3,王五,{CODE}\n')
    [table] = open_tables(path)
    rows = table.rows()
    assert next(rows)[0] == 2
    with pytest.raises(ImportFileError, match=r"f\.csv:3: .*引号"):
        next(rows)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("f.xls", b"", "xlsx"),
        ("f.csv", b"", "文件为空"),
        ("f.csv", b"\n\n", "文件为空"),
        ("f.xlsx", b"not a zip", "Excel"),
    ],
)
def test_unimportable_files(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    """Unsupported extensions, empty files and corrupt workbooks raise ImportFileError saying what to do."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=needle):
        open_tables(path)


def test_missing_file_is_an_import_file_error(tmp_path: Path) -> None:
    """A path that does not exist is reported as unreadable, not as a traceback."""
    with pytest.raises(ImportFileError, match="无法读取"):
        open_tables(tmp_path / "missing.csv")


def test_csv_progress_counts_bytes_and_files_are_closed(tmp_path: Path) -> None:
    """Progress ends at the file size, and `Table.close()` ends an abandoned read leaving no descriptor open."""
    path = write_csv(tmp_path, "".join(["id,name,village\n", *(f"r{i},张三,{CODE}\n" for i in range(100))]))
    fds = set(Path("/proc/self/fd").iterdir()) if Path("/proc/self/fd").is_dir() else None
    [table] = open_tables(path)
    assert table.progress() == (0, path.stat().st_size)
    rows = table.rows()
    next(rows)
    assert 0 < table.progress()[0] <= path.stat().st_size
    table.close()
    with pytest.raises(StopIteration):
        next(rows)
    assert len(rows_of(table)) == 100
    assert table.progress() == (path.stat().st_size, path.stat().st_size)
    if fds is not None:
        assert set(Path("/proc/self/fd").iterdir()) == fds


# ---- XLSX --------------------------------------------------------------------------------------------


def test_xlsx_numeric_cells_become_the_digits_typed(tmp_path: Path) -> None:
    """Phones and codes stored as numbers (int, float, 1.38e10) read back as their digits."""
    path = write_xlsx(
        tmp_path,
        {
            "居民": [
                ["编号", "姓名", "手机", "村代码"],
                [1001, "张三", 1.38001380e10, 330110101201.0],
                [1002, "李四", 13800138000, 330110101201],
            ]
        },
    )
    [table] = open_tables(path)
    assert table.source == str(path)
    assert rows_of(table) == [
        (2, {"id": "1001", "name": "张三", "phone": "13800138000", "village": CODE}),
        (3, {"id": "1002", "name": "李四", "phone": "13800138000", "village": CODE}),
    ]
    record, problems = parse_row(table.kind, table.source, 2, rows_of(table)[0][1])
    assert isinstance(record, Resident) and record.phone == "+8613800138000" and not problems


def test_multi_sheet_xlsx(tmp_path: Path) -> None:
    """Each non-empty visible sheet is a table named `path[sheet]`; empty and hidden sheets are skipped."""
    path = write_xlsx(
        tmp_path,
        {
            "村": [[None], ["code", "name", "township", "county"], [CODE, "上村", "城关镇", "临安县"]],
            "空": [],
            "喇叭": [["device_id", "village"], [], ["spk-001", CODE]],
        },
    )
    from openpyxl import load_workbook

    workbook = load_workbook(path)
    workbook.create_sheet("选项").append(["cadre", "village_head"])
    workbook["选项"].sheet_state = "hidden"
    workbook.save(path)
    villages, speakers = open_tables(path)
    assert (villages.source, villages.kind) == (f"{path}[村]", Kind.VILLAGES)
    assert rows_of(villages) == [
        (3, {"code": CODE, "name": "上村", "township": "城关镇", "county": "临安县"})
    ]
    assert (speakers.source, speakers.kind) == (f"{path}[喇叭]", Kind.SPEAKERS)
    assert rows_of(speakers) == [(3, {"device_id": "spk-001", "village": CODE})]
    assert speakers.progress() == (3, 3)


def test_xlsx_with_one_bad_sheet_imports_nothing(tmp_path: Path) -> None:
    """A bad header on any sheet raises ImportFileError naming that sheet, even if other sheets are good."""
    path = write_xlsx(
        tmp_path,
        {
            "村": [["code", "name", "township", "county"], [CODE, "上村", "城关镇", "临安县"]],
            "居民": [["id", "name", "village", "备注"], ["r1", "张三", CODE, "x"]],
        },
    )
    with pytest.raises(ImportFileError, match=r"\[居民\]:1: .*备注"):
        open_tables(path)


def test_xlsx_table_close_releases_an_abandoned_iteration(tmp_path: Path) -> None:
    """`Table.close()` closes the workbook of an iteration stopped half-way, leaving no descriptor open."""
    path = write_xlsx(tmp_path, {"喇叭": [["device_id", "village"], ["s1", CODE], ["s2", CODE]]})
    fds = set(Path("/proc/self/fd").iterdir()) if Path("/proc/self/fd").is_dir() else None
    [table] = open_tables(path)
    rows = table.rows()
    assert next(rows)[0] == 2
    table.close()
    table.close()
    if fds is not None:
        assert set(Path("/proc/self/fd").iterdir()) == fds


def test_empty_workbook_is_an_import_file_error(tmp_path: Path) -> None:
    """A workbook whose sheets are all empty has no header and is refused."""
    with pytest.raises(ImportFileError, match="没有数据"):
        open_tables(write_xlsx(tmp_path, {"Sheet1": []}))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (13800138000, "13800138000"),
        (1.38001380e10, "13800138000"),
        (330110101201.0, "330110101201"),
        (30.25, "30.25"),
        (" 张三 ", "张三"),
        (True, "TRUE"),
        (datetime.datetime(2024, 7, 1), "2024-07-01"),
        (datetime.date(2024, 7, 1), "2024-07-01"),
    ],
)
def test_cell_text(value: object, text: str) -> None:
    """Spreadsheet values read as the text a user sees, numbers without a spurious `.0`."""
    assert cell_text(value) == text


# ---- rows --------------------------------------------------------------------------------------------


def test_valid_village_with_coordinates() -> None:
    """A complete villages row gives a Village with float coordinates and no problems."""
    record, problems = parse(
        Kind.VILLAGES, code=CODE, name="上村", township="城关镇", county="临安县", lat="30.2", lon="119.7"
    )
    assert record == Village(CODE, "上村", "城关镇", "临安县", 30.2, 119.7)
    assert problems == []


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"code": "3301"}, "村代码应为12位数字，实际为 “3301”"),
        ({"code": "3.30110101201E+11"}, "科学计数法"),
        ({"code": ""}, "code 列为空"),
        ({"name": ""}, "name 列为空"),
        ({"name": "长" * 65}, "最多 64 个字"),
        ({"township": ""}, "township 列为空"),
        ({"county": ""}, "county 列为空"),
        ({"lat": "30.2"}, "同时填写"),
        ({"lat": "91", "lon": "120"}, "lat 应为 -90 到 90"),
        ({"lat": "30", "lon": "181"}, "lon 应为 -180 到 180"),
        ({"lat": "北纬30", "lon": "120"}, "“北纬30”"),
        ({"lat": "nan", "lon": "120"}, "lat 应为"),
    ],
)
def test_bad_village_rows(fields: dict[str, str], needle: str) -> None:
    """Each kind of bad villages value is an error that keeps the row out and says what is wrong."""
    row = {"code": CODE, "name": "上村", "township": "城关镇", "county": "临安县", **fields}
    record, problems = parse_row(Kind.VILLAGES, "f.csv", 7, row)
    assert record is None
    assert [p.severity for p in problems] == ["error"]
    assert needle in problems[0].message
    assert str(problems[0]).startswith("f.csv:7: ")


def test_valid_resident_with_tag_and_language_aliases() -> None:
    """Chinese tag aliases map to built-in tags, ASCII tags are lowercased, others kept as written."""
    record, problems = parse(
        Kind.RESIDENTS,
        id="r1",
        name="张三",
        village=CODE,
        phone="138 0013 8000",
        tags="老人；独居、无手机，行动不便;Fisher, 渔民;;",
        language="English",
        wechat_openid="oX1",
        cadre="c1",
    )
    assert problems == []
    assert record == Resident(
        "r1",
        "张三",
        CODE,
        "+8613800138000",
        frozenset({"elderly", "lives_alone", "no_smartphone", "disabled", "fisher", "渔民"}),
        "en",
        "oX1",
        "c1",
    )
    assert isinstance(record, Resident) and record.vulnerable


@pytest.mark.parametrize(
    ("raw", "language"), [("", "zh-CN"), ("zh", "zh-CN"), ("普通话", "zh-CN"), ("EN-US", "en")]
)
def test_language_aliases(raw: str, language: str) -> None:
    """Language cells in Chinese or English normalise to zh-CN or en, empty meaning zh-CN."""
    record, _ = parse(Kind.RESIDENTS, id="r1", name="张三", village=CODE, language=raw)
    assert isinstance(record, Resident) and record.language == language


def test_invalid_phone_is_a_warning_and_the_resident_is_kept() -> None:
    """A resident with a mistyped phone is imported without a phone, with a warning saying what to fix."""
    record, problems = parse(Kind.RESIDENTS, id="r1", name="张三", village=CODE, phone="1380013800")
    assert isinstance(record, Resident) and record.phone == ""
    assert [p.severity for p in problems] == ["warning"]
    assert "“1380013800”" in problems[0].message


def test_empty_phone_is_fine_for_residents() -> None:
    """Residents without a phone are imported silently (they are reached by loudspeaker and cadre)."""
    record, problems = parse(Kind.RESIDENTS, id="r1", name="张三", village=CODE, phone="")
    assert isinstance(record, Resident) and problems == []


def test_unknown_language_and_bad_cadre_are_warnings() -> None:
    """An unknown language falls back to zh-CN and a malformed cadre id is dropped, both as warnings."""
    record, problems = parse(Kind.RESIDENTS, id="r1", name="张三", village=CODE, language="粤语", cadre="a b")
    assert isinstance(record, Resident) and (record.language, record.cadre) == ("zh-CN", "")
    assert [p.severity for p in problems] == ["warning", "warning"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"id": ""}, "id 列为空"),
        ({"id": "r 1"}, "不能含空格或冒号"),
        ({"id": "r:1"}, "不能含空格或冒号"),
        ({"id": "r" * 65}, "不能含空格或冒号"),
        ({"name": ""}, "name 列为空"),
        ({"village": "33011010120"}, "村代码应为12位数字"),
        ({"village": ""}, "12位村代码"),
    ],
)
def test_bad_resident_rows(fields: dict[str, str], needle: str) -> None:
    """A bad id, name or village code is an error; the row is not imported."""
    record, problems = parse(Kind.RESIDENTS, **{"id": "r1", "name": "张三", "village": CODE, **fields})
    assert record is None
    assert needle in errors(problems)[0]


def test_every_problem_of_a_row_is_reported() -> None:
    """A row with several bad values lists all of them, so it is fixed in one pass."""
    _, problems = parse(Kind.RESIDENTS, id="", name="", village="1", phone="x")
    assert [p.severity for p in problems] == ["error", "error", "error", "warning"]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("cadre", Role.CADRE),
        ("Village_Head", Role.VILLAGE_HEAD),
        ("网格员", Role.CADRE),
        ("村支书", Role.VILLAGE_HEAD),
        ("镇值班", Role.TOWNSHIP_DUTY),
        ("县值班员", Role.COUNTY_DUTY),
        ("应急救援队", Role.RESCUE_TEAM),
    ],
)
def test_contact_role_aliases(role: str, expected: Role) -> None:
    """Roles are accepted as enum values or their Chinese names."""
    record, problems = parse(Kind.CONTACTS, id="c1", name="王五", role=role)
    assert isinstance(record, Contact) and record.role is expected and problems == []


def test_contact_areas_and_phone() -> None:
    """Contact villages are split into 6-, 9- and 12-digit areas (deduplicated) and the phone normalised."""
    record, problems = parse(
        Kind.CONTACTS,
        id="c1",
        name="王五",
        role="cadre",
        phone="+86 138-0013-8000",
        villages=f"330110; 330110101，{CODE}、{CODE}",
        wechat_userid="wangwu",
    )
    assert problems == []
    assert record == Contact(
        "c1", "王五", Role.CADRE, "+8613800138000", ("330110", "330110101", CODE), "wangwu"
    )


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"role": "队长"}, "cadre, village_head"),
        ({"role": ""}, "角色 “”"),
        ({"villages": "3301101"}, "6位（县）、9位（乡镇）或12位（村）"),
        ({"id": "c:1"}, "不能含空格或冒号"),
    ],
)
def test_bad_contact_rows(fields: dict[str, str], needle: str) -> None:
    """An unknown role (error lists accepted ones) or a malformed area code keeps the contact out."""
    record, problems = parse(Kind.CONTACTS, **{"id": "c1", "name": "王五", "role": "cadre", **fields})
    assert record is None
    assert needle in errors(problems)[0]


def test_valid_speaker() -> None:
    """A speaker row with an MQTT-safe device id gives a Speaker."""
    record, problems = parse(Kind.SPEAKERS, device_id="SPK_01.a-b", village=CODE, name="村委会楼顶")
    assert record == Speaker("SPK_01.a-b", CODE, "村委会楼顶") and problems == []


@pytest.mark.parametrize("device_id", ["spk/1", "spk+", "spk#", "spk 1", "喇叭1", "", "s" * 65])
def test_bad_speaker_device_id(device_id: str) -> None:
    """Device ids with MQTT topic characters, spaces, non-ASCII, or empty are errors."""
    record, problems = parse(Kind.SPEAKERS, device_id=device_id, village=CODE)
    assert record is None
    assert "设备编号" in errors(problems)[0]


def test_messages_in_english() -> None:
    """With the English UI, row problems and header errors are in English."""
    set_language("en")
    _, problems = parse(Kind.VILLAGES, code="3301", name="x", township="t", county="c")
    assert problems[0].message == "village code must be 12 digits, got '3301'"
    _, problems = parse(Kind.RESIDENTS, id="r1", name="x", village=CODE, phone="123")
    assert "phone number '123' is invalid" in problems[0].message
    with pytest.raises(ImportFileError, match="is not a villages column"):
        read_header(["code", "name", "township", "county", "pop"], "f.csv:1")


def test_row_problem_str() -> None:
    """A problem prints as `source:line: message`, the form users and editors jump to."""
    assert str(RowProblem("a.xlsx[村]", 3, "坏", "error")) == "a.xlsx[村]:3: 坏"
