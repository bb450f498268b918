"""Benchmark: reading never slows sending (issue 10 item 5).

Measured: the fan-out of a red alert to a whole synthetic county (`Broadcaster.fan_out`: issue → every
delivery queued) inside the served app — the `warning serve` application on a loopback port, its
workers off so the deliveries stay queued — while READERS clients read `GET /api/v1/alerts/{id}/reach`
of that alert over real HTTP, each again as soon as it has its answer (a 503 is retried after its
Retry-After). Baseline, in the same run on the same server: the same fan-out with nobody reading.
Runs alternate (alone, loaded, loaded, alone, …), the medians of `runs` of each are compared.

The readers are a separate process (a bare asyncio-streams HTTP/1.1 client, like the callback
benchmark's), so the measured process spends its CPU serving and fanning out only:

    python bench/reach_load.py HOST PORT PATH TOKEN READERS
reads until a line arrives on stdin, then prints {"seconds", "client_cpu", "statuses", "p50_ms",
"p99_ms", "requests"} on stdout. It prints `ready` once every reader has had an answer.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
READERS = 200
RUNS = 3
TARGET_RATIO = 1.2


# -- the readers' process -------------------------------------------------------------------------------


async def _answer(reader: asyncio.StreamReader) -> tuple[int, float]:
    """Read one response; (status, Retry-After seconds or 0)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, retry = 0, False, 0.0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"retry-after":
            retry = float(value.strip() or b"1")
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, retry


