"""Start-up of the `warning` command: `--help` and `status ID`, beside bare interpreters in the same run.

Each command is a fresh process, as an operator types it. Runs are interleaved (command, baseline,
command, …) so a noisy neighbour slows both alike; the median of each is reported. The baselines are
`python -c pass` (the interpreter) and `python -c "import redis.asyncio"` (the least any command that
reads Redis must load). The alert read by `status` is a real one, written to the run's namespace.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis
from redis_target import bench_settings, drop_namespace

from warning.alerts import AlertStore, new_alert_id
from warning.model import Alert, AlertState, Level
from warning.store import Keyspace

TARGET_S = 0.3
WARNING = str(Path(sys.executable).with_name("warning"))


@dataclass(frozen=True)
class StartupResult:
    runs: int
    help_s: float
    status_s: float
    python_s: float
    redis_import_s: float


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return elapsed


async def run(url: str, runs: int = 9) -> StartupResult:
    settings = bench_settings(url, "startup")
    redis = Redis.from_url(url, decode_responses=True)
    try:
        now = datetime.now(UTC)
        alert = Alert(
            id=new_alert_id(now),
            sender="bench@warning",
            sent=now,
            event="台风",
            level=Level.ORANGE,
            areas=("331099101",),
            headline="台风今夜登陆",
            instruction="请立即转移到安全地带。",
            state=AlertState.ISSUED,
        )
        await AlertStore(redis, Keyspace(settings.redis.namespace)).save(alert)
        env = {
            **os.environ,
            "WARNING_REDIS_URL": url,
            "WARNING_REDIS_NAMESPACE": settings.redis.namespace,
            "WARNING_REDIS_ALLOW_VOLATILE": "true",
        }
        commands = {
            "help": [WARNING, "--help"],
            "status": [WARNING, "status", alert.id],
            "python": [sys.executable, "-c", "pass"],
            "redis": [sys.executable, "-c", "import redis.asyncio"],
        }
        for argv in commands.values():  # warm the page cache and bytecode once, uncounted
            _timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_timed(argv, env))
        median = {name: statistics.median(values) for name, values in times.items()}
        return StartupResult(runs, median["help"], median["status"], median["python"], median["redis"])
    finally:
        await drop_namespace(redis, settings.redis.namespace)
        await redis.aclose()


def describe(r: StartupResult) -> list[str]:
    return [
        f"medians of {r.runs} interleaved runs each (fresh processes):",
        f"warning --help        {r.help_s * 1000:6.0f} ms",
        f"warning status ID     {r.status_s * 1000:6.0f} ms",
        f"python -c pass        {r.python_s * 1000:6.0f} ms   (baseline: the interpreter)",
        f"import redis.asyncio  {r.redis_import_s * 1000:6.0f} ms   (baseline: the Redis client alone)",
    ]
