"""Delivery under provider faults: retried until the alert expires, ambiguous sends reconciled at the
provider, a circuit breaker for a provider that fails, and cancelled alerts that never hold up the next.

Real Redis, the real twilio library over real HTTP against the Twilio sandbox; every check is made on
what the sandbox accepted (what a phone would get), not only on our own ledger.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import County, engine_settings
from tests.integration.test_broadcast import engine, orange, settle
from warning.broker import BrokerAddress
from warning.config import Settings, TwilioSettings
from warning.model import Level
from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.store import Store

VILLAGE = "331099101201"


def residents_of(county: County, area: str) -> set[str]:
    return {r["phone"] for r in county.residents if r["village"].startswith(area) and r["phone"]}


def unanswered(store: Store, twilio: TwilioSettings, *, timeout: float, reconcile_after: float) -> Settings:
    """Settings whose SMS client gives up after `timeout` (the send is then ambiguous); no breaker."""
    settings = engine_settings(store, twilio, reconcile_after=reconcile_after, breaker_failures=1000)
    return replace(settings, sms=replace(settings.sms, timeout=timeout))


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_failing_provider_is_retried_until_the_alert_expires(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Every request answered 5xx: the deliveries are retried (far beyond the old six tries) until the
    warning expires, then recorded expired. Nothing is dead-lettered, nothing reaches a phone late."""
    sandbox, twilio = twilio_sandbox
    sandbox.set_faults(error_rate=1.0)
    settings = engine_settings(
        sample_store, twilio, backoff_base=0.02, backoff_max=0.1, breaker_failures=1000
    )
    phones = residents_of(county, VILLAGE)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        expires = datetime.now(UTC) + timedelta(seconds=4)
        alert, _ = await running.broadcaster.issue(
            orange(area=VILLAGE, audiences=("public",), expires=expires)
        )
        counts = await settle(running.broadcaster, alert.id, within=30, channels=("sms",))
        letters = await running.broadcaster.dead_letters("sms")
    assert counts["sms"].get("expired") == len(phones), counts
    assert letters == []
    assert sandbox.messages == []
    # Retried many times each (six tries was the old limit), never after the end.
    assert min(sandbox.requests_by_to[p] for p in phones) > 6


async def test_flaky_provider_with_long_retry_after_still_reaches_everyone(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """30 % 429/5xx with Retry-After 1 s: every resident gets exactly one SMS and nothing is dead-lettered
    although many deliveries need more than six tries."""
    sandbox, twilio = twilio_sandbox
    sandbox.set_faults(error_rate=0.15, rate_limit_rate=0.15, retry_after=1.0)
    settings = engine_settings(sample_store, twilio)
    phones = residents_of(county, "331099101")
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(audiences=("public",)))
        counts = await settle(running.broadcaster, alert.id, within=120, channels=("sms",))
        letters = await running.broadcaster.dead_letters("sms")
    got = Counter(m.to for m in sandbox.messages)
    assert set(got) == phones and max(got.values()) == 1
    assert counts["sms"]["sent"] == len(phones) and letters == []


async def test_a_hanging_provider_is_reconciled_not_resent(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """Twilio takes every message but never answers (the client times out after writing the request):
    each send is ambiguous, is then looked up in Twilio's Message list, found, and recorded sent. Every
    resident has exactly one SMS; nothing stays ambiguous."""
    sandbox, twilio = twilio_sandbox
    sandbox.set_faults(hang_rate=1.0)
    settings = unanswered(sample_store, twilio, timeout=0.5, reconcile_after=0.5)
    phones = residents_of(county, VILLAGE)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(area=VILLAGE, audiences=("public",)))

        async def all_taken() -> bool:
            return len(sandbox.messages) >= len(phones)

        await until(all_taken, "Twilio took every message")
        sandbox.set_faults(hang_rate=0.0)  # back to answering: the lookups get through
        await settle(running.broadcaster, alert.id, within=30, channels=("sms",))

        async def reconciled() -> bool:  # ambiguous is terminal for `settle`: wait for the lookups
            _, status = await running.broadcaster.status(alert.id)
            return not status["sms"].get("ambiguous")

        await until(reconciled, "every ambiguous send was reconciled", within=10)
        _, status = await running.broadcaster.status(alert.id)
        counts = {k: dict(v.counts) for k, v in status.items()}
    got = Counter(m.to for m in sandbox.messages)
    assert set(got) == phones and max(got.values()) == 1, "an ambiguous send was resent blindly"
    assert counts["sms"].get("sent") == len(phones) and not counts["sms"].get("ambiguous"), counts
    assert sandbox.lists >= len(phones)


