"""An interrupted fan-out resumes in seconds; a slow one is never mistaken for a crashed one (issue 10, 6).

Real Redis, the bundled sample county. A fan-out holds a lease renewed by a heartbeat (fanout_lease.py);
these tests slow the village iterator down, kill the issuing process, steal leases and run housekeepers
side by side, and check what the queues hold: every SMS recipient of the area queued exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from redis.exceptions import RedisError

from tests.conftest import Servers, free_port, redis_settings
from tests.integration.conftest import County, engine_settings
from warning import fanout
from warning.audiences.recipients import village_batches
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import TwilioSettings
from warning.deliveries import Batch
from warning.fanout_lease import FanoutLeases, LeaseTiming, fanout_marker, pending_key
from warning.model import Alert, Level
from warning.scheduler import run_scheduler
from warning.store import Store, open_store

TOWNSHIP = "331099101"  # 7 villages, about a thousand residents
# Scaled down from the defaults (5 s lease, 1 s heartbeat): a "slow" village below takes 1.6 s.
FAST = LeaseTiming(ttl=0.6, renew_every=0.15, grace=0.6)
REQUEST = AlertRequest(
    event="台风", level=Level.RED, areas=(TOWNSHIP,), headline="强台风", instruction="立即转移。"
)


def service(store: Store, timing: LeaseTiming = FAST) -> Broadcaster:
    """A Broadcaster as one process would have it (its own leases object, so its own owner tokens)."""
    made = Broadcaster(store, engine_settings(store, TwilioSettings()))
    made.fanout_leases = FanoutLeases(store.redis, store.keys, timing)
    return made


def slow_villages(monkeypatch: pytest.MonkeyPatch, delay: float, audience: str = "") -> None:
    """Reading a village's members takes `delay` longer, for `audience` only or every audience."""
    real = village_batches

    def slowed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def gen() -> AsyncIterator[Any]:
            if not audience or args[1].name == audience:
                await asyncio.sleep(delay)
            async for batch in real(*args, **kwargs):
                yield batch

        return gen()

    monkeypatch.setattr(fanout, "village_batches", slowed)


async def queued_sms(store: Store, alert: Alert) -> Counter[str]:
    """Phone → how many times an SMS of the alert sits in the queues (nothing consumes them here)."""
    phones: Counter[str] = Counter()
    for lane in ("hi", "lo"):
        entries = await store.redis.xrange(store.keys.key("q", "sms", lane))
        for _, fields in entries or []:
            assert fields is not None
            batch = Batch.from_json(fields["b"])
            if batch.alert_id == alert.id and batch.ledger == "sms":
                phones.update(r.address for r in batch.recipients)
    return phones


async def assert_queued_once(store: Store, county: County, alert: Alert) -> None:
    phones = await queued_sms(store, alert)
    twice = {p: n for p, n in phones.items() if n > 1}
    assert not twice, f"{len(twice)} phones queued more than once"
    assert set(phones) == county.phones_in(TOWNSHIP), "someone in the area was not queued"


async def no_marker(store: Store, alert: Alert) -> bool:
    marker = fanout_marker(alert.id, alert.version, "play")
    return await store.redis.zscore(pending_key(store.keys), marker) is None


async def housekeep(broadcaster: Broadcaster, until: asyncio.Event, every: float = 0.05) -> int:
    """Call `resume_fanouts` in a loop, as a scheduler would, until told to stop; how many it resumed."""
    resumed = 0
    while not until.is_set():
        resumed += await broadcaster.resume_fanouts()
        await asyncio.sleep(every)
    return resumed


