"""The fault rig: a county in a Redis of the test's own, the Twilio sandbox as the independent truth,
`warning worker` subprocesses, and the checks every fault scenario makes.

What a scenario asserts (issue 10 item 9), always against what the sandbox accepted (what a phone
would get) and not against our own ledger alone:

- nothing lost: every delivery ends terminal in our ledger, nothing stays `ambiguous`, and every
  resident who should get the SMS has at least one accepted message (unless the ledger says the alert
  was cancelled or expired before it was sent to them);
- duplicates bounded: at most the sends in flight at the fault (`max_in_flight` × workers);
- nothing late: no message accepted after the cancel returned or after `expires`.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_port
from tests.faults.servers import RedisServer, WorkerProcess
from tests.integration.conftest import engine_settings
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import RedisSettings, TwilioSettings
from warning.deliveries import ChannelCounts
from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.model import Level
from warning.sample.generate import write_county
from warning.sandbox.serve import serve
from warning.sandbox.twilio import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM, TwilioSandbox
from warning.sandbox.twilio_resources import SandboxMessage
from warning.store import Store, open_store

COUNTY = "331099"
NAMESPACE = "faults"
FULL = os.environ.get("WARNING_FAULTS", "") == "full"
MAX_IN_FLIGHT = 50  # concurrent provider requests per worker: the duplicate bound is this × workers
UNSENT = ("cancelled", "expired")  # ledger states that excuse a resident getting nothing


@dataclass(frozen=True)
class Scale:
    """How big and how long: 10,000 deliveries and real fault durations under WARNING_FAULTS=full,
    2,000 and shortened faults in the default run."""

    residents: int
    visibility: float  # worker.visibility_timeout, seconds
    outage: float  # seconds a provider hangs or is down
    pause: float  # seconds of CLIENT PAUSE

    @classmethod
    def current(cls) -> Scale:
        if FULL:
            return cls(residents=10_000, visibility=3.0, outage=60.0, pause=4.0)
        return cls(residents=2_000, visibility=2.0, outage=6.0, pause=2.5)


class Provider:
    """The Twilio sandbox served in this process on a fixed port, which can go down and come back."""

    def __init__(self) -> None:
        self.sandbox = TwilioSandbox(seed=7)
        self.port = free_port()
        self._stack: AsyncExitStack | None = None

    @property
    def settings(self) -> TwilioSettings:
        return TwilioSettings(
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            from_number=SANDBOX_FROM,
            base_url=f"http://127.0.0.1:{self.port}",
        )

    async def up(self) -> None:
        assert self._stack is None, "already serving"
        stack = AsyncExitStack()
        await stack.enter_async_context(serve(self.sandbox.app(), port=self.port))
        self._stack = stack

    async def down(self) -> None:
        """Stop serving: connections are refused until `up` (same port, same record of messages)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def messages(self, marker: str) -> list[SandboxMessage]:
        """Accepted messages whose body carries `marker` (each scenario's alert has its own headline)."""
        return [m for m in self.sandbox.messages if marker in m.body]


