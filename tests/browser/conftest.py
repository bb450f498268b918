"""The console under a real browser: the whole service (web, workers, scheduler, the Twilio and WeChat
sandboxes, simulated loudspeakers) on a loopback port over the tests' Redis and MQTT, the sample county,
one signed-in user per role, and a headless Debian Chromium driven by playwright.

The browser tests skip only where no Chromium exists at all (with how to install it); under CI (CI=true)
a missing Chromium or playwright fails the run instead."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.helpers import INSTALL_HINT, SCREENSHOTS, Shots, chromium_path, in_ci
from tests.conftest import Servers, free_port, start_app
from tests.integration.conftest import County

# The integration fixtures this folder shares (re-exported so pytest finds them here).
from tests.integration.conftest import county as county
from tests.integration.conftest import sample_store as sample_store
from warning.channels.liveness import speaker_status
from warning.config import MqttSettings, Settings, SmsSettings, WorkerSettings
from warning.sandbox.speakers import SpeakerSimulator
from warning.store import Store
from warning.users import Users
from warning.web.app import build_app
from warning.web.keys import BROKER, STORE

# The villages the tests warn: 上岩村 (searched by name) and 桃门村 (ticked on the map).
SEARCHED = ("331099101201", "上岩村")
MAPPED = ("331099101202", "桃门村")
OFFLINE_SPEAKER = "spk-331099101202-2"  # never connects: the fleet shows one offline loudspeaker
# One user per role, named as a bureau would (a Chinese user name goes through login and the session).
USERS = {"viewer": "观察员赵敏", "operator": "值班员李明", "approver": "带班领导王强", "admin": "管理员陈刚"}


@dataclass
class Console:
    """The running service as the browser tests see it."""

    app: web.Application
    base: str
    settings: Settings
    passwords: dict[str, str]  # user name → password
    tokens: dict[str, str]  # role → bearer token of that role's user
    speakers: SpeakerSimulator

    def user(self, role: str) -> tuple[str, str]:
        """(name, password) of the user with `role`."""
        return USERS[role], self.passwords[USERS[role]]


def _require_chromium() -> str:
    path = chromium_path()
    if path is None:
        if in_ci():
            pytest.fail(f"CI=true but {INSTALL_HINT}", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return path


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        message = "playwright is not installed: `pip install -e '.[dev]'`"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return async_playwright


def service_settings(servers: Servers, store: Store, port: int, data_dir: Path) -> Settings:
    """Every worker fast: SMS at 2000/s, quick retries, loudspeakers republished after 2 s, the
    escalation sweep every half second."""
    base = Settings()
    return replace(
        base,
        server=replace(base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"),
        data=replace(base.data, dir=data_dir),
        redis=replace(base.redis, url=servers.redis_url, namespace=store.keys.namespace, allow_volatile=True),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
        sms=SmsSettings(rate_per_second=2000, burst=200, max_in_flight=100, timeout=5),
        speaker=replace(base.speaker, republish_after=2.0),
        voice=replace(base.voice, retry_after=0.2),
        escalation=replace(base.escalation, sweep_every=0.5),
        worker=WorkerSettings(backoff_base=0.05, backoff_max=0.5, visibility_timeout=5.0),
    )


async def _until_online(store: Store, devices: list[str], within: float = 15.0) -> None:
    """Wait until the service has heard every connected loudspeaker report itself online (the estimate
    and the fleet count them from those reports)."""
    deadline = time.monotonic() + within
    while True:
        status = await speaker_status(store, devices)
        missing = [d for d in devices if not status.get(d, {}).get("online")]
        if not missing:
            return
        assert time.monotonic() < deadline, f"loudspeakers never reported online: {missing}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def console(
    sample_store: Store, servers: Servers, county: County, tmp_path: Path
) -> AsyncIterator[Console]:
    port = free_port()
    settings = service_settings(servers, sample_store, port, tmp_path / "data")
    app = build_app(settings)  # every channel's workers, the scheduler and the provider sandboxes
    runner = await start_app(app, port)
    devices = [s["device_id"] for s in county.speakers if s["village"] in (SEARCHED[0], MAPPED[0])]
    speakers = SpeakerSimulator(
        app[BROKER],
        devices,
        topic_prefix=settings.mqtt.topic_prefix,
        offline=(OFFLINE_SPEAKER,),
        play_seconds=0.05,
    )
    try:
        await speakers.start()
        await _until_online(app[STORE], [d for d in devices if d != OFFLINE_SPEAKER])
        users = Users(app[STORE].redis, app[STORE].keys)
        passwords, tokens = {}, {}
        for role, name in USERS.items():
            # The token and the dashboard password, as `warning users add NAME --password-stdin` sets them.
            passwords[name] = f"pw-{uuid.uuid4().hex[:12]}"
            tokens[role] = await users.add(name, role, passwords[name])
        yield Console(app, settings.server.base_url, settings, passwords, tokens, speakers)
    finally:
        await speakers.stop()
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (the Debian binary; playwright never downloads one)."""
    executable = _require_chromium()
    async with _playwright()() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    folder = SCREENSHOTS / request.node.name
    # Each step's file name is fixed and overwritten (nothing is deleted: another run may be writing here).
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return Shots(folder)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests' screenshots are (build/screenshots/<test>/NN-step.png)."""
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.glob("*/*.png")):
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOTS}")
