"""Readers for directory files: a CSV or XLSX file becomes one `Table` per kind-bearing sheet.

`open_tables` checks everything that would make the whole file unimportable (format, encoding, every
header) before a single row is read, so a bad file imports nothing. `Table.rows` then streams: a CSV is
read through the csv module, an XLSX through openpyxl's read-only mode, never the whole file at once.
No file stays open between calls: `open_tables` closes what it opened, and each `rows()` iteration opens
the file and closes it when it finishes. `Table.close()` closes iterations abandoned half-way (an
exception, a cancelled import); calling it is always safe.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import inspect
import io
import math
import zipfile
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from xml.etree.ElementTree import ParseError

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from warning.config import DirectorySettings
from warning.directory.headers import OVERFLOW, read_header
from warning.errors import ImportFileError
from warning.i18n import t
from warning.model import Kind

SNIFF_BYTES = 64 * 1024
_CHUNK = 1024 * 1024
_MB = 1024 * 1024
_RATIO_FLOOR = _MB  # members smaller than this unpacked are too small to bomb, whatever their ratio
_DEFAULT_LIMITS = DirectorySettings()
_FIX = (
    "请把文件拆分成几个较小的文件，或另存为 “CSV UTF-8 (逗号分隔)” 后导入",
    "split the file into smaller ones, or save it as 'CSV UTF-8 (Comma delimited)' and import that",
)
# What openpyxl raises on a damaged or hostile workbook (defusedxml's errors are ValueErrors).
# zlib.error: a damaged deflate stream inside the zip, found only when that part is read.
_XLSX_ERRORS = (
    OSError,
    zipfile.BadZipFile,
    InvalidFileException,
    KeyError,
    ValueError,
    ParseError,
    zlib.error,
)


class _Source(Protocol):
    """Where a table's rows come from: every row after the header, as stripped cell texts."""

    def data(self) -> Generator[tuple[int, list[str]], None, None]: ...

    def progress(self) -> tuple[int, int | None]: ...


