"""References in directory rows (a village, an area, a cadre) resolved by code, id or unique name.

Bureaus' spreadsheets name places and people the way people do: "青石村", "城关镇", "李建国". An import
builds one `References` from the directory once (villages, then contacts) and every row is resolved
against it in memory, so a million residents cost no Redis round trips for it. A reference that matches
nothing, or several things, is not guessed: the caller gets a message saying what to write instead,
naming the candidates' codes or ids.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from warning.i18n import t
from warning.model import Contact, Village

# How many candidates an ambiguity message lists; a name shared by dozens is not worth listing in full.
MAX_CANDIDATES = 5
# Between a township and a village name ("城关镇/新村", "城关镇 新村") the separator carries no meaning.
_SEPARATORS = re.compile(r"[\s/／\\|｜\-－—·・]+")


def name_key(text: str) -> str:
    """The form names are matched in: NFKC (full-width letters and digits), no separators, case-folded."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).casefold()


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference's outcome: `value` (a code or an id) when found, else `problem` says what to write."""

    value: str = ""
    problem: str = ""


def _shown(value: str) -> str:
    """A cell value as quoted in a message, cut so that one bad cell cannot flood a report."""
    return value if len(value) <= 40 else value[:40] + "…"


def _add(index: dict[str, list[str]], key: str, value: str) -> None:
    values = index.setdefault(key, [])
    if value not in values:
        values.append(value)


def _listed(items: list[str]) -> str:
    shown = t("、", ", ").join(items[:MAX_CANDIDATES])
    return shown if len(items) <= MAX_CANDIDATES else shown + t(" 等", " and others")


