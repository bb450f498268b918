"""A provider that fails, hangs or goes away: every resident still gets the SMS, exactly once where the
provider refused cleanly, and nothing is left ambiguous or dead-lettered (issue 10, scenarios 6 and 7)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, Rig, assert_no_loss, verdict


async def test_provider_30_percent_429_and_500(rig: Rig) -> None:
    """30 % of requests answered 429 (Retry-After 1 s) or 5xx, half each: every resident gets exactly one
    SMS and nothing is dead-lettered (retries last until the alert expires, not a fixed count)."""
    marker = "E6"
    rig.provider.sandbox.set_faults(error_rate=0.15, rate_limit_rate=0.15, retry_after=1.0)
    alert, _ = await rig.broadcaster.issue(rig.alert(marker))
    expected = rig.expected()
    rig.start_worker()
    rig.start_worker()
    await rig.settle(alert.id, within=300 if rig.scale.residents > 5_000 else 120)
    v = await verdict(rig, alert.id, marker)
    letters = await rig.broadcaster.dead_letters("sms")
    assert_no_loss(v, in_flight=0)
    per_phone = Counter(m.to for m in rig.provider.messages(marker))
    assert set(per_phone) == set(expected.values()) and max(per_phone.values()) == 1, v.summary()
    assert letters == [], f"{sum(len(d.batch.recipients) for d in letters)} dead-lettered: {v.summary()}"
    assert rig.provider.sandbox.requests > len(expected), "the faults did not bite"


async def _through_an_outage(rig: Rig, marker: str, *, fault: str) -> None:
    alert, _ = await rig.broadcaster.issue(rig.alert(marker))
    expected = len(rig.expected())
    rig.start_worker()
    rig.start_worker()
    await rig.wait_for(
        lambda: len(rig.provider.messages(marker)) >= expected // 4, 60, "the workers got going"
    )
    if fault == "hang":
        rig.provider.sandbox.set_faults(hang_rate=1.0)
        await asyncio.sleep(rig.scale.outage)
        rig.provider.sandbox.set_faults(hang_rate=0.0)
    else:
        await rig.provider.down()
        await asyncio.sleep(rig.scale.outage)
        await rig.provider.up()
    await rig.settle(alert.id, within=300)
    v = await verdict(rig, alert.id, marker)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT * 2)
    assert v.ledger["sent"] + v.ledger["delivered"] == expected, v.summary()


@pytest.mark.faults_full
async def test_provider_hangs_then_answers(rig: Rig) -> None:
    """The provider takes requests but answers none for the outage (hang_rate=1, then 0): the hung sends
    are reconciled at the provider, 0 residents stay unsent, nothing stays ambiguous."""
    await _through_an_outage(rig, "H7", fault="hang")
    assert rig.provider.sandbox.lists > 0, "no ambiguous send was looked up at the provider"


@pytest.mark.faults_full
async def test_provider_down_then_back(rig: Rig) -> None:
    """The provider stops listening for the outage and comes back on the same port: 0 residents unsent,
    nothing ambiguous, duplicates at most what was in flight when it went down."""
    await _through_an_outage(rig, "D7", fault="down")
