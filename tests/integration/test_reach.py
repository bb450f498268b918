"""The reach ledger: forward-only evidence per source, idempotent counters, milestones, confirmations."""

from __future__ import annotations

import asyncio

from warning.reach import Confirmation, Reach
from warning.store import Store


async def _ledger(store: Store) -> Reach:
    reach = Reach(store.redis, store.keys)
    await reach.register("A1", "vulnerable", "331099101201", True, [("R1", "C1"), ("R2", "C1")])
    await reach.register("A1", "public", "331099101201", False, [("R3", ""), ("R1", "C1")])
    await reach.registered("A1")
    return reach


async def test_register_counts_once_and_builds_task_lists(store: Store) -> None:
    reach = await _ledger(store)
    assert await reach.register("A1", "vulnerable", "331099101201", True, [("R1", "C1")]) == 0
    counts = await reach.counts("A1")
    assert counts.scope("all") == {"pending": 3, "notified": 0, "acknowledged": 0, "confirmed": 0, "total": 3}
    assert counts.scope("must")["total"] == 2
    assert counts.scope("k:C1")["pending"] == 2
    assert await reach.task_residents("A1", "C1") == ["R1", "R2"]
    assert await reach.cadres("A1") == {"C1": 2}
    assert await reach.open_count("A1") == 2


async def test_a_later_must_reach_audience_upgrades_a_resident(store: Store) -> None:
    reach = Reach(store.redis, store.keys)
    await reach.register("A2", "public", "331099101201", False, [("R9", "C1")])
    await reach.register("A2", "vulnerable", "331099101201", True, [("R9", "C1")])
    entry = await reach.entry("A2", "R9")
    assert entry is not None and entry.must_reach and entry.audience == "public"
    assert (await reach.counts("A2")).scope("must")["pending"] == 1
    assert await reach.task_residents("A2", "C1") == ["R9"]


async def test_evidence_is_forward_only_per_source_and_replays_change_nothing(store: Store) -> None:
    reach = await _ledger(store)
    assert await reach.record("A1", "sms", "D", ["R1"]) == "2"  # delivered → notified
    assert await reach.record("A1", "sms", "S", ["R1"]) == "0"  # a late "sent" never overwrites
    assert await reach.record("A1", "sms", "D", ["R1"]) == "0"  # a replay counts once
    assert await reach.record("A1", "sms", "F", ["R1"]) == "0"  # nor does a late failure
    assert await reach.evidence("A1", "R1") == {"sms": "D"}
    # Out of order: failed first, then delivered (carrier retried): delivered wins.
    assert await reach.record("A1", "sms", "F", ["R2"]) == "1"
    assert await reach.record("A1", "sms", "D", ["R2"]) == "2"
    # Press-1 acknowledges; a later speaker "heard" cannot pull the state back to notified.
    assert await reach.record("A1", "voice", "K", ["R1"]) == "2"
    assert await reach.record("A1", "speaker", "H", ["R1"]) == "1"
    entry = await reach.entry("A1", "R1")
    assert entry is not None and entry.state == "acknowledged"
    counts = await reach.counts("A1")
    assert counts.scope("must") == {
        "pending": 0,
        "notified": 1,
        "acknowledged": 1,
        "confirmed": 0,
        "total": 2,
    }
    assert await reach.record("A1", "sms", "D", ["nobody"]) == "0"


async def test_concurrent_duplicates_count_once(store: Store) -> None:
    reach = await _ledger(store)
    await asyncio.gather(*(reach.record("A1", "wechat", "S", ["R1", "R2", "R3"]) for _ in range(20)))
    assert (await reach.counts("A1")).scope("all")["notified"] == 3


async def test_confirmations_are_kept_and_late_ones_flagged(store: Store) -> None:
    reach = await _ledger(store)
    first = Confirmation("not_home", "C1", 100.0, "门锁着")
    assert await reach.confirm("A1", "R1", first) == "2"
    assert await reach.open_count("A1") == 1
    later = Confirmation("evacuated", "C1", 200.0, "已转移到村委会", late=True)
    assert await reach.confirm("A1", "R1", later) == "1"
    assert (await reach.confirmations("A1", ["R1"]))["R1"].outcome == "evacuated"
    counts = await reach.counts("A1")
    assert counts.outcomes()["evacuated"] == 1 and counts.outcomes()["not_home"] == 0
    assert counts.raw.get("late", 0) == 0  # the first confirmation was in time
    assert await reach.confirm("A1", "R2", Confirmation("reached", "C1", 300.0, late=True)) == "2"
    counts = await reach.counts("A1")
    assert counts.raw["late"] == 1
    assert counts.scope("must")["confirmed"] == 2
    milestones = await reach.milestones("A1")
    assert milestones["must_100"] == 300.0
    assert milestones["v:331099101201:must_100"] == 300.0
    assert milestones["k:C1:must_100"] == 300.0
    assert await reach.confirm("A1", "R404", first) == "x"
    assert [e async for e in reach.open_residents("A1")] == []


async def test_machine_reach_milestone_at_ninety_percent(store: Store) -> None:
    reach = Reach(store.redis, store.keys)
    await reach.register("A3", "public", "331099101201", False, [(f"R{i}", "") for i in range(5)])
    # While the fan-out is still registering, 5 of 5 delivered is not "90 % of the alert".
    await reach.record("A3", "sms", "D", [f"R{i}" for i in range(5)], now=40.0)
    assert "machine_90" not in await reach.milestones("A3")
    await reach.register("A3", "public", "331099101202", False, [(f"R{i}", "") for i in range(5, 10)])
    await reach.registered("A3")
    await reach.record("A3", "sms", "D", [f"R{i}" for i in range(5, 8)], now=50.0)
    assert "machine_90" not in await reach.milestones("A3")
    await reach.record("A3", "sms", "D", ["R8"], now=60.0)
    assert (await reach.milestones("A3"))["machine_90"] == 60.0
