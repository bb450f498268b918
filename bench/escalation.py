"""Benchmark: an escalation sweep over a million open must-reach tasks.

Registers N must-reach residents (2,000 villages, one cadre per 100 residents) in the reach ledger of
one alert, then fires the ladder's first two steps (every cadre; every village head) and measures
each sweep against a baseline measured in the same run: a bare SSCAN + HMGET pass over the same open
set, which is the least any sweep must read. Also reports the sweep's peak Python memory (tracemalloc)
at N and at N/10, to show it grows with contacts and villages, not with residents.

    .venv/bin/python bench/escalation.py [--residents 1000000] [--redis URL]

Run by bench/run.py as part of `make bench`; alone, it starts its own private Redis unless given --redis.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from redis_target import bench_settings, drop_namespace, redis_server

from warning.broadcast import Broadcaster
from warning.config import EscalationSettings, EscalationStep
from warning.directory.store import Directory
from warning.model import Alert, AlertState, Contact, Level, Role, Village
from warning.progress import ProgressBar
from warning.store import Store, open_store

VILLAGES = 2000
PER_CADRE = 100


@dataclass(frozen=True)
class EscalationResult:
    residents: int
    baseline_s: float
    step0_s: float
    step0_contacts: int
    step0_peak_mb: float
    step1_s: float
    step1_contacts: int
    step1_peak_mb: float


async def populate(store: Store, service: Broadcaster, alert: Alert, residents: int) -> None:
    directory = Directory(store)
    codes = [f"331099{100 + v // 100:03d}{200 + v % 100:03d}" for v in range(VILLAGES)]
    await directory.upsert([Village(c, f"村{i}", f"镇{c[6:9]}", "海屿县") for i, c in enumerate(codes)])
    heads = [
        Contact(f"H{i}", f"村主任{i}", Role.VILLAGE_HEAD, "+8617400000000", (c,)) for i, c in enumerate(codes)
    ]
    cadres = [
        Contact(
            f"K{i}",
            f"村干部{i}",
            Role.CADRE,
            "+8617400000001",
            (codes[i * PER_CADRE * VILLAGES // residents % VILLAGES],),
        )
        for i in range(residents // PER_CADRE)
    ]
    for start in range(0, len(cadres), 1000):
        await directory.upsert(cadres[start : start + 1000])
    await directory.upsert(heads)
    await service.alerts.save(alert)
    bar = ProgressBar(f"escalation: register {residents:,} must-reach residents")
    per_village = residents // VILLAGES
    for v, code in enumerate(codes):
        members = [
            (f"R{v * per_village + i}", f"K{(v * per_village + i) // PER_CADRE}") for i in range(per_village)
        ]
        await service.reach.register(alert.id, "vulnerable", code, True, members)
        if v % 50 == 0 or v == VILLAGES - 1:
            bar.update(v + 1, VILLAGES)
    bar.close()


async def baseline(service: Broadcaster, alert: Alert) -> float:
    start = time.perf_counter()
    n = 0
    async for entries in service.reach.open_residents(alert.id):
        n += len(entries)
    return time.perf_counter() - start


async def sweep(service: Broadcaster, clock: list[float], at: float) -> tuple[float, int, int]:
    clock[0] = at
    tracemalloc.start()
    start = time.perf_counter()
    fired = await service.escalation.sweep()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, len(fired), peak


async def run(url: str, residents: int) -> EscalationResult:
    """Register `residents` open tasks, then time the baseline and the ladder's first two sweeps."""
    base = bench_settings(url, "escalation")
    settings = replace(
        base,
        escalation=EscalationSettings(
            steps=(EscalationStep(900, "cadre", ("sms",)), EscalationStep(1800, "village_head", ("sms",)))
        ),
    )
    async with open_store(settings.redis, settings.data.dir) as store:
        try:
            service = Broadcaster(store, settings)
            clock = [1_000_000.0]
            service.reach.clock = lambda: clock[0]
            now = datetime.now(UTC)
            alert = Alert(
                id=f"WBENCH-{uuid.uuid4().hex[:6]}",
                sender="bench",
                sent=now,
                event="台风",
                level=Level.RED,
                areas=("331099",),
                expires=now + timedelta(hours=6),
                state=AlertState.ISSUED,
            )
            await populate(store, service, alert, residents)
            await service.reach.milestone(alert.id, "issued")
            await service.escalation.schedule(alert)
            bare = await baseline(service, alert)
            step0, fired0, peak0 = await sweep(service, clock, clock[0] + 900)
            step1, fired1, peak1 = await sweep(service, clock, clock[0] + 900)
            return EscalationResult(
                residents=residents,
                baseline_s=bare,
                step0_s=step0,
                step0_contacts=fired0,
                step0_peak_mb=peak0 / 1e6,
                step1_s=step1,
                step1_contacts=fired1,
                step1_peak_mb=peak1 / 1e6,
            )
        finally:
            await drop_namespace(store.redis, settings.redis.namespace)


def describe(small: EscalationResult, large: EscalationResult) -> list[str]:
    """Lines for the log: each size's sweeps against its baseline scan, then how they scale."""
    lines = [
        f"{r.residents:,} open tasks: baseline scan {r.baseline_s:.2f} s; "
        f"step 0 (cadres) {r.step0_s:.2f} s = {r.step0_s / r.baseline_s:.1f}x baseline, "
        f"{r.step0_contacts:,} contacts, peak {r.step0_peak_mb:.1f} MB; "
        f"step 1 (village heads) {r.step1_s:.2f} s = {r.step1_s / r.baseline_s:.1f}x, "
        f"{r.step1_contacts:,} contacts, peak {r.step1_peak_mb:.1f} MB"
        for r in (small, large)
    ]
    lines.append(
        f"{large.residents // small.residents}x the tasks: step 0 took {large.step0_s / small.step0_s:.1f}x "
        f"the time, peak memory {large.step0_peak_mb / small.step0_peak_mb:.1f}x"
    )
    return lines


async def measure(url: str, residents: int) -> tuple[EscalationResult, EscalationResult]:
    """The sweep at residents/10 and at residents (the smaller one first, to show how it scales)."""
    return await run(url, max(residents // 10, VILLAGES)), await run(url, residents)


async def _main(url: str, residents: int) -> None:
    async with redis_server(url) as (server, _):
        small, large = await measure(server, residents)
    for line in describe(small, large):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--redis", default="", help="Redis URL (default: a private embedded server)")
    args = parser.parse_args()
    asyncio.run(_main(args.redis, args.residents))


if __name__ == "__main__":
    main()
