"""Reading never slows sending (issue 10 item 5): 200 readers of /reach over real HTTP while a fan-out
runs in the same process. Every reader gets 200 or 503 (never 500), the fan-out queues every delivery,
and once it is done the served figures equal the ledger's own truth, read straight from Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers, free_port
from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import MqttSettings, Settings
from warning.deliveries import STATES
from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.fanout import FanoutReport
from warning.model import Alert, Level
from warning.sample.generate import COUNTY_CODE, write_county
from warning.store import Store
from warning.store.connection import ReadersBusy
from warning.users import Users
from warning.views import ReadGate, ViewCache
from warning.web.app import BROADCASTER, STORE, build_app

RESIDENTS = 6_000
READERS = 200


@pytest.fixture
async def county_store(store: Store, tmp_path: Path) -> Store:
    """The test store with a generated county of RESIDENTS people imported (as `make bench` does)."""
    paths = write_county(tmp_path / "county", residents=RESIDENTS, seed=11)
    report = await import_files(Directory(store), paths, on_problem=lambda p: None)
    assert report.errors == 0
    return store


@dataclass
class Served:
    app: web.Application
    base: str
    token: str


async def _serve(
    store: Store, servers: Servers, ttl: float, rate: float, **redis: Any
) -> AsyncIterator[Served]:
    port = free_port()
    base = Settings()
    settings = replace(
        base,
        server=replace(
            base.server,
            host="127.0.0.1",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            read_cache_ttl=ttl,
            read_rate=rate,
        ),
        redis=replace(
            base.redis, url=servers.redis_url, namespace=store.keys.namespace, allow_volatile=True, **redis
        ),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{store.keys.namespace}"
        ),
    )
    app = build_app(settings, channels=[])  # no workers: every delivery stays queued, to be counted
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        token = await Users(app[STORE].redis, app[STORE].keys).add("值班员", "viewer")
        yield Served(app, settings.server.base_url, token)
    finally:
        await runner.cleanup()


@pytest.fixture
async def served(county_store: Store, servers: Servers) -> AsyncIterator[Served]:
    defaults = Settings().server
    async for s in _serve(county_store, servers, defaults.read_cache_ttl, defaults.read_rate):
        yield s


@pytest.fixture
async def starved(county_store: Store, servers: Servers) -> AsyncIterator[Served]:
    """The service with a readers' pool of one connection that waits 10 ms at most, no shared answers kept
    (`read_cache_ttl` 0) and no budget of reads: the pool itself must turn most readers away."""
    async for s in _serve(county_store, servers, 0.0, 0.0, read_pool_size=1, read_pool_timeout=0.01):
        yield s


def _request() -> AlertRequest:
    return AlertRequest(
        event="台风",
        level=Level.RED,
        areas=(COUNTY_CODE,),
        headline="超强台风将于今夜登陆，请立即转移",
        instruction="沿海及低洼地区居民请立即撤离到安置点。",
        expires=datetime.now(UTC) + timedelta(hours=6),
        audiences=tuple(DEFAULT_AUDIENCES),
    )


async def _readers(served: Served, alert_id: str, stop: asyncio.Event) -> tuple[Counter[int], set[str]]:
    """READERS clients reading the reach view until `stop`; their status codes, and any Retry-After
    missing from a 503 (as the reader saw it)."""
    statuses: Counter[int] = Counter()
    problems: set[str] = set()
    url = f"{served.base}/api/v1/alerts/{alert_id}/reach"
    connector = aiohttp.TCPConnector(limit=READERS)
    headers = {"Authorization": f"Bearer {served.token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def reader() -> None:
            while not stop.is_set():
                async with session.get(url) as response:
                    await response.read()
                    statuses[response.status] += 1
                    if response.status == 503:
                        if not response.headers.get("Retry-After", "").isdigit():
                            problems.add("503 without Retry-After")
                        await asyncio.sleep(0.2)  # a client honours Retry-After (shortened)
                    if response.status == 500:
                        problems.add(await response.text())

        await asyncio.gather(*(reader() for _ in range(READERS)))
    return statuses, problems


async def _fan_out_under_readers(served: Served) -> tuple[Alert, FanoutReport, Counter[int], set[str]]:
    service = served.app[BROADCASTER]
    alert = await service.prepare(_request(), actor="test")
    stop = asyncio.Event()
    readers = asyncio.create_task(_readers(served, alert.id, stop))
    await asyncio.sleep(0.5)  # the readers are all reading before the fan-out starts
    report = await service.fan_out(alert)
    stop.set()
    statuses, problems = await readers
    assert not report.stopped_early
    return alert, report, statuses, problems


def _expected(report: FanoutReport, ledger: str) -> Counter[str]:
    """What a ledger must hold after the fan-out: its queued deliveries, and those with no address."""
    return (
        Counter({"queued": report.queued[ledger], "no_address": report.no_address.get(ledger, 0)}) - Counter()
    )


async def _truth(service: Broadcaster, alert: Alert, report: FanoutReport) -> dict[str, Any]:
    """The ledger's own figures, by reading every resident's line (what the view must never do)."""
    redis = service.store.redis
    lines = {str(k): str(v) for k, v in (await redis.hgetall(service.reach.key(alert.id, "r"))).items()}
    villages: Counter[str] = Counter(v.split("|")[1] for v in lines.values())
    queued = {}
    for ledger in report.queued:
        states = await redis.hgetall(service.deliveries.states_key(alert.id, alert.version, ledger))
        queued[ledger] = Counter(STATES[str(code)] for code in states.values())
    return {
        "residents": len(lines),
        "must": sum(1 for v in lines.values() if v[1] == "1"),
        "pending": sum(1 for v in lines.values() if v[0] == "p"),
        "villages": villages,
        "open": {str(m) for m in await redis.smembers(service.reach.key(alert.id, "open"))},
        "deliveries": queued,
    }


async def _get(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        document: dict[str, Any] = await response.json()
        return document


async def test_readers_during_a_fan_out_get_200_and_the_figures_match_the_ledger(served: Served) -> None:
    alert, report, statuses, problems = await _fan_out_under_readers(served)
    assert not problems, problems
    assert statuses[500] == 0 and set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= READERS, statuses  # every reader was served, most more than once

    service = served.app[BROADCASTER]
    truth = await _truth(service, alert, report)
    # Every delivery was queued: each ledger holds exactly what the fan-out counted, all queued.
    assert truth["residents"] >= RESIDENTS and sum(report.queued.values()) >= RESIDENTS
    for ledger, states in truth["deliveries"].items():
        assert states == _expected(report, ledger), (ledger, states)
    await asyncio.sleep(service.settings.server.read_cache_ttl + 0.1)  # the last shared answer has aged out
    headers = {"Authorization": f"Bearer {served.token}"}
    base = f"{served.base}/api/v1/alerts/{alert.id}"
    async with aiohttp.ClientSession(headers=headers) as session:
        view = await _get(session, f"{base}/reach")
        assert view["residents"]["total"] == truth["residents"]
        assert view["residents"]["pending"] == truth["pending"]
        assert view["must_reach"]["total"] == truth["must"] > 0
        assert view["unreached_total"] == len(truth["open"])
        for ledger, states in truth["deliveries"].items():
            assert view["channels"][ledger]["queued"] == states["queued"], ledger
        status = await _get(session, base)
        for ledger, states in truth["deliveries"].items():
            assert status["deliveries"][ledger]["queued"] == states["queued"], ledger
        # Villages and unreached residents come in bounded pages that together hold exactly the truth.
        villages: dict[str, int] = {}
        cursor: str | None = ""
        while cursor is not None:
            page = await _get(session, f"{base}/reach?villages_limit=7&limit=1&villages_cursor={cursor}")
            assert len(page["villages"]) <= 7 and len(page["unreached"]) <= 1
            villages |= {v["code"]: v["residents"]["total"] for v in page["villages"]}
            cursor = page["villages_next"]
        assert {k: v for k, v in villages.items() if v} == dict(truth["villages"])
        unreached: list[str] = []
        cursor = ""
        while cursor is not None:
            page = await _get(session, f"{base}/reach?limit=97&cursor={cursor}")
            assert len(page["unreached"]) <= 97
            unreached += [u["resident_id"] for u in page["unreached"]]
            cursor = page["unreached_next"]
        assert len(unreached) == len(set(unreached)) and set(unreached) == truth["open"]
        # A page size over the hard maximum is served as the maximum, never as an unbounded list.
        big = await _get(session, f"{base}/reach?limit=100000")
        assert len(big["unreached"]) == min(1000, len(truth["open"]))
        async with session.get(f"{base}/reach?cursor=x") as response:
            assert response.status == 400


async def test_a_saturated_readers_pool_answers_503_and_the_fan_out_still_completes(starved: Served) -> None:
    # The pool's one connection is taken for the first second, so readers surely find it busy (left to
    # chance, single-flight builds could keep them from ever meeting); the fan-out never waits for it.
    pool = starved.app[STORE].readers.connection_pool

    async def hold() -> None:
        taken = await pool.get_connection()  # type: ignore[no-untyped-call]
        await asyncio.sleep(1.0)
        await pool.release(taken)

    holder = asyncio.create_task(hold())
    alert, report, statuses, problems = await _fan_out_under_readers(starved)
    await holder
    assert not problems, problems
    assert statuses[500] == 0 and statuses[503] > 0 and set(statuses) <= {200, 503}, statuses
    truth = await _truth(starved.app[BROADCASTER], alert, report)
    assert truth["residents"] >= RESIDENTS
    for ledger, states in truth["deliveries"].items():
        assert states == _expected(report, ledger), (ledger, states)


async def test_identical_reads_share_one_build_and_a_failure_is_not_kept() -> None:
    """200 concurrent identical reads cost one build; the answer serves for the TTL, then is built anew;
    a failed build reaches every waiting reader and is tried again by the next."""
    clock = [0.0]
    cache: ViewCache[int] = ViewCache(0.75, clock=lambda: clock[0])
    calls = 0

    async def build() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    assert set(await asyncio.gather(*(cache.get("k", build) for _ in range(READERS)))) == {1}
    clock[0] = 0.7
    assert await cache.get("k", build) == 1 and calls == 1
    clock[0] = 0.8
    assert await cache.get("k", build) == 2

    async def broken() -> int:
        raise ReadersBusy("busy")

    results = await asyncio.gather(*(cache.get("x", broken) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ReadersBusy) for r in results)
    assert await cache.get("x", build) == 3


async def test_the_read_budget_lets_a_burst_through_then_paces_then_refuses() -> None:
    clock = [100.0]
    gate = ReadGate(100.0, timeout=0.055, clock=lambda: clock[0])
    # A quarter second's worth (25 reads, and the one due right at its end) passes at once.
    admitted = [await gate.enter() for _ in range(26)]
    assert all(admitted) and gate.refused == 0
    start = time.monotonic()
    assert await gate.enter()  # the next waits its turn (10 ms)
    assert time.monotonic() - start >= 0.009
    assert all([await gate.enter() for _ in range(4)])  # turns 20, 30, 40 and 50 ms away: they wait
    assert not await gate.enter() and gate.refused == 1  # 60 ms away, over the 55 ms it may wait: 503
