"""Resolving a row's village, areas and cadre by code, id or unique name (DESIGN §7, issue 9 item 8)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from warning.directory.refs import References
from warning.directory.rows import RowProblem, parse_row
from warning.i18n import set_language
from warning.model import Contact, Kind, Resident, Role, Speaker, Village

QINGSHI = "331099101001"
XINCUN_CG = "331099101002"  # 城关镇新村
XINCUN_HS = "331099102003"  # 湖山乡新村
DONGXI = "331099102004"

VILLAGES = [
    Village(QINGSHI, "青石村", "城关镇", "海屿县"),
    Village(XINCUN_CG, "新村", "城关镇", "海屿县"),
    Village(XINCUN_HS, "新村", "湖山乡", "海屿县"),
    Village(DONGXI, "东溪村", "湖山乡", "海屿县"),
]
CONTACTS = [
    Contact("C1", "李建国", Role.CADRE, areas=(QINGSHI,)),
    Contact("C2", "王芳", Role.CADRE, areas=(XINCUN_CG,)),
    Contact("C3", "王芳", Role.CADRE, areas=(XINCUN_HS, DONGXI)),
    Contact("C4", "张伟", Role.CADRE, areas=(QINGSHI,)),
    Contact("C5", "张伟", Role.TOWNSHIP_DUTY, areas=("331099101",)),
]


@pytest.fixture(autouse=True)
def _chinese() -> Iterator[None]:
    set_language("zh-CN")
    yield
    set_language("zh-CN")


@pytest.fixture
def refs() -> References:
    references = References(VILLAGES)
    references.add_contacts(CONTACTS)
    return references


def resident(refs: References, **fields: str) -> tuple[Resident | None, list[RowProblem]]:
    record, problems = parse_row(
        Kind.RESIDENTS, "居民.csv", 5, {"id": "R1", "name": "王秀英", **fields}, refs=refs
    )
    assert record is None or isinstance(record, Resident)
    return record, problems


@pytest.mark.parametrize(
    "written",
    ["青石村", " 青石村 ", "城关镇青石村", "城关镇/青石村", "城关镇 青石村", "海屿县城关镇青石村", QINGSHI],
)
def test_village_by_unique_name_code_or_township_and_name(refs: References, written: str) -> None:
    """A resident's village written by its code, its unique name or township+name is stored as the code."""
    record, problems = resident(refs, village=written.strip())
    assert problems == []
    assert record is not None and record.village == QINGSHI


def test_ambiguous_village_name_is_an_error_listing_the_codes(refs: References) -> None:
    """A village name two villages share keeps the row out and lists both codes with their townships."""
    record, problems = resident(refs, village="新村")
    assert record is None
    assert [(p.severity, p.column) for p in problems] == [("error", "village")]
    assert str(problems[0]) == (
        f"居民.csv:5: 村名“新村”有 2 个：{XINCUN_CG}（城关镇）、{XINCUN_HS}（湖山乡），"
        "请填写村代码（或写成“乡镇+村名”，如“城关镇新村”）"
    )
    qualified, problems = resident(refs, village="湖山乡新村")
    assert problems == [] and qualified is not None and qualified.village == XINCUN_HS


@pytest.mark.parametrize(
    ("written", "needle"),
    [
        ("白沙村", "村名“白沙村”不在名录中：请填写12位村代码或名录中的村名"),
        ("331099101999", "村代码 331099101999 不在名录中"),
    ],
)
def test_unknown_village_is_an_error_saying_what_to_write(
    refs: References, written: str, needle: str
) -> None:
    """A village that is not in the directory, by name or by code, is an error naming the value."""
    record, problems = resident(refs, village=written)
    assert record is None
    assert [p.severity for p in problems] == ["error"] and needle in problems[0].message


def test_malformed_code_is_still_a_format_error(refs: References) -> None:
    """An 11-digit code is reported as a bad code, not looked up as a name."""
    _, problems = resident(refs, village="33109910100")
    assert [p.message for p in problems] == ["村代码应为12位数字，实际为 “33109910100”"]


@pytest.mark.parametrize(("written", "cadre"), [("C1", "C1"), ("李建国", "C1"), ("李 建国", "C1")])
def test_cadre_by_id_or_unique_name(refs: References, written: str, cadre: str) -> None:
    """A cadre written by id or by a name only one contact has is stored as that contact's id."""
    record, problems = resident(refs, village="青石村", cadre=written)
    assert problems == []
    assert record is not None and record.cadre == cadre