@pytest.mark.parametrize("message_list", [True, False], ids=["looked-up", "no-list"])
async def test_an_ambiguous_send_the_provider_never_got_is_resent_once(
    sample_store: Store, broker: BrokerAddress, county: County, message_list: bool
) -> None:
    """Requests that time out before Twilio processes them (it is slow, the client gives up after writing).
    With Twilio's Message list the lookup finds nothing; a gateway without it (404) cannot tell. Either
    way each is sent again, flagged, and every resident gets exactly one SMS."""
    sandbox = TwilioSandbox(message_list=message_list)
    sandbox.set_faults(latency=2.0)
    phones = residents_of(county, VILLAGE)
    async with run_twilio_sandbox(sandbox) as base_url:
        twilio = TwilioSettings(
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            from_number=SANDBOX_FROM,
            base_url=base_url,
        )
        # Looked up only once every send went unanswered and the gateway is quick again: without a list,
        # a resend that also went unanswered would stay ambiguous (it was resent once; nobody can tell).
        settings = unanswered(sample_store, twilio, timeout=0.3, reconcile_after=3.0)
        async with engine(settings, sample_store, broker, channels=("sms",)) as running:
            alert, _ = await running.broadcaster.issue(orange(area=VILLAGE, audiences=("public",)))

            async def counted(state: str) -> bool:
                _, status = await running.broadcaster.status(alert.id)
                return bool(status["sms"].get(state) == len(phones))

            await until(lambda: counted("ambiguous"), "every send went unanswered")
            sandbox.set_faults(latency=0.0)
            await until(lambda: counted("sent"), "every ambiguous send was resent and sent")
            await asyncio.sleep(0.5)  # a stray late resend would show now
    got = Counter(m.to for m in sandbox.messages)
    assert set(got) == phones and max(got.values()) == 1
    assert (sandbox.lists >= len(phones)) is message_list


async def test_the_breaker_opens_on_a_hanging_provider_and_closes_after(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """A provider that stops answering opens the SMS breaker (published for /readyz); while it is open
    only probes reach the provider; when the provider is back, the breaker closes and everyone is sent."""
    sandbox, twilio = twilio_sandbox
    sandbox.set_faults(error_rate=1.0)
    settings = engine_settings(
        sample_store, twilio, breaker_failures=5, breaker_open=0.5, breaker_open_max=1.0
    )
    settings = replace(settings, sms=replace(settings.sms, max_in_flight=5, burst=5))
    phones = residents_of(county, "331099101")
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        alert, _ = await running.broadcaster.issue(orange(audiences=("public",)))
        key = running.broadcaster.deliveries.keys.key("breakers")
        deadline = time.monotonic() + 10
        while True:
            states = [json.loads(v)["state"] for v in (await sample_store.redis.hgetall(key)).values()]
            if "open" in states:
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.02)
        before = sandbox.requests
        await asyncio.sleep(2.0)
        during = sandbox.requests - before
        sandbox.set_faults(error_rate=0.0)
        counts = await settle(running.broadcaster, alert.id, within=60, channels=("sms",))
        await asyncio.sleep(0.2)
        states = [json.loads(v)["state"] for v in (await sample_store.redis.hgetall(key)).values()]
    # Open 0.5–1 s at a time, one probe each time: a handful of requests in 2 s, not hundreds.
    assert during <= 6, f"{during} requests reached a failing provider while the breaker was open"
    assert states == ["closed"]
    got = Counter(m.to for m in sandbox.messages)
    assert set(got) == phones and max(got.values()) == 1
    assert counts["sms"]["sent"] == len(phones)


async def test_a_cancelled_alert_does_not_hold_up_the_next(
    sample_store: Store,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
    broker: BrokerAddress,
    county: County,
) -> None:
    """A large red alert cancelled at once is settled without spending the SMS rate: a red alert issued
    after it is sent at the rate's pace, not after the cancelled backlog has drained through the limiter."""
    sandbox, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    settings = replace(settings, sms=replace(settings.sms, rate_per_second=40, burst=10))
    big = residents_of(county, "331099")
    small = residents_of(county, VILLAGE)
    async with engine(settings, sample_store, broker, channels=("sms",)) as running:
        first, _ = await running.broadcaster.issue(
            orange(area="331099", level=Level.RED, audiences=("public",))
        )
        await running.broadcaster.cancel(first.id, silent=True)
        cancelled_at = datetime.now(UTC)
        started = time.monotonic()
        second, _ = await running.broadcaster.issue(
            orange(area=VILLAGE, level=Level.RED, audiences=("public",))
        )
        await settle(running.broadcaster, second.id, within=60, channels=("sms",))
        took = time.monotonic() - started
        counts = await settle(running.broadcaster, first.id, within=60, channels=("sms",))
    # Through the limiter the cancelled backlog alone would take len(big) / 40 s.
    assert took < len(small) / 40 + 10 < len(big) / 40, f"{took:.1f} s for the second alert"
    assert set(Counter(m.to for m in sandbox.messages if m.received and m.received > cancelled_at)) <= small
    assert counts["sms"].get("cancelled", 0) + counts["sms"].get("sent", 0) == len(big)


async def test_cancel_settles_the_cadres_task_sms_too(
    sample_store: Store, twilio_sandbox: tuple[TwilioSandbox, TwilioSettings], broker: BrokerAddress
) -> None:
    """The task SMS queued for cadres (their own ledger, `sms.task`) is cancelled with the alert, not left
    queued in the counts until a worker happens by."""
    _, twilio = twilio_sandbox
    settings = engine_settings(sample_store, twilio)
    async with engine(settings, sample_store, broker, channels=()) as running:  # no worker runs
        alert, _ = await running.broadcaster.issue(orange(area=VILLAGE))
        ledgers = await running.broadcaster.deliveries.ledgers(alert.id, alert.version)
        assert "sms.task" in ledgers
        await running.broadcaster.cancel(alert.id, silent=True)
        counts = await running.broadcaster.deliveries.counts(alert.id, alert.version, ledgers)
    assert counts["sms.task"].pending == 0 and counts["sms.task"].get("cancelled") >= 1
    assert all(c.pending == 0 for name, c in counts.items() if not name.endswith((".stop", ".clear")))