@dataclass
class Rig:
    """Everything one fault scenario runs against; built by the `rig` fixture."""

    scale: Scale
    tmp: Path
    redis: RedisServer
    store: Store
    provider: Provider
    broadcaster: Broadcaster
    phones: dict[str, str]  # recipient id ("r:R0000001") → phone, read from the county's CSV
    villages: dict[str, str]  # recipient id → village code
    worker_env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, channels: str = "sms", **env: str) -> WorkerProcess:
        """Start one `warning worker` against this rig (extra `WARNING_*` settings as keyword arguments)."""
        merged = {**self.worker_env, **{f"WARNING_{k.upper()}": v for k, v in env.items()}}
        log = self.tmp / f"worker-{len(self.workers) + 1}.log"
        worker = WorkerProcess(merged, self.tmp, log, channels)
        self.workers.append(worker)
        return worker

    def alert(
        self,
        marker: str,
        *,
        area: str = COUNTY,
        expires: datetime | None = None,
        audiences: tuple[str, ...] = ("public",),
    ) -> AlertRequest:
        """A red alert whose SMS body carries `marker`, so the sandbox's messages can be told apart."""
        return AlertRequest(
            event="台风",
            level=Level.RED,
            areas=(area,),
            headline=f"强台风{marker}来袭",
            instruction="立即转移。",
            expires=expires or datetime.now(UTC) + timedelta(hours=2),
            audiences=audiences,
        )

    def expected(self, area: str = COUNTY) -> dict[str, str]:
        """Recipient → phone of every resident of `area` the `public` SMS should reach."""
        return {rid: phone for rid, phone in self.phones.items() if self.villages[rid].startswith(area)}

    async def counts(self, alert_id: str) -> ChannelCounts | None:
        """The alert's SMS counts, or None while Redis cannot be asked (it is down or paused)."""
        try:
            _, counts = await self.broadcaster.status(alert_id)
        except (redis.RedisError, OSError):
            return None
        return counts.get("sms")

    async def wait_for(self, check: Callable[[], bool], within: float, what: str) -> None:
        """Poll `check` (every worker must stay alive meanwhile) until it holds, else fail naming `what`."""
        deadline = time.monotonic() + within
        while not check():
            for worker in self.workers:
                if worker.process.returncode is None and worker.process.poll() is not None:
                    raise AssertionError(
                        f"a worker exited with {worker.process.returncode}:\n{worker.tail()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within:.0f} s")
            await asyncio.sleep(0.05)

    async def settle(self, alert_id: str, within: float, *, queued: int = 0) -> dict[str, int]:
        """Wait until at least `queued` SMS deliveries of the alert exist and none is pending or ambiguous
        any more; return the final counts.

        Returns the counts as they are at the deadline too (the checks then say what is wrong).
        """
        deadline = time.monotonic() + within
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            got = await self.counts(alert_id)
            if got is not None:
                counts = dict(got.counts)
                total = sum(n for state, n in counts.items() if state != "no_address")
                if total >= queued and got.pending == 0 and not got.get("ambiguous"):
                    return counts
            await asyncio.sleep(0.2)
        return counts

    async def ledger(self, alert_id: str) -> dict[str, str]:
        return await self.broadcaster.deliveries.states(alert_id, 1, "sms")


@dataclass
class Verdict:
    """What the scenario's alert came to, measured at the sandbox and in the ledger."""

    expected: int
    ledger: Counter[str]
    lost: list[str]  # should have an SMS, and the sandbox has none
    unfinished: list[str]  # pending or ambiguous in the ledger
    not_queued: list[str]  # in the county, missing from the ledger
    contradicted: list[str]  # ledger says cancelled/expired, the sandbox has a message
    duplicates: int
    late: list[SandboxMessage]  # accepted after the cut-off
    cutoff: datetime

    def summary(self) -> str:
        return (
            f"{self.expected} expected; ledger {dict(self.ledger)}; lost {len(self.lost)} "
            f"{self.lost[:5]}; unfinished {len(self.unfinished)}; not queued {len(self.not_queued)}; "
            f"contradicted {len(self.contradicted)}; duplicates {self.duplicates}; late {len(self.late)}"
        )


async def verdict(
    rig: Rig, alert_id: str, marker: str, *, area: str = COUNTY, cutoff: datetime | None = None
) -> Verdict:
    """Compare the alert's ledger with what the sandbox accepted for it."""
    expected = rig.expected(area)
    states = await rig.ledger(alert_id)
    messages = rig.provider.messages(marker)
    per_phone = Counter(m.to for m in messages)
    lost, unfinished, not_queued, contradicted = [], [], [], []
    for rid, phone in expected.items():
        state = states.get(rid)
        if state is None:
            not_queued.append(rid)
        elif state in ("queued", "retrying", "sending", "ambiguous"):
            unfinished.append(rid)
        if per_phone[phone] == 0 and state not in UNSENT:
            lost.append(rid)
        if per_phone[phone] and state in UNSENT:
            contradicted.append(rid)
    late = [m for m in messages if cutoff is not None and (m.received or m.created) > cutoff]
    return Verdict(
        expected=len(expected),
        ledger=Counter(states.values()),
        lost=lost,
        unfinished=unfinished,
        not_queued=not_queued,
        contradicted=contradicted,
        duplicates=sum(n - 1 for n in per_phone.values()),
        late=late,
        cutoff=cutoff or datetime.max.replace(tzinfo=UTC),
    )