async def read_until_told(host: str, port: int, path: str, token: str, readers: int) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    stop = asyncio.Event()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    answered: set[int] = set()
    ready = asyncio.Event()

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop.is_set():
                sent = time.perf_counter()
                writer.write(request)
                status, retry = await _answer(reader)
                latencies.append(time.perf_counter() - sent)
                statuses[status] += 1
                answered.add(index)
                if len(answered) == readers:
                    ready.set()
                if status == 503:
                    await asyncio.sleep(min(retry or 1.0, 1.0))
        finally:
            writer.close()

    async def told() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stop.set()

    async def announce() -> None:
        await ready.wait()
        print("ready", flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    tasks = [asyncio.create_task(one(i)) for i in range(readers)]
    announcer = asyncio.create_task(announce())
    await told()
    await asyncio.gather(*tasks)
    announcer.cancel()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ordered = sorted(latencies) or [0.0]
    return {
        "seconds": seconds,
        "client_cpu": cpu,
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


# -- the benchmark -------------------------------------------------------------------------------------


@dataclass
class Run:
    mode: str  # "alone" or "readers"
    fan_out_s: float
    deliveries: int
    commands: int  # Redis commands the server processed during the fan-out
    server_cpu: float  # CPU seconds of the served process (fan-out and readers' answers) meanwhile
    readers: dict[str, Any] = field(default_factory=dict)  # the readers' report (loaded runs)


@dataclass(frozen=True)
class ReachLoadResult:
    residents: int
    villages: int
    readers: int
    import_s: float
    runs: tuple[Run, ...]
    read_pool_size: int
    read_cache_ttl: float

    def of(self, mode: str) -> list[Run]:
        return [r for r in self.runs if r.mode == mode]

    @property
    def alone_s(self) -> float:
        return statistics.median(r.fan_out_s for r in self.of("alone"))

    @property
    def loaded_s(self) -> float:
        return statistics.median(r.fan_out_s for r in self.of("readers"))

    @property
    def ratio(self) -> float:
        return self.loaded_s / self.alone_s

    @property
    def statuses(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for run in self.of("readers"):
            total.update(run.readers["statuses"])
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "reach",
            "residents": self.residents,
            "villages": self.villages,
            "readers": self.readers,
            "read_pool_size": self.read_pool_size,
            "read_cache_ttl": self.read_cache_ttl,
            "fan_out_alone_s": [round(r.fan_out_s, 3) for r in self.of("alone")],
            "fan_out_with_readers_s": [round(r.fan_out_s, 3) for r in self.of("readers")],
            "median_alone_s": round(self.alone_s, 3),
            "median_with_readers_s": round(self.loaded_s, 3),
            "ratio": round(self.ratio, 3),
            "target_ratio": TARGET_RATIO,
            "reader_statuses": dict(sorted(self.statuses.items())),
            "reader_requests_per_s": [
                round(r.readers["requests"] / r.readers["seconds"], 1) for r in self.of("readers")
            ],
            "reader_p50_ms": [round(r.readers["p50_ms"], 1) for r in self.of("readers")],
            "reader_p99_ms": [round(r.readers["p99_ms"], 1) for r in self.of("readers")],
            "redis_commands_alone": [r.commands for r in self.of("alone")],
            "redis_commands_with_readers": [r.commands for r in self.of("readers")],
            "server_cpu_alone_s": [round(r.server_cpu, 3) for r in self.of("alone")],
            "server_cpu_with_readers_s": [round(r.server_cpu, 3) for r in self.of("readers")],
        }


async def _commands(redis: Any) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def _drop_alert(redis: Any, prefix: str, alert_id: str) -> None:
    """Delete one alert's keys and the (unconsumed) delivery queues, so runs do not pile up memory."""
    batch = [k async for k in redis.scan_iter(match=f"{prefix}:*{alert_id}*", count=10_000)]
    batch += [k async for k in redis.scan_iter(match=f"{prefix}:*", count=10_000, _type="stream")]
    for i in range(0, len(batch), 1000):
        await redis.unlink(*batch[i : i + 1000])


async def _start_readers(port: int, path: str, token: str, readers: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        "127.0.0.1",
        str(port),
        path,
        token,
        str(readers),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    if line.strip() != b"ready":
        process.kill()
        await process.wait()
        raise RuntimeError(f"the reach readers did not start: {line!r}")
    return process


async def _stop_readers(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"stop\n")
    await process.stdin.drain()
    try:
        out = await asyncio.wait_for(process.stdout.read(), timeout=60)
    except TimeoutError:
        process.kill()
        raise RuntimeError("the reach readers did not stop in time") from None
    finally:
        await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the reach readers failed (exit {process.returncode})")
    report: dict[str, Any] = json.loads(out)
    return report


async def run(url: str, residents: int, readers: int = READERS, runs: int = RUNS) -> ReachLoadResult:
    """Serve the app on loopback over `url`, import a county of `residents`, then fan out 2 × `runs` times,
    alternately alone and under `readers`; keys are dropped after."""
    from aiohttp import web
    from county import import_county
    from redis.asyncio import Redis
    from redis_target import bench_settings, drop_namespace, settle

    from warning.audiences import DEFAULT_AUDIENCES
    from warning.broadcast import AlertRequest
    from warning.config import MqttSettings
    from warning.model import Level
    from warning.progress import ProgressBar
    from warning.sample.generate import COUNTY_CODE
    from warning.users import Users
    from warning.web.app import BROADCASTER, STORE, build_app, listen

    base = bench_settings(url, "reach")
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    settings = replace(
        base,
        server=replace(base.server, host="127.0.0.1", port=port),
        mqtt=MqttSettings(embedded_port=0, topic_prefix=base.redis.namespace),
    )
    app = build_app(settings, channels=[])  # no workers: the fan-out is measured up to "all queued"
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    store = app[STORE]
    results: list[Run] = []
    try:
        import_s = await import_county(store, residents, label="reach")
        service = app[BROADCASTER]
        villages = len(await service.directory.village_codes([COUNTY_CODE]))
        token = await Users(store.redis, store.keys).add("bench", "viewer")
        modes = [
            m for i in range(runs) for m in (("alone", "readers") if i % 2 == 0 else ("readers", "alone"))
        ]
        for index, mode in enumerate(modes, start=1):
            alert = await service.prepare(
                AlertRequest(
                    event="台风",
                    level=Level.RED,
                    areas=(COUNTY_CODE,),
                    headline="超强台风将于今夜登陆，请立即转移",
                    instruction="沿海及低洼地区居民请立即撤离到安置点。",
                    expires=datetime.now(UTC) + timedelta(hours=6),
                    audiences=tuple(DEFAULT_AUDIENCES),
                ),
                actor="bench",
            )
            await settle(store.redis)
            process = None
            if mode == "readers":
                path = f"/api/v1/alerts/{alert.id}/reach"
                process = await _start_readers(port, path, token, readers)
            bar = ProgressBar(f"reach: fan-out {index}/{len(modes)} ({mode})")
            before = await _commands(store.redis)
            start, cpu = time.perf_counter(), time.process_time()
            report = await service.fan_out(alert, progress=bar.update)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            commands = await _commands(store.redis) - before
            bar.close()
            readers_report = await _stop_readers(process) if process is not None else {}
            if report.stopped_early:
                raise RuntimeError("the benchmark's alert stopped fanning out early")
            results.append(Run(mode, seconds, sum(report.queued.values()), commands, cpu, readers_report))
            await _drop_alert(store.redis, store.keys.prefix, alert.id)
        return ReachLoadResult(
            residents=residents,
            villages=villages,
            readers=readers,
            import_s=import_s,
            runs=tuple(results),
            read_pool_size=settings.redis.read_pool_size,
            read_cache_ttl=settings.server.read_cache_ttl,
        )
    finally:
        await runner.cleanup()  # first: the service writes its last keys (heartbeats …) as it stops
        redis = Redis.from_url(url, decode_responses=True)
        try:
            await drop_namespace(redis, settings.redis.namespace)
        finally:
            await redis.aclose()


def describe(r: ReachLoadResult) -> list[str]:
    """Lines for the log: what was measured, then the figures, then the JSON."""
    statuses = ", ".join(f"{code} x {n:,}" for code, n in sorted(r.statuses.items()))
    deliveries = r.runs[0].deliveries if r.runs else 0
    lines = [
        f"county: {r.residents:,} residents in {r.villages:,} villages, imported in {r.import_s:.1f} s (setup);"
        f" {deliveries:,} deliveries per fan-out; readers' pool {r.read_pool_size} connections,"
        f" shared answers for {r.read_cache_ttl} s",
    ]
    for run in r.runs:
        line = (
            f"  {run.mode:<7} fan-out {run.fan_out_s:6.2f} s (server cpu {run.server_cpu:.2f} s),"
            f" {run.commands:,} redis commands"
        )
        if run.readers:
            rd = run.readers
            line += (
                f"; readers: {rd['requests']:,} reads ({rd['requests'] / rd['seconds']:,.0f}/s),"
                f" p50 {rd['p50_ms']:.0f} ms, p99 {rd['p99_ms']:.0f} ms, statuses {rd['statuses']},"
                f" client cpu {rd['client_cpu']:.1f} s"
            )
        lines.append(line)
    lines += [
        f"median fan-out alone {r.alone_s:.2f} s, with {r.readers} readers {r.loaded_s:.2f} s:"
        f" ratio {r.ratio:.2f} (target <= {TARGET_RATIO})",
        f"reader statuses over the loaded runs: {statuses} (target: no 500)",
        "json: " + json.dumps(r.to_json(), ensure_ascii=False),
    ]
    return lines


if __name__ == "__main__":
    host, port, path, token, readers = sys.argv[1:6]
    print(json.dumps(asyncio.run(read_until_told(host, int(port), path, token, int(readers)))), flush=True)
