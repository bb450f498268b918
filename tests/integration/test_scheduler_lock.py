"""The scheduler's Redis lock: exactly one process runs a job at a time, even when a run outlasts the
lock's time to live (the lock is extended while the job runs) — and a dead holder frees it."""

from __future__ import annotations

import asyncio

from warning.scheduler import locked
from warning.store import Store


async def test_a_long_run_keeps_the_lock_and_others_skip(store: Store) -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def slow() -> None:
        runs.append("slow")
        await release.wait()

    async def other() -> None:
        runs.append("other")

    first = locked(store, "job", 0.3, slow)
    second = locked(store, "job", 0.3, other)
    running = asyncio.create_task(first())
    await asyncio.sleep(0.05)
    for _ in range(6):  # 1.2 s: four times the lock's time to live
        await second()
        await asyncio.sleep(0.2)
    assert runs == ["slow"], "another process ran while the first still held the lock"
    release.set()
    await running
    await second()
    assert runs == ["slow", "other"], "the lock was released when the run ended"


async def test_a_dead_holder_frees_the_lock_within_its_ttl(store: Store) -> None:
    key = store.keys.key("lock", "job")
    await store.redis.set(key, "a process that died", px=300)
    runs: list[str] = []

    async def job() -> None:
        runs.append("ran")

    await locked(store, "job", 0.3, job)()
    assert runs == []
    await asyncio.sleep(0.4)
    await locked(store, "job", 0.3, job)()
    assert runs == ["ran"]