@dataclass
class Table:
    """One importable table: a CSV file, or one sheet of a workbook, with its kind and columns."""

    source: str
    kind: Kind
    columns: tuple[str, ...]
    _source: _Source = field(repr=False, compare=False)
    _iterations: list[Generator[tuple[int, dict[str, str]], None, None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Yield `(line, {canonical column: text})` for each non-blank data row, streaming.

        Missing trailing cells are "". Non-empty cells right of the last named column are joined under
        `headers.OVERFLOW`, so that `parse_row` reports them instead of silently dropping them. The file
        is closed when iteration ends, when the iterator is closed, or by `close()`.

        Raises:
            ImportFileError: the file changed or became unreadable since `open_tables`, or a CSV
                quote is left open or misplaced (found only when reading that far).
        """
        iteration = self._rows()
        self._iterations = [
            *(it for it in self._iterations if inspect.getgeneratorstate(it) != inspect.GEN_CLOSED),
            iteration,
        ]
        return iteration

    def _rows(self) -> Generator[tuple[int, dict[str, str]], None, None]:
        width = len(self.columns)
        with contextlib.closing(self._source.data()) as data:
            for line, cells in data:
                if not any(cells):
                    continue
                fields = dict(zip(self.columns, cells, strict=False))
                for column in self.columns[len(cells) :]:
                    fields[column] = ""
                extra = [cell for cell in cells[width:] if cell]
                if extra:
                    fields[OVERFLOW] = ", ".join(extra)
                yield line, fields

    def close(self) -> None:
        """Close the files of any `rows()` iteration still open; a no-op when there is none."""
        for iteration in self._iterations:
            iteration.close()
        self._iterations.clear()

    def progress(self) -> tuple[int, int | None]:
        """`(done, total)`: bytes for a CSV, rows for an XLSX sheet; `total` is None when unknown."""
        return self._source.progress()


def open_tables(path: Path, limits: DirectorySettings = _DEFAULT_LIMITS) -> list[Table]:
    """Open a directory file: a CSV gives one table, an XLSX one per visible, non-empty sheet.

    Hidden sheets are skipped: spreadsheet templates keep their drop-down lists there. An XLSX is
    checked against the `limits` budgets on its zip directory before openpyxl reads any of it; the
    row and cell budgets are checked again while `Table.rows` streams.

    Raises:
        ImportFileError: the file cannot be read, is neither .csv nor .xlsx, cannot be decoded (the
            message names the line), has no header, any table's header is bad, or it is over a
            budget of `limits` (the message names the limit and how to fix the file).
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [_open_csv(path, limits)]
    if suffix == ".xlsx":
        _check_zip(path, limits)
        return _open_xlsx(path, limits)
    raise ImportFileError(
        t(
            "{path}: 不支持的文件类型 “{suffix}”。请在 Excel 中另存为 “Excel 工作簿 (*.xlsx)” "
            "或 “CSV UTF-8 (逗号分隔)”",
            "{path}: unsupported file type '{suffix}'. In Excel, save it as 'Excel Workbook (*.xlsx)' or "
            "'CSV UTF-8 (Comma delimited)'",
            path=path,
            suffix=path.suffix or path.name,
        )
    )


def _unreadable(path: Path, exc: OSError) -> ImportFileError:
    return ImportFileError(
        t(
            "{path}: 无法读取文件（{reason}），请检查路径和权限",
            "{path}: cannot read the file ({reason}); check the path and permissions",
            path=path,
            reason=exc.strerror or exc,
        )
    )


# ---- CSV ---------------------------------------------------------------------------------------------


def _decodes(data: bytes, encoding: str, *, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(data, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _first_bad_line(path: Path, encoding: str) -> int | None:
    """The 1-based line holding the first byte sequence `encoding` cannot decode, or None if all decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as f:
        try:
            while chunk := f.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return None
        except UnicodeDecodeError:
            pass
        # Slow path, only for a bad file: neither UTF-8 nor GB18030 has a newline byte inside a character,
        # so each line can be decoded on its own.
        f.seek(0)
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
        return None


def _csv_encoding(path: Path) -> str:
    """UTF-8 (BOM or not), else GB18030 as Chinese Excel saves CSV.

    Raises:
        ImportFileError: UTF-16 ("Unicode text"), or bytes that are neither; the message names the line.
    """
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
        whole = not f.read(1)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError(
            t(
                "{path}: 文件是 UTF-16 编码（Excel 的 “Unicode 文本”），请另存为 “CSV UTF-8 (逗号分隔)”",
                "{path}: the file is UTF-16 (Excel's 'Unicode Text'); save it as "
                "'CSV UTF-8 (Comma delimited)'",
                path=path,
            )
        )
    encoding = "utf-8" if _decodes(head, "utf-8", final=whole) else "gb18030"
    bad = _first_bad_line(path, encoding)
    if (
        bad is not None
        and encoding == "utf-8"
        and head.isascii()
        and _first_bad_line(path, "gb18030") is None
    ):
        # The first 64 KiB were plain ASCII, which both encodings share; the Chinese came later.
        encoding, bad = "gb18030", None
    if bad is not None:
        raise ImportFileError(
            t(
                "{path}:{line}: 无法识别文件编码（既不是 UTF-8 也不是 GBK/GB18030），"
                "请另存为 “CSV UTF-8 (逗号分隔)”",
                "{path}:{line}: cannot decode the file (neither UTF-8 nor GBK/GB18030); save it as "
                "'CSV UTF-8 (Comma delimited)'",
                path=path,
                line=bad,
            )
        )
    return "utf-8-sig" if encoding == "utf-8" else encoding


class _CsvSource:
    """The records of a CSV file with the physical line each starts on; tracks bytes read for progress."""

    def __init__(
        self,
        path: Path,
        encoding: str,
        header_line: int = 0,
        header: Sequence[str] = (),
        limits: DirectorySettings = _DEFAULT_LIMITS,
    ) -> None:
        self.path, self.encoding = path, encoding
        self.header_line, self.header = header_line, list(header)
        self.limits = limits
        self.size = path.stat().st_size
        self._file: IO[bytes] | None = None
        self._done = 0

    def records(self) -> Generator[tuple[int, list[str]], None, None]:
        """Every record, blank ones included, as `(first line, stripped cells)`.

        Raises:
            ImportFileError: malformed quoting (a quote left open swallows every later line, so it
                stops the import rather than hiding rows), a cell larger than the csv module allows, or
                undecodable bytes.
        """
        with self.path.open("rb") as raw:
            self._file = raw
            text = io.TextIOWrapper(raw, encoding=self.encoding, newline="")
            reader = csv.reader(text, strict=True)
            start = 1
            try:
                for record in reader:
                    if start > self.limits.max_rows:
                        raise _too_many_rows(self.path, self.limits)
                    cells = [cell.strip() for cell in record]
                    _check_cells(self.path, start, cells, self.limits)
                    yield start, cells
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise ImportFileError(
                    t(
                        "{path}:{line}: 无法解析 CSV（{reason}），请检查引号是否成对",
                        "{path}:{line}: cannot parse the CSV ({reason}); check that quotes are paired",
                        path=self.path,
                        line=start,
                        reason=exc,
                    )
                ) from exc
            except UnicodeDecodeError as exc:
                line = _first_bad_line(self.path, self.encoding) or start
                raise ImportFileError(
                    t(
                        "{path}:{line}: 文件编码有误，请另存为 “CSV UTF-8 (逗号分隔)”",
                        "{path}:{line}: cannot decode the file; save it as 'CSV UTF-8 (Comma delimited)'",
                        path=self.path,
                        line=line,
                    )
                ) from exc
            finally:
                self._done, self._file = self.size, None
                text.detach()

    def data(self) -> Generator[tuple[int, list[str]], None, None]:
        with contextlib.closing(self.records()) as records:
            for line, cells in records:
                if line > self.header_line:
                    yield line, cells
                elif line == self.header_line and cells != self.header:
                    raise _changed(self.path)

    def progress(self) -> tuple[int, int | None]:
        f = self._file
        return (f.tell() if f is not None else self._done), self.size


def _changed(source: object) -> ImportFileError:
    return ImportFileError(
        t(
            "{source}: 导入过程中文件被修改，请关闭其他程序后重新导入",
            "{source}: the file changed during the import; close other programs and import again",
            source=source,
        )
    )


def _over_budget(source: object, zh: str, en: str, **params: object) -> ImportFileError:
    return ImportFileError(
        t("{source}: " + zh + "：" + _FIX[0], "{source}: " + en + ": " + _FIX[1], source=source, **params)
    )


def _too_many_rows(source: object, limits: DirectorySettings) -> ImportFileError:
    return _over_budget(
        source,
        "超过 {limit} 行的上限（directory.max_rows）",
        "more than {limit} rows, the limit (directory.max_rows)",
        limit=limits.max_rows,
    )


def _check_cells(source: object, line: int, cells: list[str], limits: DirectorySettings) -> None:
    longest = max((len(cell) for cell in cells), default=0)
    if longest > limits.max_cell_chars:
        raise _over_budget(
            f"{source}:{line}",
            "有一个单元格长 {length} 个字符，超过 {limit} 的上限（directory.max_cell_chars）",
            "a cell is {length} characters long, over the limit of {limit} (directory.max_cell_chars)",
            length=longest,
            limit=limits.max_cell_chars,
        )


def _open_csv(path: Path, limits: DirectorySettings) -> Table:
    try:
        encoding = _csv_encoding(path)
        reader = _CsvSource(path, encoding, limits=limits)
        records = reader.records()
        header = next(((line, cells) for line, cells in records if any(cells)), None)
        records.close()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if header is None:
        raise ImportFileError(
            t(
                "{path}: 文件为空，第一行应为表头",
                "{path}: the file is empty; its first row must be the header",
                path=path,
            )
        )
    line, cells = header
    parsed = read_header(cells, f"{path}:{line}")
    return Table(str(path), parsed.kind, parsed.columns, _CsvSource(path, encoding, line, cells, limits))


# ---- XLSX --------------------------------------------------------------------------------------------


def cell_text(value: object) -> str:
    """A spreadsheet cell as text: numbers typed into Excel come back as the digits the user typed.

    13800138000, 1.38001380e10 and 13800138000.0 all give "13800138000"; dates give ISO dates.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e17:
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value).strip()


def _load(path: Path) -> Any:
    """The workbook in read-only mode; the caller must `close()` it.

    Raises:
        ImportFileError: unreadable, or not a valid workbook.
    """
    try:
        return load_workbook(path, read_only=True, data_only=True)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    except _XLSX_ERRORS as exc:
        raise _not_xlsx(path, exc) from exc


def _not_xlsx(source: object, exc: Exception) -> ImportFileError:
    return ImportFileError(
        t(
            "{source}: 不是有效的 Excel 工作簿（{reason}），请用 Excel 打开并另存为 “Excel 工作簿 (*.xlsx)”",
            "{source}: not a valid Excel workbook ({reason}); open it in Excel and save as "
            "'Excel Workbook (*.xlsx)'",
            source=source,
            reason=exc,
        )
    )


def _check_zip(path: Path, limits: DirectorySettings) -> None:
    """Refuse a zip bomb before openpyxl inflates anything, from the sizes the zip directory declares.

    Python's zipfile never inflates a member past its declared size, so these budgets hold for the
    reading that follows. A file that is no zip at all is left for `_load` to name as such.

    Raises:
        ImportFileError: over `xlsx_max_members`, `xlsx_max_unpacked_mb`, or `xlsx_max_ratio`.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    except (zipfile.BadZipFile, ValueError):
        return
    if len(members) > limits.xlsx_max_members:
        raise _over_budget(
            path,
            "工作簿内含 {count} 个部件，超过 {limit} 个的上限（directory.xlsx_max_members）",
            "the workbook holds {count} parts, over the limit of {limit} (directory.xlsx_max_members)",
            count=len(members),
            limit=limits.xlsx_max_members,
        )
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.xlsx_max_unpacked_mb * _MB:
        raise _over_budget(
            path,
            "工作簿解压后有 {size} MB，超过 {limit} MB 的上限（directory.xlsx_max_unpacked_mb）",
            "the workbook unpacks to {size} MB, over the limit of {limit} MB (directory.xlsx_max_unpacked_mb)",
            size=math.ceil(unpacked / _MB),
            limit=limits.xlsx_max_unpacked_mb,
        )
    for member in members:
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > _RATIO_FLOOR and ratio > limits.xlsx_max_ratio:
            raise _over_budget(
                path,
                "部件 {member} 的压缩比为 {ratio}:1，超过 {limit}:1 的上限（directory.xlsx_max_ratio），"
                "可能是压缩炸弹",
                "part {member} is compressed {ratio}:1, over the limit of {limit}:1 "
                "(directory.xlsx_max_ratio): it may be a zip bomb",
                member=member.filename,
                ratio=round(ratio),
                limit=limits.xlsx_max_ratio,
            )


class _SheetSource:
    """The rows of one worksheet, by row number; opens the workbook for each iteration."""

    def __init__(
        self,
        path: Path,
        sheet: str,
        source: str,
        header_row: int,
        header: Sequence[str],
        total: int | None,
        limits: DirectorySettings = _DEFAULT_LIMITS,
    ) -> None:
        self.path, self.sheet, self.source = path, sheet, source
        self.header_row, self.header, self.total = header_row, list(header), total
        self.limits = limits
        self._done = 0

    def data(self) -> Generator[tuple[int, list[str]], None, None]:
        workbook = _load(self.path)
        try:
            sheet = workbook[self.sheet]
            sheet.reset_dimensions()  # some writers record wrong dimensions, which would cut rows off
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                self._done = number
                if number > self.limits.max_rows:  # empty rows count too: a gap to row 10⁸ is no escape
                    raise _too_many_rows(self.source, self.limits)
                cells = [cell_text(value) for value in values]
                _check_cells(self.source, number, cells, self.limits)
                if number > self.header_row:
                    yield number, cells
                elif number == self.header_row and _trimmed(cells) != _trimmed(self.header):
                    raise _changed(self.source)
        except _XLSX_ERRORS as exc:
            raise _not_xlsx(self.source, exc) from exc
        finally:
            workbook.close()

    def progress(self) -> tuple[int, int | None]:
        total = self.total if self.total is not None and self.total >= self._done else None
        return self._done, total


def _trimmed(cells: list[str]) -> list[str]:
    while cells and not cells[-1]:
        cells = cells[:-1]
    return cells


def _first_row(sheet: Any, source: str, limits: DirectorySettings) -> tuple[int, list[str]] | None:
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if number > limits.max_rows:
            raise _too_many_rows(source, limits)
        cells = [cell_text(value) for value in values]
        _check_cells(source, number, cells, limits)
        if any(cells):
            return number, cells
    return None


def _open_xlsx(path: Path, limits: DirectorySettings) -> list[Table]:
    workbook = _load(path)
    found: list[tuple[str, int | None, int, list[str]]] = []
    try:
        for sheet in workbook.worksheets:
            if sheet.sheet_state != "visible":
                continue
            total = sheet.max_row if (sheet.max_row or 0) > 1 else None
            if total is not None and total > limits.max_rows:  # as declared; checked again while reading
                raise _too_many_rows(f"{path}[{sheet.title}]", limits)
            sheet.reset_dimensions()
            first = _first_row(sheet, f"{path}[{sheet.title}]", limits)
            if first is not None:
                found.append((sheet.title, total, *first))
    except _XLSX_ERRORS as exc:
        raise _not_xlsx(path, exc) from exc
    finally:
        workbook.close()
    if not found:
        raise ImportFileError(
            t(
                "{path}: 工作簿中没有数据，第一行应为表头",
                "{path}: the workbook has no data; its first row must be the header",
                path=path,
            )
        )
    tables: list[Table] = []
    problems: list[str] = []
    for title, total, row, cells in found:
        source = f"{path}[{title}]" if len(found) > 1 else str(path)
        try:
            parsed = read_header(cells, f"{source}:{row}")
        except ImportFileError as exc:
            problems.append(str(exc))
            continue
        tables.append(
            Table(
                source,
                parsed.kind,
                parsed.columns,
                _SheetSource(path, title, source, row, cells, total, limits),
            )
        )
    if problems:
        raise ImportFileError("\n".join(problems))
    return tables
