"""`make bench`: the DESIGN §9 performance checks, each beside a bare baseline measured in the same run.

    .venv/bin/python bench/run.py [--quick] [--only startup,fanout,callbacks,escalation,reach] [--redis URL]
                                  [--residents N] [--callbacks N] [--connections N] [--escalation-tasks N]
                                  [--reach-residents N] [--readers N]

The machine is shared and noisy, so every benchmark prints its own figure, a baseline doing the least
the same job needs on the same server in the same run, and their ratio; absolute numbers alone mean
little. Redis is a private embedded server started for the run (AOF on, as `warning serve` runs it)
unless `--redis` or REDIS_URL names one; each benchmark works in a namespace of its own and deletes it.
Progress bars go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass

import callbacks
import escalation
import fanout
import reach_load
import startup
from redis.asyncio import Redis
from redis_target import redis_server

BENCHMARKS = ("startup", "fanout", "callbacks", "escalation", "reach")
MAX_RESIDENTS = 1_000_000


@dataclass(frozen=True)
class Sizes:
    residents: int
    callbacks: int
    escalation_tasks: int
    reach_residents: int


DEFAULT = Sizes(residents=200_000, callbacks=20_000, escalation_tasks=100_000, reach_residents=100_000)
QUICK = Sizes(residents=20_000, callbacks=2_000, escalation_tasks=10_000, reach_residents=10_000)


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    benchmark: str
    measured: str
    baseline: str
    ratio: str
    target: str
    verdict: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (about a minute)")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", ""),
        help="Redis URL (default: REDIS_URL, else a private embedded redis-server for the run)",
    )
    parser.add_argument("--residents", type=int, help=f"fan-out county size (default {DEFAULT.residents:,})")
    parser.add_argument("--callbacks", type=int, help=f"status callbacks (default {DEFAULT.callbacks:,})")
    parser.add_argument("--connections", type=int, default=64, help="concurrent callback connections (64)")
    parser.add_argument(
        "--escalation-tasks", type=int, help=f"open must-reach tasks (default {DEFAULT.escalation_tasks:,})"
    )
    parser.add_argument(
        "--reach-residents",
        type=int,
        help=f"county of the reach benchmark (default {DEFAULT.reach_residents:,})",
    )
    parser.add_argument(
        "--readers",
        type=int,
        default=reach_load.READERS,
        help=f"concurrent /reach readers ({reach_load.READERS})",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    for name in ("residents", "callbacks", "escalation_tasks", "reach_residents"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(sizes, name))
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if not 1_000 <= args.residents <= MAX_RESIDENTS:
        parser.error(f"--residents must be between 1,000 and {MAX_RESIDENTS:,}")
    if not 100 <= args.callbacks <= MAX_RESIDENTS:
        parser.error(f"--callbacks must be between 100 and {MAX_RESIDENTS:,}")
    if not 1 <= args.connections <= 1000:
        parser.error("--connections must be between 1 and 1000")
    if not 1_000 <= args.reach_residents <= MAX_RESIDENTS:
        parser.error(f"--reach-residents must be between 1,000 and {MAX_RESIDENTS:,}")
    if not 1 <= args.readers <= 1000:
        parser.error("--readers must be between 1 and 1000")
    if not escalation.VILLAGES * 5 <= args.escalation_tasks <= MAX_RESIDENTS:
        parser.error(f"--escalation-tasks must be between {escalation.VILLAGES * 5:,} and {MAX_RESIDENTS:,}")
    return args


def say(line: str = "") -> None:
    print(line, flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def fanout_rows(r: fanout.FanoutResult) -> list[Row]:
    projected = 1e6 / r.rate
    return [
        Row(
            f"fan-out ({r.deliveries:,} deliveries)",
            f"{r.rate:,.0f} deliveries/s",
            f"{r.baseline_rate:,.0f} recipients/s",
            f"{r.rate / r.baseline_rate:.2f}x rate",
            f"1M <= 4 s (projected {projected:.1f} s)",
            verdict(projected <= 4),
        ),
        Row(
            "fan-out redis memory",
            f"{r.bytes_per_delivery:.0f} B/delivery",
            f"{r.baseline_bytes_per_delivery:.0f} B/recipient",
            f"{r.bytes_per_delivery / r.baseline_bytes_per_delivery:.1f}x bytes",
            "<= 200 B/delivery",
            verdict(r.bytes_per_delivery <= 200),
        ),
    ]


def callback_rows(r: callbacks.CallbackResult) -> list[Row]:
    return [
        Row(
            f"status callbacks ({r.callbacks:,})",
            f"{r.rate:,.0f} callbacks/s",
            f"{r.baseline_rate:,.0f} requests/s",
            f"{r.rate / r.baseline_rate:.2f}x rate",
            ">= 10,000/s per process",
            verdict(r.rate >= 10_000),
        )
    ]


def escalation_rows(r: escalation.EscalationResult) -> list[Row]:
    return [
        Row(
            f"escalation step {step} ({r.residents:,} tasks)",
            f"{seconds:.2f} s, {contacts:,} contacts",
            f"{r.baseline_s:.2f} s scan",
            f"{seconds / r.baseline_s:.1f}x time",
            "(none in DESIGN §9)",
            "-",
        )
        for step, seconds, contacts in ((0, r.step0_s, r.step0_contacts), (1, r.step1_s, r.step1_contacts))
    ]


def startup_rows(r: startup.StartupResult) -> list[Row]:
    return [
        Row(
            f"start-up: {name}",
            f"{seconds * 1000:.0f} ms",
            f"{r.python_s * 1000:.0f} ms python, {r.redis_import_s * 1000:.0f} ms + redis",
            f"{seconds / r.redis_import_s:.1f}x redis import",
            f"<= {startup.TARGET_S * 1000:.0f} ms",
            verdict(seconds <= startup.TARGET_S),
        )
        for name, seconds in (("warning --help", r.help_s), ("warning status ID", r.status_s))
    ]


def reach_rows(r: reach_load.ReachLoadResult) -> list[Row]:
    fivehundreds = r.statuses.get("500", 0)
    return [
        Row(
            f"fan-out under {r.readers} /reach readers ({r.residents:,})",
            f"{r.loaded_s:.2f} s (median of {len(r.of('readers'))})",
            f"{r.alone_s:.2f} s alone",
            f"{r.ratio:.2f}x time",
            f"<= {reach_load.TARGET_RATIO}x, no 500",
            verdict(r.ratio <= reach_load.TARGET_RATIO and fivehundreds == 0),
        ),
        Row(
            "/reach reader answers",
            ", ".join(f"{code} x {n:,}" for code, n in sorted(r.statuses.items())),
            "-",
            "-",
            "0 x 500",
            verdict(fivehundreds == 0),
        ),
    ]


def table(rows: list[Row]) -> list[str]:
    header = Row("benchmark", "measured", "baseline (same run)", "ratio", "DESIGN target", "verdict")
    cells = [list(vars(row).values()) for row in (header, *rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


async def server_facts(url: str) -> str:
    redis = Redis.from_url(url)
    try:
        info = await redis.info("server")
        return f"redis {info['redis_version']}"
    finally:
        await redis.aclose()


async def leftover_keys(url: str) -> int:
    redis = Redis.from_url(url)
    try:
        return int(await redis.dbsize())
    finally:
        await redis.aclose()


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    rows: list[Row] = []
    async with redis_server(args.redis) as (url, description):
        say(
            f"make bench{' --quick' if args.quick else ''}: {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs, {await server_facts(url)}: {description}"
        )
        for name in args.only:
            bench_start = time.perf_counter()
            if name == "startup":
                say("\n== 0. start-up: `warning --help` and `warning status ID` as fresh processes ==")
                st = await startup.run(url, runs=5 if args.quick else 9)
                lines, new_rows = startup.describe(st), startup_rows(st)
            elif name == "fanout":
                say(
                    f"\n== 1. fan-out: red alert to a county of {args.residents:,} residents, audience public =="
                )
                result = await fanout.run(url, args.residents)
                lines, new_rows = fanout.describe(result), fanout_rows(result)
            elif name == "callbacks":
                say(f"\n== 2. status callbacks: {args.callbacks:,} signed Twilio callbacks over loopback ==")
                cb = await callbacks.run(url, args.callbacks, args.connections)
                lines, new_rows = callbacks.describe(cb), callback_rows(cb)
            elif name == "reach":
                say(
                    f"\n== 4. reading never slows sending: fan-out to {args.reach_residents:,} residents,"
                    f" alone and under {args.readers} concurrent /reach readers over HTTP =="
                )
                rl = await reach_load.run(url, args.reach_residents, args.readers)
                lines, new_rows = reach_load.describe(rl), reach_rows(rl)
            else:
                say(f"\n== 3. escalation sweep: {args.escalation_tasks:,} open must-reach tasks ==")
                small, large = await escalation.measure(url, args.escalation_tasks)
                lines, new_rows = escalation.describe(small, large), escalation_rows(large)
            for line in lines:
                say("  " + line)
            say(f"  ({name} took {time.perf_counter() - bench_start:.1f} s wall, setup included)")
            rows += new_rows
        if not args.redis:
            left = await leftover_keys(url)
            say(f"\nkeys left on the private server: {left}")
    say(f"\n== summary ({time.perf_counter() - started:.0f} s in all) ==")
    for line in table(rows):
        say(line)
    return 0


if __name__ == "__main__":
    # The product's own warnings (e.g. "escalation step fired") stay visible but marked as logs.
    logging.basicConfig(level=logging.WARNING, format="log: %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(parse_args())))