def test_namesakes_are_told_apart_by_the_residents_village(refs: References) -> None:
    """Of two contacts named 王芳, the one covering the resident's village is the cadre."""
    record, problems = resident(refs, village="湖山乡新村", cadre="王芳")
    assert problems == [] and record is not None and record.cadre == "C3"


def test_ambiguous_cadre_is_a_warning_and_the_resident_is_kept(refs: References) -> None:
    """Two 张伟 covering the village: the resident is imported without a cadre, the warning lists both ids."""
    record, problems = resident(refs, village=QINGSHI, cadre="张伟")
    assert record is not None and (record.village, record.cadre) == (QINGSHI, "")
    assert [(p.severity, p.column) for p in problems] == [("warning", "cadre")]
    assert "包联干部“张伟”有 2 人同名：C4（城关镇青石村）、C5（城关镇）" in problems[0].message
    assert "请填写联系人编号" in problems[0].message


def test_unknown_cadre_is_a_warning_and_the_resident_is_kept(refs: References) -> None:
    """A cadre name no contact has leaves the resident imported, unassigned, with a file:line warning."""
    record, problems = resident(refs, village=QINGSHI, cadre="赵六", tags="老人")
    assert record is not None and record.cadre == "" and record.vulnerable
    assert [(p.severity, p.column) for p in problems] == [("warning", "cadre")]
    assert str(problems[0]).startswith("居民.csv:5: 包联干部“赵六”不在联系人名录中，此行已导入但未设包联干部")


def test_bad_village_and_cadre_report_only_the_village(refs: References) -> None:
    """When the village fails the row, the cadre is not looked up: one problem, the one to fix."""
    _, problems = resident(refs, village="白沙村", cadre="赵六")
    assert [p.column for p in problems] == ["village"]


def test_contact_areas_by_village_township_or_county_name(refs: References) -> None:
    """A contact's areas may be names: a village gives its 12-digit code, a township 9, a county 6."""
    record, problems = parse_row(
        Kind.CONTACTS,
        "联系人.xlsx[联系人]",
        3,
        {"id": "C9", "name": "周网格", "role": "村干部", "villages": "青石村、湖山乡；海屿县;331099101002"},
        refs=refs,
    )
    assert problems == []
    assert isinstance(record, Contact)
    assert record.areas == (QINGSHI, "331099102", "331099", XINCUN_CG)


def test_ambiguous_or_unknown_area_keeps_the_contact_out(refs: References) -> None:
    """An area name two villages share, or no village has, is an error naming the candidates or value."""
    record, problems = parse_row(
        Kind.CONTACTS,
        "c.csv",
        4,
        {"id": "C9", "name": "周网格", "role": "cadre", "villages": "新村;白沙"},
        refs=refs,
    )
    assert record is None
    messages = [p.message for p in problems]
    assert messages[0].startswith(
        f"负责区域“新村”有 2 个：{XINCUN_CG}（城关镇新村）、{XINCUN_HS}（湖山乡新村）"
    )
    assert messages[1].startswith("负责区域“白沙”不在名录中")


def test_speaker_village_by_name(refs: References) -> None:
    """A loudspeaker's village may be its unique name too."""
    record, problems = parse_row(
        Kind.SPEAKERS, "s.csv", 2, {"device_id": "spk-1", "village": "东溪村"}, refs=refs
    )
    assert problems == [] and record == Speaker("spk-1", DONGXI, "")


def test_english_messages(refs: References) -> None:
    """The ambiguity message reads in English too, still listing the codes."""
    set_language("en")
    _, problems = resident(refs, village="新村")
    assert problems[0].message.startswith(
        f"2 villages are called '新村': {XINCUN_CG} (城关镇), {XINCUN_HS} (湖山乡)"
    )


def test_long_candidate_lists_are_cut() -> None:
    """A name shared by many villages lists five codes and says there are more."""
    refs = References(Village(f"33109910{i:04d}", "新村", f"乡{i}", "县") for i in range(8))
    _, problems = resident(refs, village="新村")
    assert "有 8 个" in problems[0].message and problems[0].message.count("33109910") == 5
    assert " 等" in problems[0].message
