"""One row of a directory file turned into a model record, with the problems found on the way.

A row with an error is not imported; a warning means the record is imported but a value was dropped.
An unreadable phone number is only a warning: an elderly resident must never vanish from the directory
because of a typo in their number. Likewise a cadre who cannot be found: the resident is imported
without one (and shows as unassigned). Given `References` (an import's view of the directory), a
village, area or cadre may be written by its unique name as well as by its code or id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from warning import phone
from warning.directory.headers import OVERFLOW
from warning.directory.refs import References
from warning.i18n import t
from warning.model import DEFAULT_LANGUAGE, Contact, Kind, Record, Resident, Role, Speaker, Village

MAX_LENGTH = 64

_VILLAGE_CODE = re.compile(r"\d{12}")
_AREA_CODE = re.compile(r"\d{6}|\d{9}|\d{12}")
# A cell meant as a code (digits, maybe mangled by Excel), as opposed to a name.
_CODE_LIKE = re.compile(r"[\d\s.\-]+|\d(\.\d+)?[eE]\+?\d+")
_ID = re.compile(r"[^\s:]+")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.\-]+")
# What Excel writes into a CSV for a long number in a General-formatted cell: the digits are gone.
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE]\+?\d+")
_LIST_SEPARATORS = re.compile(r"[;,；，、]")

TAG_ALIASES: Mapping[str, str] = {
    "老人": "elderly",
    "老年人": "elderly",
    "高龄": "elderly",
    "独居": "lives_alone",
    "无智能手机": "no_smartphone",
    "无手机": "no_smartphone",
    "残疾": "disabled",
    "残疾人": "disabled",
    "行动不便": "disabled",
}

LANGUAGE_ALIASES: Mapping[str, str] = {
    "zh": "zh-CN",
    "zh-cn": "zh-CN",
    "zh_cn": "zh-CN",
    "中文": "zh-CN",
    "普通话": "zh-CN",
    "en": "en",
    "en-us": "en",
    "en_us": "en",
    "english": "en",
    "英文": "en",
    "英语": "en",
}

ROLE_ALIASES: Mapping[str, Role] = {
    **{role.value: role for role in Role},
    "村干部": Role.CADRE,
    "网格员": Role.CADRE,
    "包联干部": Role.CADRE,
    "村主任": Role.VILLAGE_HEAD,
    "村长": Role.VILLAGE_HEAD,
    "村支书": Role.VILLAGE_HEAD,
    "村书记": Role.VILLAGE_HEAD,
    "乡镇值班": Role.TOWNSHIP_DUTY,
    "镇值班": Role.TOWNSHIP_DUTY,
    "乡镇值班员": Role.TOWNSHIP_DUTY,
    "县值班": Role.COUNTY_DUTY,
    "县值班员": Role.COUNTY_DUTY,
    "救援队": Role.RESCUE_TEAM,
    "应急救援队": Role.RESCUE_TEAM,
}


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Something wrong in one row: `error` keeps the row out, `warning` imports it without the bad value."""

    source: str
    line: int
    message: str
    severity: Literal["error", "warning"]
    column: str = ""  # set for reference problems, so that an importer can count them by what they are about

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


def _shown(value: str) -> str:
    """A cell value as quoted in a message: long values are cut so one bad cell cannot flood a report."""
    return value if len(value) <= 40 else value[:40] + "…"


