"""A worker process killed with SIGKILL in the middle of 10,000 deliveries loses none of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Servers
from tests.integration.conftest import engine_settings
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import TwilioSettings
from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.model import Level
from warning.sample.generate import write_county
from warning.sandbox.twilio import TwilioSandbox
from warning.store import Store

MAX_IN_FLIGHT = 50


def _start_worker(
    servers: Servers, store: Store, twilio: TwilioSettings, cwd: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARNING_")}
    env.update(
        WARNING_REDIS_URL=servers.redis_url,
        WARNING_REDIS_NAMESPACE=store.keys.namespace,
        WARNING_REDIS_ALLOW_VOLATILE="true",
        WARNING_TWILIO_ACCOUNT_SID=twilio.account_sid,
        WARNING_TWILIO_AUTH_TOKEN=twilio.auth_token,
        WARNING_TWILIO_FROM=twilio.from_number,
        WARNING_TWILIO_BASE_URL=twilio.base_url,
        WARNING_SMS_RATE_PER_SECOND="100000",
        WARNING_SMS_BURST="200",
        WARNING_SMS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
        WARNING_WORKER_VISIBILITY_TIMEOUT="2s",
        WARNING_WORKER_CHANNELS="sms",
        WARNING_SERVER_PUBLIC_URL="http://127.0.0.1:9",
        WARNING_LOG_LEVEL="warning",
        WARNING_MQTT_EMBEDDED_PORT="9",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "warning", "worker", "--channels", "sms"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
async def test_sigkill_mid_fanout_loses_nothing(
    servers: Servers, store: Store, tmp_path: Path, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings]
) -> None:
    """Every delivery reaches a terminal state; duplicates are at most the sends in flight at the kill."""
    sandbox, twilio = twilio_sandbox
    files = write_county(tmp_path / "county", residents=10_000, seed=11)
    report = await import_files(Directory(store), files, on_problem=lambda p: None)
    assert report.errors == 0
    service = Broadcaster(store, engine_settings(store, twilio))
    alert, fanout = await service.issue(
        AlertRequest(
            event="台风",
            level=Level.RED,
            areas=("331099",),
            headline="强台风来袭",
            instruction="立即转移。",
            audiences=("public",),
        )
    )
    expected = fanout.queued["sms"]
    assert expected > 9_500

    first = _start_worker(servers, store, twilio, tmp_path)
    workers = [first]
    try:
        deadline = time.monotonic() + 120
        while len(sandbox.messages) < expected // 4:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the worker did not get going"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = len(sandbox.messages)
        assert at_kill < expected, "killed too late to prove anything"

        workers.append(_start_worker(servers, store, twilio, tmp_path))
        deadline = time.monotonic() + 240
        while True:
            _, counts = await service.status(alert.id)
            if counts["sms"].pending == 0:
                break
            assert time.monotonic() < deadline, counts["sms"].counts
            await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)

    final = {state: n for state, n in counts["sms"].counts.items() if state != "no_address"}
    assert final == {"sent": expected}, final
    per_phone = Counter(m.to for m in sandbox.messages)
    duplicates = sum(n - 1 for n in per_phone.values())
    assert len(per_phone) == expected
    assert duplicates <= MAX_IN_FLIGHT, f"{duplicates} duplicates; at most {MAX_IN_FLIGHT} were in flight"
