"""Header rows of directory files: canonical columns per kind, their aliases, and kind detection.

A header cell is matched after trimming spaces and the BOM and ignoring case; spaces and hyphens count as
underscores (`Device ID` is `device_id`). Aliases are per kind because some are ambiguous across kinds:
`村代码` is the village's own `code` in a villages file but the resident's `village` in a residents file,
and `名称` is a village's name or a loudspeaker's. The kind is therefore decided first, from which
kind's required columns are all present, and only then is every cell read with that kind's aliases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warning.errors import ImportFileError
from warning.i18n import t
from warning.model import Kind

# Values in data cells to the right of the last named column (see `Table.rows`); `parse_row` reports them.
OVERFLOW = ""

_PHONE_ALIASES = ("电话", "手机", "手机号", "手机号码", "联系电话", "mobile", "phone_number", "tel")
# A village may be given by code or by name (see `refs.py`), so the name headers count too.
_VILLAGE_REF_ALIASES = (
    "村",
    "所在村",
    "村代码",
    "所属村",
    "村名",
    "所在村名",
    "村庄",
    "village_code",
    "village_name",
)

# canonical column -> aliases, per kind, in file order. The canonical name is always accepted too.
ALIASES: Mapping[Kind, Mapping[str, tuple[str, ...]]] = {
    Kind.VILLAGES: {
        "code": ("代码", "村代码", "区划代码", "统计用区划代码", "村编码", "village_code"),
        "name": ("名称", "村名", "村庄名称", "村名称", "village_name"),
        "township": ("乡镇", "乡镇街道", "所属乡镇", "town"),
        "county": ("县", "县区", "区县", "所属县"),
        "lat": ("纬度", "latitude"),
        "lon": ("经度", "longitude", "lng"),
    },
    Kind.RESIDENTS: {
        "id": ("编号", "居民编号", "人员编号", "身份编号"),
        "name": ("姓名",),
        "phone": _PHONE_ALIASES,
        "village": _VILLAGE_REF_ALIASES,
        "tags": ("标签", "人群标签", "人员类别"),
        "language": ("语言",),
        "wechat_openid": ("微信OpenID", "openid"),
        "cadre": ("包联干部", "联系干部", "责任人", "网格员", "包联人", "包联干部姓名", "包联干部编号"),
    },
    Kind.CONTACTS: {
        "id": ("编号", "人员编号", "身份编号"),
        "name": ("姓名",),
        "phone": _PHONE_ALIASES,
        "villages": ("负责村", "辖区", "负责区域", "areas"),
        "role": ("角色", "职务"),
        "wechat_userid": ("企业微信", "企业微信账号", "userid"),
    },
    Kind.SPEAKERS: {
        "device_id": ("设备编号", "设备ID", "终端编号", "终端ID", "device"),
        "village": _VILLAGE_REF_ALIASES,
        "name": ("名称", "安装位置"),
    },
}

COLUMNS: Mapping[Kind, tuple[str, ...]] = {kind: tuple(aliases) for kind, aliases in ALIASES.items()}

REQUIRED: Mapping[Kind, frozenset[str]] = {
    Kind.VILLAGES: frozenset({"code", "name", "township", "county"}),
    Kind.RESIDENTS: frozenset({"id", "name", "village"}),
    Kind.CONTACTS: frozenset({"id", "name", "role"}),
    Kind.SPEAKERS: frozenset({"device_id", "village"}),
}

_SEPARATORS = re.compile(r"[\s\-]+")


def normalize(cell: str) -> str:
    """The form a header cell is matched in: no BOM, trimmed, case-folded, spaces and hyphens as `_`."""
    return _SEPARATORS.sub("_", cell.replace("\ufeff", "").strip()).casefold()


_LOOKUP: Mapping[Kind, Mapping[str, str]] = {
    kind: {normalize(name): canonical for canonical, names in aliases.items() for name in (canonical, *names)}
    for kind, aliases in ALIASES.items()
}


def kind_label(kind: Kind) -> str:
    """The kind's name for users: 村庄 / villages, 居民 / residents, …"""
    labels = {
        Kind.VILLAGES: ("村庄", "villages"),
        Kind.RESIDENTS: ("居民", "residents"),
        Kind.CONTACTS: ("联系人", "contacts"),
        Kind.SPEAKERS: ("喇叭", "speakers"),
    }
    zh, en = labels[kind]
    return t(zh, en)


def accepted(kind: Kind) -> str:
    """Every column of `kind` with its aliases, `code（代码/村代码/…）, name（…）`, for error messages."""
    return ", ".join(
        t("{col}（{names}）", "{col} ({names})", col=col, names="/".join(names))
        for col, names in ALIASES[kind].items()
    )


@dataclass(frozen=True, slots=True)
class Header:
    """A validated header: the file's kind and the canonical name of each column, in file order."""

    kind: Kind
    columns: tuple[str, ...]


def _column_ref(index: int) -> str:
    """0-based index → `第 3 列（C）`: the number for CSV users, the letter Excel shows."""
    letters, n = "", index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return t("第 {n} 列（{letters}）", "column {n} ({letters})", n=index + 1, letters=letters)


