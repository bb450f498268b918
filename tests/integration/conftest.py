"""Fixtures for the broadcast engine: a county in real Redis, the Twilio sandbox over HTTP, a real broker."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import Servers
from warning.broker import BrokerAddress, open_broker
from warning.config import MqttSettings, Settings, SmsSettings, TwilioSettings, WorkerSettings
from warning.directory.importer import import_files
from warning.directory.store import Directory
from warning.sample.generate import sample_files
from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.store import Store


@dataclass
class County:
    """What the bundled sample county holds, read straight from its CSV files (the tests' oracle)."""

    villages: list[dict[str, str]]
    residents: list[dict[str, str]]
    contacts: list[dict[str, str]]
    speakers: list[dict[str, str]]

    def phones_in(self, area: str) -> set[str]:
        """Every phone the default audiences (vulnerable, public, cadres, officials) reach for `area`."""
        phones = {r["phone"] for r in self.residents if r["village"].startswith(area) and r["phone"]}
        villages = [v["code"] for v in self.villages if v["code"].startswith(area)]
        roles = ("cadre", "village_head", "township_duty", "county_duty")
        for contact in self.contacts:
            covers = [a for a in contact["villages"].split(";") if a]
            if (
                contact["role"] in roles
                and contact["phone"]
                and any(v.startswith(a) for v in villages for a in covers)
            ):
                phones.add(contact["phone"])
        return phones

    def speakers_in(self, area: str) -> set[str]:
        return {s["device_id"] for s in self.speakers if s["village"].startswith(area)}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def county() -> County:
    files = {p.stem: p for p in sample_files()}
    return County(
        _rows(files["villages"]),
        _rows(files["residents"]),
        _rows(files["contacts"]),
        _rows(files["speakers"]),
    )


@pytest.fixture
async def sample_store(store: Store) -> Store:
    """The store with the bundled sample county imported."""
    report = await import_files(Directory(store), sample_files(), on_problem=lambda p: None)
    assert report.errors == 0
    return store


@pytest.fixture
async def twilio_sandbox() -> AsyncIterator[tuple[TwilioSandbox, TwilioSettings]]:
    """The Twilio sandbox on a loopback port, and Twilio settings pointing at it."""
    sandbox = TwilioSandbox()
    async with run_twilio_sandbox(sandbox) as base_url:
        yield (
            sandbox,
            TwilioSettings(
                account_sid=SANDBOX_ACCOUNT_SID,
                auth_token=SANDBOX_AUTH_TOKEN,
                from_number=SANDBOX_FROM,
                base_url=base_url,
            ),
        )


@pytest.fixture
async def broker(servers: Servers) -> AsyncIterator[BrokerAddress]:
    """CI's Mosquitto when MQTT_URL is set, else an embedded broker for this test."""
    settings = MqttSettings(url=servers.mqtt_url or "", embedded_port=0)
    async with open_broker(settings) as address:
        yield address


def engine_settings(store: Store, twilio: TwilioSettings, **worker: float) -> Settings:
    """Settings for an engine under test: this test's namespace and topic prefix, fast retries."""
    base = Settings()
    return replace(
        base,
        redis=replace(base.redis, namespace=store.keys.namespace, allow_volatile=True),
        mqtt=replace(base.mqtt, topic_prefix=f"t{uuid.uuid4().hex[:10]}"),
        twilio=twilio,
        # Nothing listens on the discard port: the sandbox's receipts are refused, not sent to a stray service.
        server=replace(base.server, public_url="http://127.0.0.1:9"),
        sms=SmsSettings(rate_per_second=2000, burst=200, max_in_flight=100, timeout=5),
        worker=WorkerSettings(
            **{"backoff_base": 0.05, "backoff_max": 0.5, "visibility_timeout": 5.0, **worker}
        ),
    )