def assert_no_loss(v: Verdict, *, in_flight: int, cutoff_name: str = "") -> None:
    """The three claims of every scenario: nothing lost, duplicates within what was in flight, nothing late."""
    print(f"fault verdict: {v.summary()}")  # shown with -rA / -s: the measured numbers of the run
    assert not v.not_queued, f"residents never queued: {v.summary()}"
    assert not v.unfinished, f"deliveries not terminal (pending or ambiguous): {v.summary()}"
    assert not v.lost, f"residents without any SMS at the provider: {v.summary()}"
    assert not v.contradicted, f"ledger says cancelled/expired but the provider has the SMS: {v.summary()}"
    assert v.duplicates <= in_flight, f"{v.duplicates} duplicates > {in_flight} in flight: {v.summary()}"
    latest = max(((m.received or m.created) - v.cutoff).total_seconds() for m in v.late) if v.late else 0.0
    assert not v.late, (
        f"{len(v.late)} SMS accepted after {cutoff_name} (up to {latest * 1000:.0f} ms after); {v.summary()}"
    )


def read_phones(residents_csv: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Recipient id → phone and recipient id → village, of every resident with a phone."""
    phones: dict[str, str] = {}
    villages: dict[str, str] = {}
    with residents_csv.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["phone"]:
                phones[f"r:{row['id']}"] = row["phone"]
                villages[f"r:{row['id']}"] = row["village"]
    return phones, villages


@asynccontextmanager
async def build_rig(tmp: Path, scale: Scale, **worker: Any) -> AsyncIterator[Rig]:
    """Start Redis and the sandbox, import the county, and yield the rig; stop everything after."""
    server = RedisServer(tmp / "redis")
    await server.start()
    provider = Provider()
    await provider.up()
    try:
        settings = RedisSettings(url=server.url, namespace=NAMESPACE, allow_volatile=False)
        async with open_store(settings, tmp / "data") as store:
            files = write_county(tmp / "county", residents=scale.residents, seed=11)
            report = await import_files(Directory(store), files, on_problem=lambda p: None)
            assert report.errors == 0
            phones, villages = read_phones(tmp / "county" / "residents.csv")
            base = engine_settings(store, provider.settings, visibility_timeout=scale.visibility, **worker)
            base = replace(base, redis=replace(base.redis, url=server.url, allow_volatile=False))
            rig = Rig(
                scale=scale,
                tmp=tmp,
                redis=server,
                store=store,
                provider=provider,
                broadcaster=Broadcaster(store, base),
                phones=phones,
                villages=villages,
                worker_env=_worker_env(server, provider.settings, tmp, scale),
            )
            try:
                yield rig
            finally:
                for w in rig.workers:
                    await w.stop()
    finally:
        await provider.down()
        await server.stop()


def _worker_env(server: RedisServer, twilio: TwilioSettings, tmp: Path, scale: Scale) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARNING_")}
    env.update(
        WARNING_DATA_DIR=str(tmp / "worker-data"),
        WARNING_REDIS_URL=server.url,
        WARNING_REDIS_NAMESPACE=NAMESPACE,
        WARNING_TWILIO_ACCOUNT_SID=twilio.account_sid,
        WARNING_TWILIO_AUTH_TOKEN=twilio.auth_token,
        WARNING_TWILIO_FROM=twilio.from_number,
        WARNING_TWILIO_BASE_URL=twilio.base_url,
        WARNING_SMS_RATE_PER_SECOND="100000",
        WARNING_SMS_BURST="200",
        WARNING_SMS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
        WARNING_SMS_TIMEOUT="2s",
        WARNING_WORKER_VISIBILITY_TIMEOUT=f"{scale.visibility}s",
        WARNING_WORKER_BACKOFF_BASE="100ms",
        WARNING_WORKER_BACKOFF_MAX="2s",
        WARNING_WORKER_RECONCILE_AFTER="1s",
        WARNING_SERVER_PUBLIC_URL="http://127.0.0.1:9",
        WARNING_LOG_LEVEL="warning",
        WARNING_MQTT_EMBEDDED_PORT="9",
    )
    return env