class References:
    """The directory's village codes and names and its contacts' ids and names, for resolving rows."""

    def __init__(self, villages: Iterable[Village] = ()) -> None:
        self._villages: dict[str, Village] = {}
        self._prefixes: set[str] = set()
        self._village_names: dict[str, list[str]] = {}  # name key -> 12-digit codes
        self._area_names: dict[str, list[str]] = {}  # village, township or county name key -> codes
        self._township_names: dict[str, str] = {}  # 9-digit code -> township name
        self._county_names: dict[str, str] = {}  # 6-digit code -> county name
        self._contact_areas: dict[str, tuple[str, ...]] = {}  # contact id -> areas
        self._contact_names: dict[str, list[str]] = {}  # name key -> contact ids
        for village in villages:
            self.add_village(village)

    def add_village(self, village: Village) -> None:
        code = village.code
        self._villages[code] = village
        self._prefixes.update((code[:6], code[:9], code))
        self._township_names.setdefault(code[:9], village.township)
        self._county_names.setdefault(code[:6], village.county)
        for key in (
            name_key(village.name),
            name_key(village.township + village.name),
            name_key(village.county + village.township + village.name),
        ):
            _add(self._village_names, key, code)
            _add(self._area_names, key, code)
        for key in (name_key(village.township), name_key(village.county + village.township)):
            _add(self._area_names, key, code[:9])
        _add(self._area_names, name_key(village.county), code[:6])

    def add_contacts(self, contacts: Iterable[Contact]) -> None:
        for contact in contacts:
            self._contact_areas[contact.id] = contact.areas
            _add(self._contact_names, name_key(contact.name), contact.id)

    def _place(self, code: str) -> str:
        """Where a code is, for telling candidates apart: a village's township, a township's county."""
        if len(code) == 12 and code in self._villages:
            return self._villages[code].township
        if len(code) == 9:
            return self._county_names.get(code[:6], "") + self._township_names.get(code, "")
        return self._county_names.get(code[:6], "")

    def _area_label(self, code: str) -> str:
        """A code as people say it: 城关镇新村, 城关镇, 海屿县."""
        if code in self._villages:
            village = self._villages[code]
            return village.township + village.name
        if len(code) == 9:
            return self._township_names.get(code, code)
        return self._county_names.get(code, code)

    def village(self, raw: str) -> Resolved:
        """A resident's or loudspeaker's village: its 12-digit code, or its name if only one has it.

        A name may be qualified by its township ("城关镇新村", "城关镇/新村") when villages share a name.
        """
        if raw in self._villages:
            return Resolved(raw)
        if raw.isdigit():
            return Resolved(
                problem=t(
                    "村代码 {c} 不在名录中：请检查代码，或先导入村庄文件（或与本文件一起导入）",
                    "village code {c} is not in the directory: check the code, or import the villages file "
                    "first (or together with this file)",
                    c=raw,
                )
            )
        codes = self._village_names.get(name_key(raw), [])
        if len(codes) == 1:
            return Resolved(codes[0])
        if not codes:
            return Resolved(
                problem=t(
                    "村名“{name}”不在名录中：请填写12位村代码或名录中的村名，或先导入村庄文件（或与本文件一起导入）",
                    "no village is called '{name}' in the directory: write the 12-digit village code or a "
                    "village name from the directory, or import the villages file first (or together with "
                    "this file)",
                    name=_shown(raw),
                )
            )
        candidates = [t("{c}（{p}）", "{c} ({p})", c=c, p=self._place(c)) for c in codes]
        return Resolved(
            problem=t(
                "村名“{name}”有 {n} 个：{candidates}，请填写村代码（或写成“乡镇+村名”，如“{example}”）",
                "{n} villages are called '{name}': {candidates}; write the village code (or the township "
                "and the name, like '{example}')",
                name=_shown(raw),
                n=len(codes),
                candidates=_listed(candidates),
                example=self._area_label(codes[0]),
            )
        )

    def area(self, raw: str) -> Resolved:
        """A contact's area: a 6-, 9- or 12-digit code with villages under it, or a unique village,
        township or county name (giving its 12-, 9- or 6-digit code)."""
        if raw.isdigit():
            if raw in self._prefixes:
                return Resolved(raw)
            return Resolved(
                problem=t(
                    "负责区域 {a} 下没有任何村庄：请检查代码，或先导入村庄文件（或与本文件一起导入）",
                    "no village lies in area {a}: check the code, or import the villages file first (or "
                    "together with this file)",
                    a=raw,
                )
            )
        codes = self._area_names.get(name_key(raw), [])
        if len(codes) == 1:
            return Resolved(codes[0])
        if not codes:
            return Resolved(
                problem=t(
                    "负责区域“{name}”不在名录中：请填写名录中的村名、乡镇名或县名，或6/9/12位区划代码",
                    "no village, township or county is called '{name}' in the directory: write a name "
                    "from the directory or a 6/9/12-digit area code",
                    name=_shown(raw),
                )
            )
        candidates = [t("{c}（{p}）", "{c} ({p})", c=c, p=self._area_label(c)) for c in codes]
        return Resolved(
            problem=t(
                "负责区域“{name}”有 {n} 个：{candidates}，请填写区划代码",
                "{n} areas are called '{name}': {candidates}; write the area code",
                name=_shown(raw),
                n=len(codes),
                candidates=_listed(candidates),
            )
        )

    def cadre(self, raw: str, village: str) -> Resolved:
        """A resident's cadre: a contact id, or a contact's name if only one has it.

        Namesakes are told apart by the resident's `village`: of two 李建国, the one covering it is meant.
        """
        if raw in self._contact_areas:
            return Resolved(raw)
        ids = self._contact_names.get(name_key(raw), [])
        if len(ids) > 1:
            covering = [i for i in ids if any(village.startswith(a) for a in self._contact_areas[i])]
            if len(covering) == 1:
                return Resolved(covering[0])
            ids = covering or ids  # the namesakes who cover the village are the ones to choose from
        if len(ids) == 1:
            return Resolved(ids[0])
        if not ids:
            return Resolved(
                problem=t(
                    "包联干部“{name}”不在联系人名录中，此行已导入但未设包联干部：请填写联系人编号或姓名，"
                    "或先导入联系人文件（或与本文件一起导入）",
                    "no contact has the id or name '{name}', so the row was imported without a cadre: write "
                    "a contact's id or name, or import the contacts file first (or together with this file)",
                    name=_shown(raw),
                )
            )
        candidates = [
            t(
                "{c}（{p}）",
                "{c} ({p})",
                c=i,
                p=t("、", ", ").join(self._area_label(a) for a in self._contact_areas[i][:2]),
            )
            if self._contact_areas[i]
            else i
            for i in ids
        ]
        return Resolved(
            problem=t(
                "包联干部“{name}”有 {n} 人同名：{candidates}，此行已导入但未设包联干部：请填写联系人编号",
                "{n} contacts are called '{name}': {candidates}; the row was imported without a cadre: write "
                "the contact's id",
                name=_shown(raw),
                n=len(ids),
                candidates=_listed(candidates),
            )
        )