def _resolve(kind: Kind, cells: Sequence[str]) -> list[str | None]:
    lookup = _LOOKUP[kind]
    return [lookup.get(normalize(cell)) for cell in cells]


def _choose_kind(cells: Sequence[str], where: str) -> Kind:
    """The kind whose required columns are all present, preferring the one that knows every column.

    Raises:
        ImportFileError: no kind fits, or two fit equally well.
    """
    resolved = {kind: _resolve(kind, cells) for kind in ALIASES}
    unknown = {kind: sum(col is None for col in cols) for kind, cols in resolved.items()}
    fits = [kind for kind, cols in resolved.items() if REQUIRED[kind] <= set(cols)]
    if fits:
        best = min(unknown[kind] for kind in fits)
        tied = [kind for kind in fits if unknown[kind] == best]
        if len(tied) > 1:
            raise ImportFileError(
                t(
                    "{where}: 无法确定这是哪类文件：表头同时符合{kinds}文件。请删除不属于该类文件的列。",
                    "{where}: cannot tell which kind of file this is: the header fits more than one ({kinds}). "
                    "Remove the columns that do not belong to the file's kind.",
                    where=where,
                    kinds=t("、", ", ").join(kind_label(kind) for kind in tied),
                )
            )
        return tied[0]
    # No kind has all its required columns: guess the intended kind to say what is missing.
    guess = max(
        ALIASES, key=lambda kind: (len(cells) - unknown[kind], len(REQUIRED[kind] & set(resolved[kind])))
    )
    if len(cells) == unknown[guess]:
        raise ImportFileError(
            t(
                "{where}: 表头不符合任何一类文件：{header}。村庄文件须有 code、name、township、county 列；"
                "居民文件须有 id、name、village 列；联系人文件须有 id、name、role 列；喇叭文件须有 "
                "device_id、village 列（也可用中文列名，如 村代码、村名、乡镇、县、编号、姓名、所在村、"
                "角色、设备编号）。请检查第一行是否为表头。",
                "{where}: the header matches no kind of file: {header}. A villages file needs columns "
                "code, name, township, county; residents need id, name, village; contacts need id, name, "
                "role; speakers need device_id, village (Chinese names such as 村代码, 姓名, 所在村 work "
                "too). "
                "Check that the first row is the header.",
                where=where,
                header=", ".join(cells),
            )
        )
    missing = sorted(REQUIRED[guess] - set(resolved[guess]), key=COLUMNS[guess].index)
    raise ImportFileError(
        t(
            "{where}: 这像是{kind}文件，但缺少必需的列：{missing}。请添加这些列。可用的列：{accepted}。",
            "{where}: this looks like a {kind} file but lacks required columns: {missing}. Add them. "
            "Accepted columns: {accepted}.",
            where=where,
            kind=kind_label(guess),
            missing=", ".join(missing),
            accepted=accepted(guess),
        )
    )


def read_header(cells: Sequence[str], where: str) -> Header:
    """Detect the kind of file from its header row and name each column canonically.

    Empty cells at the end of the row are ignored (spreadsheets often carry formatted blank columns).
    `where` (`path:line`) prefixes error messages.

    Raises:
        ImportFileError: the header matches no kind, lacks a required column, names an unknown
            column, leaves a column unnamed, or names a column twice. The message lists every such
            problem and what is accepted.
    """
    cells = [cell.replace("\ufeff", "").strip() for cell in cells]
    while cells and not cells[-1]:
        cells.pop()
    kind = _choose_kind(cells, where)
    columns = _resolve(kind, cells)
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for index, (cell, column) in enumerate(zip(cells, columns, strict=True)):
        if not cell:
            problems.append(
                t(
                    "{col}没有列名，请填写列名或删除该列",
                    "{col} has no name; name it or delete it",
                    col=_column_ref(index),
                )
            )
        elif column is None:
            problems.append(
                t(
                    "{col}“{cell}”不是{kind}文件的列，请改正列名或删除该列",
                    "{col} '{cell}' is not a {kind} column; correct its name or delete it",
                    col=_column_ref(index),
                    cell=cell,
                    kind=kind_label(kind),
                )
            )
        elif column in first_seen:
            other = first_seen[column]
            problems.append(
                t(
                    "{col}“{cell}”与{other}“{first}”都表示 {column}，请删除其中一列",
                    "{col} '{cell}' and {other} '{first}' both mean {column}; delete one of them",
                    col=_column_ref(index),
                    cell=cell,
                    other=_column_ref(other),
                    first=cells[other],
                    column=column,
                )
            )
        else:
            first_seen[column] = index
    if problems:
        raise ImportFileError(
            t(
                "{where}: 表头有误：{problems}。{kind}文件可用的列：{accepted}。",
                "{where}: bad header: {problems}. Accepted {kind} columns: {accepted}.",
                where=where,
                problems=t("；", "; ").join(problems),
                kind=kind_label(kind),
                accepted=accepted(kind),
            )
        )
    return Header(kind, tuple(col for col in columns if col is not None))