async def wait_for(check: Callable[[], Any], within: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, what
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_slow_fan_out_is_not_resumed_while_it_runs(
    sample_store: Store, county: County, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fan-out that spends longer than the lease's time to live in every village without queuing anything
    keeps its lease by the heartbeat: two housekeepers polling all along resume nothing, and it queues
    everyone once."""
    timing = LeaseTiming(ttl=0.3, renew_every=0.075, grace=0.3)
    slow_villages(monkeypatch, 2 * timing.ttl, audience="vulnerable")
    issuer = service(sample_store, timing)
    housekeepers = [service(sample_store, timing), service(sample_store, timing)]
    stop = asyncio.Event()
    polls = [asyncio.create_task(housekeep(h, stop)) for h in housekeepers]
    started = time.monotonic()
    try:
        alert, report = await issuer.issue(REQUEST)
    finally:
        stop.set()
        resumed = await asyncio.gather(*polls)
    took = time.monotonic() - started
    assert resumed == [0, 0], "a live fan-out was resumed"
    assert not report.superseded and report.villages == 7, report
    assert took > 7 * 2 * timing.ttl, f"the fan-out took only {took:.1f} s: not slow enough to prove anything"
    await assert_queued_once(sample_store, county, alert)
    assert await no_marker(sample_store, alert)
    assert not await sample_store.redis.exists(
        issuer.fanout_leases.lease_key(fanout_marker(alert.id, 1, "play"))
    )


_CRASHING_ISSUER = """
import asyncio, sys
from dataclasses import replace
from pathlib import Path
from warning import fanout
from warning.audiences.recipients import village_batches
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import RedisSettings, Settings
from warning.model import Level
from warning.store import open_store

real = fanout.village_batches

def slowed(*args, **kwargs):
    async def gen():
        await asyncio.sleep(0.15)
        async for batch in real(*args, **kwargs):
            yield batch
    return gen()

fanout.village_batches = slowed

async def main(url, namespace, folder):
    settings = Settings()
    settings = replace(settings, redis=RedisSettings(url=url, namespace=namespace, allow_volatile=True))
    async with open_store(settings.redis, Path(folder)) as store:
        service = Broadcaster(store, settings)
        request = AlertRequest(event="台风", level=Level.RED, areas=(sys.argv[4],), headline="强台风",
                               instruction="立即转移。")
        alert = await service.prepare(request)
        print("alert", alert.id, flush=True)
        await service.fan_out(alert, progress=lambda done, total: print("village", done, flush=True))
        print("done", flush=True)

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.mark.slow
async def test_a_killed_issuer_is_resumed_within_seconds(
    servers: Servers, sample_store: Store, county: County, tmp_path: Path
) -> None:
    """SIGKILL the issuing process half-way: a scheduler with the production timings (5 s lease, 1 s
    rounds) resumes the fan-out within a few seconds, and every recipient is queued exactly once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARNING_")}
    issuer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CRASHING_ISSUER,
            servers.redis_url,
            sample_store.keys.namespace,
            str(tmp_path),
            TOWNSHIP,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert issuer.stdout is not None
        alert_id = ""
        villages = 0
        while villages < 2:
            line = await asyncio.to_thread(issuer.stdout.readline)
            assert line, issuer.stderr.read() if issuer.stderr else "the issuer ended"
            kind, _, value = line.strip().partition(" ")
            alert_id = value if kind == "alert" else alert_id
            villages = int(value) if kind == "village" else villages
        issuer.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        issuer.wait(10)
    finally:
        if issuer.poll() is None:
            issuer.kill()
            issuer.wait(10)
    housekeeper = service(sample_store, LeaseTiming())
    alert = await housekeeper.alerts.get(alert_id)
    marker = fanout_marker(alert.id, alert.version, "play")
    assert not await no_marker(sample_store, alert), "the killed fan-out left no marker to resume"
    assert len(await queued_sms(sample_store, alert)) < len(county.phones_in(TOWNSHIP)), "killed too late"
    lease_key = housekeeper.fanout_leases.lease_key(marker)
    dead_owner = await sample_store.redis.get(lease_key)
    assert dead_owner, "the killed run held no lease"

    async def taken_over() -> bool:
        return (await sample_store.redis.get(lease_key)) not in (None, dead_owner)

    async with run_scheduler(sample_store, housekeeper, ()):
        await wait_for(taken_over, 15, "the fan-out was not resumed")
        resumed_after = time.monotonic() - killed
        await wait_for(lambda: no_marker(sample_store, alert), 30, "the resumed fan-out did not finish")
        finished_after = time.monotonic() - killed
    print(f"resumed {resumed_after:.1f} s after the kill, finished {finished_after:.1f} s after it")
    assert resumed_after < LeaseTiming().ttl + 2.5, f"resumed {resumed_after:.1f} s after the kill"
    await assert_queued_once(sample_store, county, alert)


async def test_two_housekeepers_resume_a_dead_fan_out_once(
    sample_store: Store, county: County, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An issuer that died before fanning out leaves a marker: of two housekeepers racing round after
    round, exactly one resumes it, and everyone is queued once."""
    slow_villages(monkeypatch, 0.05)
    alert = await service(sample_store).prepare(REQUEST)  # ... and the issuer dies here
    await asyncio.sleep(FAST.grace)
    first, second = service(sample_store), service(sample_store)
    counts = await asyncio.gather(first.resume_fanouts(), second.resume_fanouts())
    assert sorted(counts) == [0, 1], counts
    for _ in range(5):  # later rounds find nothing left
        assert await first.resume_fanouts() + await second.resume_fanouts() == 0
    assert await no_marker(sample_store, alert)
    await assert_queued_once(sample_store, county, alert)


async def test_a_run_that_lost_its_lease_stops_and_the_new_owner_finishes(
    sample_store: Store, county: County, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another owner holds the lease (the issuer was paused past its time to live and a housekeeper
    took over), the old run notices at its next renewal and stops queuing; the new owner queues the rest,
    nobody twice."""
    slow_villages(monkeypatch, 0.1)
    issuer = service(sample_store)
    alert = await issuer.prepare(REQUEST)
    marker = fanout_marker(alert.id, alert.version, "play")
    running = asyncio.create_task(issuer.fan_out(alert))
    lease_key = issuer.fanout_leases.lease_key(marker)
    await wait_for(lambda: sample_store.redis.exists(lease_key), 5, "the fan-out took no lease")
    await asyncio.sleep(0.5)
    await sample_store.redis.set(lease_key, "a housekeeper that took over", px=int(FAST.ttl * 1000))
    report = await asyncio.wait_for(running, 5)
    assert report.superseded and report.villages < 7, report
    assert await sample_store.redis.get(lease_key) == "a housekeeper that took over", "the old run freed it"
    assert not await no_marker(sample_store, alert), "the old run dropped the marker of an unfinished fan-out"
    # The stolen lease is never renewed (its "owner" is not a real run): it lapses and is resumed.
    await asyncio.sleep(FAST.ttl)
    assert await service(sample_store).resume_fanouts() == 1
    assert await no_marker(sample_store, alert)
    await assert_queued_once(sample_store, county, alert)


async def test_two_runs_at_once_still_queue_nobody_twice(sample_store: Store, county: County) -> None:
    """Even two fan-outs of one alert queuing side by side (the worst hand-over race) queue each
    recipient once: queuing is HSETNX per recipient."""
    one, other = service(sample_store), service(sample_store)
    alert = await one.prepare(REQUEST)
    async with (
        one.fanout_leases.take("race:1:one") as a,
        other.fanout_leases.take("race:1:other") as b,
    ):
        assert a is not None and b is not None
        reports = await asyncio.gather(one.fan_out(alert, lease=a), other.fan_out(alert, lease=b))
    assert sum(r.queued["sms"] for r in reports) == len(county.phones_in(TOWNSHIP))
    await assert_queued_once(sample_store, county, alert)


async def test_a_fan_out_already_running_elsewhere_is_not_started_twice(sample_store: Store) -> None:
    """Issuing the same alert id again while its fan-out runs in another process queues nothing here."""
    issuer = service(sample_store)
    alert = await issuer.prepare(REQUEST)
    async with service(sample_store).fanout_leases.take(fanout_marker(alert.id, 1, "play")) as held:
        assert held is not None
        report = await issuer.fan_out(alert)
    assert report.superseded and report.queued == {}


async def test_two_claims_of_one_marker_give_one_lease(store: Store) -> None:
    """Two resumers claiming the same due marker at the same moment: exactly one gets the lease, and
    nobody can claim a marker whose run is alive."""
    marker = fanout_marker("a-test", 1, "play")
    first, second = FanoutLeases(store.redis, store.keys, FAST), FanoutLeases(store.redis, store.keys, FAST)
    await first.mark(marker)
    async with first.claim(marker) as early:
        assert early is None, "claimed before the issuer's grace was over"
    await asyncio.sleep(FAST.grace)
    both_tried = asyncio.Barrier(2)

    async def claims(leases: FanoutLeases) -> bool:
        async with leases.claim(marker) as lease:
            await both_tried.wait()
            return lease is not None

    assert sorted(await asyncio.gather(claims(first), claims(second))) == [False, True]
    async with first.take(marker) as running:
        assert running is not None
        await asyncio.sleep(2 * FAST.ttl)  # the heartbeat keeps it
        async with second.claim(marker) as stolen:
            assert stolen is None, "a live run's marker was claimed"
        assert await second.resumable() == []
        assert await running.finish()
    assert await second.resumable() == []
    assert await store.redis.zscore(pending_key(store.keys), marker) is None


class RedisOutage:
    """A loopback TCP proxy in front of the test Redis that can go away (every connection cut, new
    ones refused) and come back on the same port: Redis unreachable for the processes that use it."""

    def __init__(self, target: str) -> None:
        parsed = urlparse(target)
        self.target = parsed
        self.db = parsed.path.strip("/") if parsed.scheme != "unix" else "0"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/{self.db or 0}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target.scheme == "unix":
            up_reader, up_writer = await asyncio.open_unix_connection(self.target.path)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.target.hostname, self.target.port)
        self._writers.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@pytest.mark.slow
async def test_a_fan_out_cut_off_by_a_redis_outage_resumes_seconds_after_redis_is_back(
    servers: Servers, sample_store: Store, county: County, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis goes away for everyone mid-fan-out: the issuing run fails with a Redis error and keeps no
    heartbeat; once Redis is back, a scheduler (production timings) resumes it within seconds, and
    everyone is queued once."""
    slow_villages(monkeypatch, 0.15)
    outage = RedisOutage(servers.redis_url)
    await outage.up()
    settings = redis_settings(servers, sample_store.keys.namespace)
    async with (
        open_store(replace(settings, url=outage.url), tmp_path / "issuer") as issuer_store,
        open_store(replace(settings, url=outage.url), tmp_path / "housekeeper") as housekeeper_store,
    ):
        issuer = service(issuer_store, LeaseTiming())
        alert = await issuer.prepare(REQUEST)
        villages: list[int] = []
        running = asyncio.create_task(issuer.fan_out(alert, progress=lambda done, _: villages.append(done)))
        housekeeper = service(housekeeper_store, LeaseTiming())
        async with run_scheduler(housekeeper_store, housekeeper, ()):
            await wait_for(lambda: _true(len(villages) >= 2), 20, "the fan-out did not get going")
            lease_key = issuer.fanout_leases.lease_key(fanout_marker(alert.id, alert.version, "play"))
            cut_owner = await sample_store.redis.get(lease_key)  # read beside the proxy
            assert cut_owner

            async def taken_over() -> bool:
                return (await sample_store.redis.get(lease_key)) not in (None, cut_owner)

            await outage.down()
            with pytest.raises(RedisError):
                await asyncio.wait_for(running, 30)
            heartbeats = [t for t in asyncio.all_tasks() if t.get_name().startswith("fanout-lease:")]
            assert heartbeats == [], "a failed fan-out left its heartbeat running"
            await asyncio.sleep(3)  # the outage
            await outage.up()
            resumed_after = await wait_for(taken_over, 15, "the fan-out was not resumed")
            await wait_for(lambda: no_marker(sample_store, alert), 30, "the resumed fan-out did not finish")
        print(f"resumed {resumed_after:.1f} s after Redis came back (after a 3 s outage)")
        # The cut run's lease lapses at most 5 s after its last renewal, 3 s of which the outage took.
        assert resumed_after < LeaseTiming().ttl - 3 + 2, (
            f"resumed {resumed_after:.1f} s after Redis came back"
        )
    await outage.down()
    await assert_queued_once(sample_store, county, alert)


async def _true(value: bool) -> bool:
    return value
