"""The directory in real Redis: bulk import, re-import by id, index upkeep, bounded-memory streaming."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest

from warning.directory.importer import import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory
from warning.model import VULNERABLE_TAGS, Contact, Resident, Role, Village
from warning.sample.generate import write_county
from warning.store import Store


async def _import(directory: Directory, paths: list[Path]) -> tuple[list[RowProblem], int, int, int]:
    problems: list[RowProblem] = []
    report = await import_files(directory, paths, on_problem=problems.append)
    created = sum(t.created for t in report.tables)
    updated = sum(t.updated for t in report.tables)
    unchanged = sum(t.unchanged for t in report.tables)
    return problems, created, updated, unchanged


@pytest.fixture(scope="module")
def county_100k(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A generated county of 100,000 residents (CSV files), shared by the tests of this module."""
    return write_county(tmp_path_factory.mktemp("county"), residents=100_000, seed=7)


@pytest.mark.slow
async def test_import_100k_then_reimport_never_duplicates(store: Store, county_100k: list[Path]) -> None:
    """100k residents import cleanly; importing the same files again creates and changes nothing."""
    directory = Directory(store)
    problems, created, _, _ = await _import(directory, county_100k)
    assert problems == []
    totals = await directory.totals()
    assert totals["residents"] == 100_000
    assert created == sum(totals.values())

    problems, created, updated, unchanged = await _import(directory, county_100k)
    assert (problems, created, updated) == ([], 0, 0)
    assert unchanged == sum(totals.values())
    assert await directory.totals() == totals

    stats = await directory.stats()
    assert stats.residents == 100_000
    assert sum(v.vulnerable for v in stats.villages) == stats.vulnerable > 0
    assert stats.unknown_cadres == {}

    # Streaming by village and by tag: exact sets, bounded memory.
    codes = await directory.village_codes()
    township = codes[0][:9]
    expected_ids: set[str] = set()
    expected_vulnerable: set[str] = set()
    with county_100k[2].open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["village"].startswith(township):
                expected_ids.add(row["id"])
                if VULNERABLE_TAGS & set(filter(None, row["tags"].split(";"))):
                    expected_vulnerable.add(row["id"])
    streamed = [r.id async for batch in directory.stream_residents([township]) for r in batch]
    assert len(streamed) == len(set(streamed)) and set(streamed) == expected_ids
    vulnerable = [
        r async for batch in directory.stream_residents([township], any_tags=VULNERABLE_TAGS) for r in batch
    ]
    assert {r.id for r in vulnerable} == expected_vulnerable
    assert all(r.vulnerable and r.village.startswith(township) for r in vulnerable)


async def _peak_while_streaming(directory: Directory, areas: list[str]) -> tuple[int, int]:
    count = 0
    tracemalloc.start()
    try:
        async for batch in directory.stream_residents(areas, batch_size=500):
            assert len(batch) <= 500
            count += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, peak


@pytest.mark.slow
async def test_streaming_memory_does_not_grow_with_county_size(store: Store, county_100k: list[Path]) -> None:
    """Streaming the whole 100k county peaks at about the same memory as streaming a tenth of it."""
    directory = Directory(store)
    await _import(directory, county_100k)
    codes = await directory.village_codes()
    small, small_peak = await _peak_while_streaming(directory, codes[: len(codes) // 10])
    full, full_peak = await _peak_while_streaming(directory, [codes[0][:6]])
    assert full == 100_000 and small < 20_000
    # Holding 100k residents would take tens of MB; a stream holds one batch and one village's ids.
    assert full_peak < 2 * small_peak + 1_000_000, (small_peak, full_peak)
    assert full_peak < 8_000_000


async def test_reimport_moves_indexes_with_the_record(store: Store) -> None:
    """Changing a resident's village, tags or cadre moves them between index sets; nothing is left behind."""
    directory = Directory(store)
    villages = [
        Village("331099101201", "东溪村", "沙头镇", "海屿县"),
        Village("331099102201", "石桥村", "海门镇", "海屿县"),
    ]
    await directory.upsert(villages)
    await directory.upsert(
        [
            Contact("C1", "周网格", Role.CADRE, areas=("331099101201",)),
            Contact("C2", "吴网格", Role.CADRE, areas=("331099102201",)),
        ]
    )
    assert (
        await directory.upsert(
            [Resident("R1", "王秀英", "331099101201", tags=frozenset({"elderly"}), cadre="C1")]
        )
        == "c"
    )
    assert (
        await directory.upsert(
            [Resident("R1", "王秀英", "331099102201", tags=frozenset({"fisherman"}), cadre="C2")]
        )
        == "u"
    )

    old = [r async for b in directory.stream_residents(["331099101"]) for r in b]
    new = [r async for b in directory.stream_residents(["331099102"]) for r in b]
    assert old == [] and [r.id for r in new] == ["R1"]
    assert [
        r async for b in directory.stream_residents([""], any_tags=frozenset({"elderly"})) for r in b
    ] == []
    assert [r async for b in directory.residents_of_cadre("C1") for r in b] == []
    assert [r.id async for b in directory.residents_of_cadre("C2") for r in b] == ["R1"]
    stats = await directory.stats()
    assert {v.code: v.vulnerable for v in stats.villages} == {"331099101201": 0, "331099102201": 0}


async def test_contacts_found_from_village_up(store: Store) -> None:
    """contacts_for finds the village's own contacts first, then the township's and the county's."""
    directory = Directory(store)
    await directory.upsert([Village("331099101201", "东溪村", "沙头镇", "海屿县")])
    await directory.upsert(
        [
            Contact("T1", "镇值班", Role.TOWNSHIP_DUTY, areas=("331099101",)),
            Contact("K1", "县值班", Role.COUNTY_DUTY, areas=("331099",)),
            Contact("C1", "网格员", Role.CADRE, areas=("331099101201",)),
        ]
    )
    assert [c.id for c in await directory.contacts_for("331099101201", Role.CADRE)] == ["C1"]
    assert [c.id for c in await directory.contacts_for("331099101201", Role.TOWNSHIP_DUTY)] == ["T1"]
    assert [c.id for c in await directory.contacts_for("331099101201", Role.COUNTY_DUTY)] == ["K1"]
    assert await directory.contacts_for("331099101201", Role.RESCUE_TEAM) == []


async def test_vulnerable_without_cadre_is_counted(store: Store) -> None:
    """A must-reach resident with no cadre shows in the stats, so the bureau can fix it before a typhoon."""
    directory = Directory(store)
    await directory.upsert([Village("331099101201", "东溪村", "沙头镇", "海屿县")])
    await directory.upsert(
        [
            Resident("R1", "王秀英", "331099101201", tags=frozenset({"lives_alone"})),
            Resident("R2", "李四", "331099101201", cadre="GHOST"),
        ]
    )
    stats = await directory.stats()
    assert stats.unassigned == 1
    assert stats.unknown_cadres == {"GHOST": 1}