class _Row:
    """The cells of one row and the problems found in them so far."""

    def __init__(
        self, source: str, line: int, fields: Mapping[str, str], refs: References | None = None
    ) -> None:
        self.source, self.line, self.fields, self.refs = source, line, fields, refs
        self.problems: list[RowProblem] = []

    def get(self, column: str) -> str:
        return self.fields.get(column, "").strip()

    def error(self, message: str, column: str = "") -> None:
        self.problems.append(RowProblem(self.source, self.line, message, "error", column))

    def warn(self, message: str, column: str = "") -> None:
        self.problems.append(RowProblem(self.source, self.line, message, "warning", column))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def overflow(self) -> None:
        extra = self.get(OVERFLOW)
        if extra:
            self.error(
                t(
                    "此行的值比表头的列多（多出 “{extra}”）。请删除多余的值，或在表头为该列补上列名",
                    "this row has more values than the header has columns (extra: '{extra}'). "
                    "Delete the extra values or name their column in the header",
                    extra=_shown(extra),
                )
            )

    def text(self, column: str, *, required: bool) -> str:
        """A free-text value (a name, a township): non-empty when required, at most 64 characters."""
        value = self.get(column)
        if required and not value:
            self.error(t("{column} 列为空，请填写", "column {column} is empty; fill it in", column=column))
        elif len(value) > MAX_LENGTH:
            self.error(
                t(
                    "{column} 列最多 {max} 个字，实际 {n} 个：“{value}”，请缩短",
                    "column {column} allows at most {max} characters, got {n}: '{value}'; shorten it",
                    column=column,
                    max=MAX_LENGTH,
                    n=len(value),
                    value=_shown(value),
                )
            )
        return value

    def identifier(self, column: str) -> str:
        """An id: non-empty, at most 64 characters, no spaces and no `:` (ids are parts of Redis keys)."""
        value = self.get(column)
        if not value:
            self.error(
                t("{column} 列为空，请填写编号", "column {column} is empty; fill in the id", column=column)
            )
        elif len(value) > MAX_LENGTH or not _ID.fullmatch(value):
            self.error(
                t(
                    "{column} “{value}” 无效：编号最多 {max} 个字符，且不能含空格或冒号，请改正",
                    "{column} '{value}' is invalid: an id has at most {max} characters and no spaces or "
                    "colons; correct it",
                    column=column,
                    value=_shown(value),
                    max=MAX_LENGTH,
                )
            )
        return value

    def village_code(self, column: str) -> str:
        """A 12-digit village code (统计用区划代码)."""
        value = self.get(column)
        if not value:
            self.error(
                t(
                    "{column} 列为空，请填写12位村代码",
                    "column {column} is empty; fill in the 12-digit village code",
                    column=column,
                )
            )
        elif not _VILLAGE_CODE.fullmatch(value):
            self.error(
                t(
                    "村代码应为12位数字，实际为 “{value}”{hint}",
                    "village code must be 12 digits, got '{value}'{hint}",
                    value=_shown(value),
                    hint=_scientific_hint(value),
                )
            )
        return value

    def village_ref(self, column: str) -> str:
        """A resident's or loudspeaker's village: a 12-digit code, or (with references) a unique name.

        Without references only a code is accepted; with them the village must be in the directory.
        """
        value, before = self.get(column), len(self.problems)
        if not value or _CODE_LIKE.fullmatch(value) or self.refs is None:
            value = self.village_code(column)
        if len(self.problems) > before:
            return ""
        if self.refs is None:
            return value
        resolved = self.refs.village(value)
        if resolved.problem:
            self.error(resolved.problem, column)
        return resolved.value

    def phone(self, region: str) -> str:
        """The phone in E.164, or "" (with a warning) when it cannot be read: the record still counts."""
        value = self.get("phone")
        if not value:
            return ""
        try:
            return phone.normalize(value, region)
        except phone.InvalidPhone:
            self.warn(
                t(
                    "电话号码 “{value}” 无效，已导入此行但不含电话，请改正号码后重新导入{hint}",
                    "phone number '{value}' is invalid; the row was imported without a phone. Correct the "
                    "number and import again{hint}",
                    value=_shown(value),
                    hint=_scientific_hint(value),
                )
            )
            return ""

    def coordinates(self) -> tuple[float | None, float | None]:
        """`lat`/`lon` in degrees: both or neither, within range."""
        raw_lat, raw_lon = self.get("lat"), self.get("lon")
        if not raw_lat and not raw_lon:
            return None, None
        if not raw_lat or not raw_lon:
            self.error(t("纬度和经度须同时填写或同时留空", "fill in both lat and lon, or leave both empty"))
            return None, None
        lat = self._degrees("lat", raw_lat, 90.0)
        lon = self._degrees("lon", raw_lon, 180.0)
        return lat, lon

    def _degrees(self, column: str, raw: str, limit: float) -> float | None:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and -limit <= value <= limit:
            return value
        self.error(
            t(
                "{column} 应为 -{limit:g} 到 {limit:g} 之间的十进制度数，实际为 “{value}”",
                "{column} must be decimal degrees between -{limit:g} and {limit:g}, got '{value}'",
                column=column,
                limit=limit,
                value=_shown(raw),
            )
        )
        return None


def _scientific_hint(value: str) -> str:
    if not _SCIENTIFIC.fullmatch(value):
        return ""
    return t(
        "（Excel 把它变成了科学计数法，数字已丢失：请把该列设为“文本”格式，重新填写后再保存）",
        " (Excel turned it into scientific notation and the digits are lost: format the column as Text, "
        "re-enter the numbers and save again)",
    )


def _split(cell: str) -> list[str]:
    return [item.strip() for item in _LIST_SEPARATORS.split(cell) if item.strip()]


def _tag(raw: str) -> str:
    if raw in TAG_ALIASES:
        return TAG_ALIASES[raw]
    return raw.lower() if raw.isascii() else raw


def _village(row: _Row, region: str) -> Village:
    code, name = row.village_code("code"), row.text("name", required=True)
    township, county = row.text("township", required=True), row.text("county", required=True)
    lat, lon = row.coordinates()
    return Village(code=code, name=name, township=township, county=county, lat=lat, lon=lon)


