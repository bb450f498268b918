"""Properties of the directory importers (read.py, rows.py): hostile files never crash them.

Any CSV bytes, any XLSX cells and headers, and mutated real workbooks end as records, row-level
problems or one ImportFileError for the file, never another exception; and generated valid rows
written as CSV or XLSX read back as the same records. `WARNING_FUZZ_EXAMPLES` raises the budget.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openpyxl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warning.directory.read import open_tables
from warning.directory.rows import RowProblem, parse_row
from warning.errors import ImportFileError
from warning.model import Kind, Record, Resident, Village

EXAMPLES = int(os.environ.get("WARNING_FUZZ_EXAMPLES", "0")) or 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SAMPLE = Path(__file__).resolve().parents[2] / "warning" / "sample" / "data"
HEADERS = {
    Kind.VILLAGES: ["code", "name", "township", "county", "lat", "lon"],
    Kind.RESIDENTS: ["id", "name", "phone", "village", "tags", "language", "wechat_openid", "cadre"],
    Kind.CONTACTS: ["id", "name", "phone", "villages", "role", "wechat_userid"],
    Kind.SPEAKERS: ["device_id", "village", "name"],
}
# Cells that steer towards the parsers' edges: numbers Excel mangles, formulas, odd phones and codes.
CELLS = st.sampled_from(
    [
        "",
        " ",
        "331099101201",
        "3.31099101201E+11",
        "33109910120",
        "+8613800000000",
        "13800000000",
        "1.38E+10",
        "=1+1",
        "@SUM(A1)",
        "elderly;disabled",
        "zh-CN",
        "en",
        "cadre",
        "village_head",
        "NaN",
        "-1e999",
        "91.5",
        "\x00",
        "\ufeff",
        '"',
        "a,b",
        "\n",
        "村",
    ]
) | st.text(st.characters(exclude_categories=["Cs"]), max_size=24)


@contextmanager
def written(name: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


def read_all(path: Path) -> list[tuple[Record | None, list[RowProblem]]]:
    """Open, stream and parse every row; an ImportFileError for the file is the one allowed exception."""
    results: list[tuple[Record | None, list[RowProblem]]] = []
    try:
        tables = open_tables(path)
    except ImportFileError:
        return results
    for table in tables:
        try:
            for line, fields in table.rows():
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
                record, problems = parse_row(table.kind, table.source, line, fields)
                assert all(isinstance(p, RowProblem) and p.message for p in problems)
                # A record comes back exactly when no problem is an error.
                assert (record is None) == any(p.severity == "error" for p in problems), problems
                results.append((record, problems))
        except ImportFileError:
            pass
        finally:
            table.close()
    return results


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


def _xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


KIND = st.sampled_from(list(HEADERS))


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_csv_bytes_never_crash(data: bytes) -> None:
    with written("x.csv", data) as path:
        read_all(path)


@FUZZ
@given(KIND, st.lists(st.lists(CELLS, max_size=10), max_size=8), st.booleans())
def test_arbitrary_cells_under_a_real_header(kind: Kind, rows: list[list[str]], shuffle: bool) -> None:
    """A real header (maybe reversed) over arbitrary cells: records or row problems, never an exception."""
    header = list(reversed(HEADERS[kind])) if shuffle else HEADERS[kind]
    with written("x.csv", _csv([header, *rows])) as path:
        read_all(path)


@FUZZ
@given(st.lists(st.lists(CELLS, min_size=1, max_size=8), min_size=1, max_size=6))
def test_arbitrary_headers_and_cells(rows: list[list[str]]) -> None:
    with written("x.csv", _csv(rows)) as path:
        read_all(path)


XLSX_CELLS = (
    CELLS.filter(lambda s: not s.startswith("="))  # openpyxl stores "=…" as a formula, fine but slow to vary
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | st.datetimes()
)


def _xlsx_safe(value: object) -> object:
    """openpyxl refuses control characters in a cell; a spreadsheet program would not write them either."""
    if isinstance(value, str):
        return "".join(c for c in value if c >= " " or c in "\t\n\r")
    return value


@FUZZ
@given(KIND, st.lists(st.lists(XLSX_CELLS, max_size=10), max_size=6), st.booleans())
def test_arbitrary_xlsx_cells(kind: Kind, rows: list[list[object]], real_header: bool) -> None:
    """Any cell types (numbers, dates, booleans, blanks) under a real or generated header never crash."""
    header: list[object] = list(HEADERS[kind]) if real_header else (rows[0] if rows else [])
    data = _xlsx([[_xlsx_safe(c) for c in row] for row in [header, *rows]])
    with written("x.xlsx", data) as path:
        read_all(path)


_REAL_XLSX: list[bytes] = []


def real_xlsx() -> bytes:
    if not _REAL_XLSX:
        with (SAMPLE / "residents.csv").open(encoding="utf-8") as fh:
            rows = list(csv.reader(fh))[:40]
        _REAL_XLSX.append(_xlsx(rows))  # type: ignore[arg-type]
    return _REAL_XLSX[0]


@FUZZ
@given(st.data())
def test_mutated_workbooks_raise_only_import_file_error(data: st.DataObject) -> None:
    """Byte flips, truncations and insertions in a real workbook: ImportFileError, never another exception."""
    message = bytearray(real_xlsx())
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        at = data.draw(st.integers(0, len(message)), label="at")
        kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]), label="kind")
        if kind == "truncate":
            del message[at:]
        elif kind == "flip" and at < len(message):
            message[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif kind == "insert":
            message[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="piece")
        elif kind == "delete":
            del message[at : at + data.draw(st.integers(1, 64), label="length")]
    with written("x.xlsx", bytes(message)) as path:
        read_all(path)


# --- round trips -----------------------------------------------------------------------------------

NAME = st.text(st.characters(whitelist_categories=["Lo", "Lu", "Ll", "Nd"]), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and not s.isdigit() and not s[0].isdigit()
)


@st.composite
def villages(draw: st.DrawFn) -> list[Village]:
    codes = draw(st.lists(st.integers(1, 999), min_size=1, max_size=8, unique=True))
    places = st.none() | st.tuples(st.integers(18_000, 53_000), st.integers(73_000, 135_000))
    out = []
    for n in codes:
        place = draw(places)  # both coordinates or neither
        lat, lon = (place[0] / 1000, place[1] / 1000) if place else (None, None)
        out.append(Village(f"331099101{n:03d}", draw(NAME), draw(NAME), draw(NAME), lat, lon))
    return out


def _village_rows(items: list[Village]) -> list[list[str]]:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    return [HEADERS[Kind.VILLAGES]] + [
        [v.code, v.name, v.township, v.county, number(v.lat), number(v.lon)] for v in items
    ]


def _records(path: Path) -> list[Record]:
    results = read_all(path)
    assert all(record is not None for record, _ in results), [p for _, p in results if p]
    return [record for record, _ in results if record is not None]


@FUZZ
@given(villages(), st.booleans())
def test_generated_villages_round_trip(items: list[Village], as_xlsx: bool) -> None:
    """Valid village rows written as CSV or XLSX read back as exactly those villages."""
    rows = _village_rows(items)
    data = _xlsx(rows) if as_xlsx else _csv(rows)  # type: ignore[arg-type]
    with written("villages.xlsx" if as_xlsx else "villages.csv", data) as path:
        got = _records(path)
    assert got == items


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(1, 9_999_999).map(lambda n: f"R{n:07d}"),
            NAME,
            st.integers(0, 99_999_999).map(lambda n: f"+86138{n:08d}"),
            st.sampled_from(["331099101201", "331099101202"]),
            st.sampled_from(["zh-CN", "en"]),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda r: r[0],
    )
)
def test_generated_residents_round_trip(items: list[tuple[str, str, str, str, str]]) -> None:
    """Valid resident rows read back with the same id, name, E.164 phone, village and language."""
    rows = [HEADERS[Kind.RESIDENTS]] + [[i, n, p, v, "", lang, "", ""] for i, n, p, v, lang in items]
    with written("residents.csv", _csv(rows)) as path:
        got = _records(path)
    assert [(r.id, r.name, r.phone, r.village, r.language) for r in got if isinstance(r, Resident)] == [
        (i, n, p, v, lang) for i, n, p, v, lang in items
    ]
