"""Benchmark: issue a red alert to a whole synthetic county (audience `public`) against bare pipelined XADDs.

Measured: `Broadcaster.prepare` + `Broadcaster.fan_out` of one alert (render, save, stream the directory
village by village, register every resident in the reach ledger, queue batches through the enqueue
Lua script). Baseline, in the same run on the same server: the same number of recipients per channel,
as batches of the same size with the same JSON shape, XADDed by a bare pipelined redis-py loop (no Lua,
no directory reads, no ledgers). Memory per delivery is the change in the server's `used_memory`
across the issue, divided by the deliveries queued.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from county import import_county
from redis.asyncio import Redis
from redis_target import bench_settings, drop_namespace, forks, used_memory

from warning.broadcast import AlertRequest, Broadcaster
from warning.model import Level
from warning.progress import ProgressBar
from warning.sample.generate import COUNTY_CODE
from warning.store import open_store

PIPELINE = 50  # XADDs per round trip in the baseline
BASELINE_RUNS = 2


@dataclass(frozen=True)
class FanoutResult:
    residents: int
    villages: int
    batch_size: int
    import_s: float
    prepare_s: float
    fan_out_s: float
    queued: dict[str, int]  # deliveries queued per channel
    no_address: int
    entries: int  # stream entries (batches) the fan-out wrote
    memory_b: int  # used_memory change across the issue
    baseline_s: tuple[float, ...]
    baseline_entries: int
    baseline_memory_b: tuple[int, ...]  # used_memory change of each baseline run
    persistence: str
    forks: int  # AOF rewrites (or RDB saves) the server forked for during the issue

    @property
    def deliveries(self) -> int:
        return sum(self.queued.values())

    @property
    def issue_s(self) -> float:
        return self.prepare_s + self.fan_out_s

    @property
    def rate(self) -> float:
        return self.deliveries / self.issue_s

    @property
    def baseline_rate(self) -> float:
        return self.deliveries / min(self.baseline_s)

    @property
    def bytes_per_delivery(self) -> float:
        return self.memory_b / self.deliveries

    @property
    def baseline_bytes_per_delivery(self) -> float:
        return min(self.baseline_memory_b) / self.deliveries


async def bare_xadd(redis: Redis, stream: str, queued: dict[str, int], batch_size: int) -> tuple[float, int]:
    """XADD `queued[channel]` recipients per channel in batches of `batch_size`; (seconds, entries)."""
    header = {
        "a": "WBASE",
        "v": 1,
        "au": "public",
        "vil": COUNTY_CODE + "101201",
        "t": 1,
        "act": "play",
        "u": 0,
    }
    entries = 0
    start = time.perf_counter()
    for channel, total in queued.items():
        key = f"{stream}:{channel}"
        pipe = redis.pipeline(transaction=False)
        for first in range(0, total, batch_size):
            recipients = [
                [f"r:R{i:07d}", f"+8617400{i:06d}" if channel != "wechat" else f"o{i:027d}", "zh-CN"]
                for i in range(first, min(first + batch_size, total))
            ]
            batch = json.dumps(
                {**header, "c": channel, "r": recipients}, ensure_ascii=False, separators=(",", ":")
            )
            pipe.xadd(key, {"b": batch})
            entries += 1
            if entries % PIPELINE == 0:
                await pipe.execute()
        await pipe.execute()
    return time.perf_counter() - start, entries


async def run(url: str, residents: int) -> FanoutResult:
    """Import a county of `residents`, issue to all of it, then measure the baseline; keys are dropped after."""
    settings = bench_settings(url, "fanout")
    namespace = settings.redis.namespace
    async with open_store(settings.redis, settings.data.dir) as store:
        try:
            import_s = await import_county(store, residents, label="fan-out")
            service = Broadcaster(store, settings)
            villages = len(await service.directory.village_codes([COUNTY_CODE]))
            request = AlertRequest(
                event="台风",
                level=Level.RED,
                areas=(COUNTY_CODE,),
                headline="超强台风将于今夜登陆，请立即转移",
                instruction="沿海及低洼地区居民请立即撤离到安置点。",
                expires=datetime.now(UTC) + timedelta(hours=6),
                audiences=("public",),
            )
            memory_before = await used_memory(store.redis)
            forks_before = await forks(store.redis)
            bar = ProgressBar("fan-out: issue (villages)")
            start = time.perf_counter()
            alert = await service.prepare(request, actor="bench")
            prepared = time.perf_counter()
            report = await service.fan_out(alert, progress=bar.update)
            done = time.perf_counter()
            bar.close()
            forked = await forks(store.redis) - forks_before
            memory_b = await used_memory(store.redis) - memory_before
            entries = 0
            for channel in report.queued:
                entries += await store.redis.xlen(service.deliveries.stream_key(channel, urgent=True))

            batch_size = settings.worker.batch_size
            baseline: list[float] = []
            baseline_memory: list[int] = []
            baseline_entries = 0
            stream = store.keys.key("bare")
            for _ in range(BASELINE_RUNS):
                before = await used_memory(store.redis)
                seconds, baseline_entries = await bare_xadd(store.redis, stream, report.queued, batch_size)
                baseline_memory.append(await used_memory(store.redis) - before)
                baseline.append(seconds)
                await store.redis.delete(*(f"{stream}:{channel}" for channel in report.queued))
            return FanoutResult(
                residents=residents,
                villages=villages,
                batch_size=batch_size,
                import_s=import_s,
                prepare_s=prepared - start,
                fan_out_s=done - prepared,
                queued=dict(report.queued),
                no_address=sum(report.no_address.values()),
                entries=entries,
                memory_b=memory_b,
                baseline_s=tuple(baseline),
                baseline_entries=baseline_entries,
                baseline_memory_b=tuple(baseline_memory),
                persistence=store.persistence,
                forks=forked,
            )
        finally:
            await drop_namespace(store.redis, namespace)


def describe(result: FanoutResult) -> list[str]:
    """Lines for the log: what was measured, then the figures."""
    r = result
    queued = ", ".join(f"{channel} {n:,}" for channel, n in sorted(r.queued.items()))
    return [
        f"county: {r.residents:,} residents in {r.villages:,} villages, imported in {r.import_s:.1f} s "
        f"(setup, not timed; the AOF rewrite it set off was let finish); redis persistence: {r.persistence}",
        f"issue (prepare {r.prepare_s:.2f} s + fan_out {r.fan_out_s:.2f} s) = {r.issue_s:.2f} s for "
        f"{r.deliveries:,} deliveries ({queued}; {r.no_address:,} no_address) in {r.entries:,} stream entries "
        f"-> {r.rate:,.0f} deliveries/s; the server forked {r.forks} time(s) for AOF rewrites meanwhile",
        f"baseline bare pipelined XADD of the same recipients, {r.baseline_entries:,} entries of {r.batch_size}: "
        + ", ".join(f"{s:.2f} s" for s in r.baseline_s)
        + f" (best {r.baseline_rate:,.0f} recipients/s)",
        f"ratio: fan-out runs at {r.rate / r.baseline_rate:.2f}x the baseline's rate "
        f"({r.issue_s / min(r.baseline_s):.1f}x its time)",
        f"projected to 1,000,000 deliveries at this rate: {1e6 / r.rate:.1f} s (target <= 4 s); "
        f"baseline {1e6 / r.baseline_rate:.1f} s",
        f"redis memory: {r.memory_b / 1e6:,.1f} MB for the issue = {r.bytes_per_delivery:.0f} B/delivery "
        f"(target <= 200 B); baseline streams alone "
        + ", ".join(f"{m / r.deliveries:.0f}" for m in r.baseline_memory_b)
        + " B/recipient",
    ]