def _resident(row: _Row, region: str) -> Resident:
    record_id, name, village = (
        row.identifier("id"),
        row.text("name", required=True),
        row.village_ref("village"),
    )
    language = row.get("language")
    if not language:
        language = DEFAULT_LANGUAGE
    elif language.lower() in LANGUAGE_ALIASES:
        language = LANGUAGE_ALIASES[language.lower()]
    else:
        row.warn(
            t(
                "不支持的语言 “{value}”，已按中文（zh-CN）导入。可用：zh-CN（中文）、en（英文）",
                "unsupported language '{value}'; imported as zh-CN. Accepted: zh-CN (中文), en (English)",
                value=_shown(language),
            )
        )
        language = DEFAULT_LANGUAGE
    cadre = row.get("cadre")
    if cadre and row.refs is not None:
        if village:  # a failed village fails the row: a cadre problem would only add noise
            resolved = row.refs.cadre(cadre, village)
            if resolved.problem:
                row.warn(resolved.problem, "cadre")
            cadre = resolved.value
    elif cadre and (len(cadre) > MAX_LENGTH or not _ID.fullmatch(cadre)):
        row.warn(
            t(
                "包联干部编号 “{value}” 无效（不能含空格或冒号，最多 {max} 个字符），"
                "已导入此行但未设包联干部",
                "cadre id '{value}' is invalid (no spaces or colons, at most {max} characters); the row "
                "was imported without a cadre",
                value=_shown(cadre),
                max=MAX_LENGTH,
            )
        )
        cadre = ""
    return Resident(
        id=record_id,
        name=name,
        village=village,
        phone=row.phone(region),
        tags=frozenset(_tag(tag) for tag in _split(row.get("tags"))),
        language=language,
        wechat_openid=row.get("wechat_openid"),
        cadre=cadre,
    )


def _contact(row: _Row, region: str) -> Contact:
    record_id, name = row.identifier("id"), row.text("name", required=True)
    raw_role = row.get("role")
    role = ROLE_ALIASES.get(raw_role.lower())
    if role is None:
        row.error(
            t(
                "角色 “{value}” 无效，请填写以下之一：{accepted}",
                "role '{value}' is invalid; use one of: {accepted}",
                value=_shown(raw_role),
                accepted=", ".join(ROLE_ALIASES),
            )
        )
    areas: list[str] = []
    for item in _split(row.get("villages")):
        code = _area(row, item)
        if code and code not in areas:
            areas.append(code)
    return Contact(
        id=record_id,
        name=name,
        role=role or Role.CADRE,
        phone=row.phone(region),
        areas=tuple(areas),
        wechat_userid=row.get("wechat_userid"),
    )


def _area(row: _Row, item: str) -> str:
    """One entry of a contact's `villages`: a 6/9/12-digit code or (with references) a unique name."""
    if (_CODE_LIKE.fullmatch(item) or row.refs is None) and not _AREA_CODE.fullmatch(item):
        row.error(
            t(
                "负责区域代码应为6位（县）、9位（乡镇）或12位（村）数字，实际为 “{value}”",
                "area codes must be 6 (county), 9 (township) or 12 (village) digits, got '{value}'",
                value=_shown(item),
            )
        )
        return ""
    if row.refs is None:
        return item
    resolved = row.refs.area(item)
    if resolved.problem:
        row.error(resolved.problem, "villages")
    return resolved.value


def _speaker(row: _Row, region: str) -> Speaker:
    device_id = row.get("device_id")
    if not device_id:
        row.error(t("device_id 列为空，请填写设备编号", "column device_id is empty; fill in the device id"))
    elif len(device_id) > MAX_LENGTH or not _DEVICE_ID.fullmatch(device_id):
        row.error(
            t(
                "设备编号 “{value}” 无效：只能含字母、数字、_ . -，最多 {max} 个字符"
                "（它也是 MQTT 客户端 ID）",
                "device id '{value}' is invalid: use only letters, digits, _ . - and at most {max} "
                "characters (it is also the MQTT client id)",
                value=_shown(device_id),
                max=MAX_LENGTH,
            )
        )
    return Speaker(
        device_id=device_id, village=row.village_ref("village"), name=row.text("name", required=False)
    )


_PARSERS: Mapping[Kind, Callable[[_Row, str], Record]] = {
    Kind.VILLAGES: _village,
    Kind.RESIDENTS: _resident,
    Kind.CONTACTS: _contact,
    Kind.SPEAKERS: _speaker,
}


def parse_row(
    kind: Kind,
    source: str,
    line: int,
    fields: Mapping[str, str],
    region: str = phone.DEFAULT_REGION,
    refs: References | None = None,
) -> tuple[Record | None, list[RowProblem]]:
    """Turn one row (canonical column -> cell text) into a record of `kind`, and list its problems.

    With `refs`, villages, areas and cadres are resolved against the directory (by code, id or unique
    name) and must exist in it; without, only their form is checked. Every problem of the row is
    reported, not only the first, so a user fixes a row in one pass. Returns `(None, problems)` when any
    problem is an error. Never raises for bad data.
    """
    row = _Row(source, line, fields, refs)
    row.overflow()
    record = _PARSERS[kind](row, region)
    return (None if row.failed else record), row.problems
