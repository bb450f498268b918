"""Benchmark: an escalation sweep over a million open must-reach tasks.

Registers N must-reach residents (2,000 villages, one cadre per 100 residents) in the reach ledger of
one alert, then fires the ladder's first two steps (every cadre; every village head) and measures
each sweep against a baseline measured in the same run: a bare SSCAN + HMGET pass over the same open
set, which is the least any sweep must read. Also reports the sweep's peak Python memory (tracemalloc)
at N and at N/10, to show it grows with contacts and villages, not with residents.

    .venv/bin/python bench/escalation.py [--residents 1000000] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from warning.broadcast import Broadcaster
from warning.config import EscalationSettings, EscalationStep, RedisSettings, Settings
from warning.directory.store import Directory
from warning.model import Alert, AlertState, Contact, Level, Role, Village
from warning.progress import ProgressBar
from warning.store import Store, open_store

VILLAGES = 2000
PER_CADRE = 100


async def populate(store: Store, service: Broadcaster, alert: Alert, residents: int) -> None:
    directory = Directory(store)
    codes = [f"331099{100 + v // 100:03d}{200 + v % 100:03d}" for v in range(VILLAGES)]
    await directory.upsert([Village(c, f"村{i}", f"镇{c[6:9]}", "海屿县") for i, c in enumerate(codes)])
    heads = [Contact(f"H{i}", f"村主任{i}", Role.VILLAGE_HEAD, "+8617400000000", (c,)) for i, c in enumerate(codes)]
    cadres = [
        Contact(f"K{i}", f"村干部{i}", Role.CADRE, "+8617400000001", (codes[i * PER_CADRE * VILLAGES // residents % VILLAGES],))
        for i in range(residents // PER_CADRE)
    ]
    for start in range(0, len(cadres), 1000):
        await directory.upsert(cadres[start : start + 1000])
    await directory.upsert(heads)
    await service.alerts.save(alert)
    bar = ProgressBar("register")
    per_village = residents // VILLAGES
    for v, code in enumerate(codes):
        members = [(f"R{v * per_village + i}", f"K{(v * per_village + i) // PER_CADRE}") for i in range(per_village)]
        await service.reach.register(alert.id, "vulnerable", code, True, members)
        if v % 50 == 0:
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


async def run(url: str, residents: int) -> dict[str, float]:
    base = Settings()
    settings = replace(
        base,
        redis=RedisSettings(url=url, allow_volatile=True, namespace=f"bench{uuid.uuid4().hex[:6]}"),
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
                id=f"WBENCH-{uuid.uuid4().hex[:6]}", sender="bench", sent=now, event="台风", level=Level.RED,
                areas=("331099",), expires=now + timedelta(hours=6), state=AlertState.ISSUED,
            )
            await populate(store, service, alert, residents)
            await service.reach.milestone(alert.id, "issued")
            await service.escalation.schedule(alert)
            bare = await baseline(service, alert)
            step0, fired0, peak0 = await sweep(service, clock, clock[0] + 900)
            step1, fired1, peak1 = await sweep(service, clock, clock[0] + 900)
            return {
                "residents": residents, "baseline_s": bare, "step0_s": step0, "step0_contacts": fired0,
                "step0_peak_mb": peak0 / 1e6, "step1_s": step1, "step1_contacts": fired1, "step1_peak_mb": peak1 / 1e6,
            }
        finally:
            await store.redis.delete(*[k async for k in store.redis.scan_iter(f"{settings.redis.namespace}:*", count=10000)] or ["-"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    small = asyncio.run(run(args.redis, args.residents // 10))
    large = asyncio.run(run(args.redis, args.residents))
    for result in (small, large):
        print(
            f"{result['residents']:>9,} open tasks: baseline scan {result['baseline_s']:.2f} s; "
            f"step 0 (cadres) {result['step0_s']:.2f} s = {result['step0_s'] / result['baseline_s']:.1f}x baseline, "
            f"{result['step0_contacts']:,} contacts, peak {result['step0_peak_mb']:.1f} MB; "
            f"step 1 (village heads) {result['step1_s']:.2f} s = {result['step1_s'] / result['baseline_s']:.1f}x, "
            f"{result['step1_contacts']:,} contacts, peak {result['step1_peak_mb']:.1f} MB"
        )
    print(
        f"10x the tasks: step 0 took {large['step0_s'] / small['step0_s']:.1f}x the time, "
        f"peak memory {large['step0_peak_mb'] / small['step0_peak_mb']:.1f}x"
    )


if __name__ == "__main__":
    main()
