"""Cancel and expiry in the middle of sending: nothing reaches a phone after the cancel returned or
after `expires`, and a cancelled backlog never holds up the next warning (issue 10, scenarios 8 and 9)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, Rig, assert_no_loss, verdict

VILLAGE = "331099101201"
RATE = "400"  # SMS a second, all workers: sending the county takes a while, so the race falls mid-send


async def test_cancel_mid_send_then_a_new_red_alert(rig: Rig) -> None:
    """Cancel a quarter into sending: 0 SMS accepted after the cancel returned, every unsent delivery
    cancelled; a new red alert issued right after gets its first SMS out within a few seconds."""
    marker = "C8"
    alert, _ = await rig.broadcaster.issue(rig.alert(marker))
    expected = len(rig.expected())
    rig.start_worker(sms_rate_per_second=RATE)
    rig.start_worker(sms_rate_per_second=RATE)
    await rig.wait_for(
        lambda: len(rig.provider.messages(marker)) >= expected // 4, 60, "the workers got going"
    )
    await rig.broadcaster.cancel(alert.id, silent=True)
    cancelled = datetime.now(UTC)
    started = time.monotonic()
    second, _ = await rig.broadcaster.issue(rig.alert("N8", area=VILLAGE))
    await rig.wait_for(lambda: bool(rig.provider.messages("N8")), 60, "the new alert's first SMS")
    first_sms = time.monotonic() - started
    await rig.settle(alert.id, within=60)
    await rig.settle(second.id, within=120)
    v = await verdict(rig, alert.id, marker, cutoff=cancelled)
    assert_no_loss(v, in_flight=0, cutoff_name="the cancel returned")
    assert v.ledger["cancelled"] > 0, f"cancelled too late to prove anything: {v.summary()}"
    assert set(v.ledger) <= {"sent", "delivered", "cancelled", "no_address"}, v.summary()
    assert first_sms < 5, f"the next red alert's first SMS took {first_sms:.1f} s"
    nxt = await verdict(rig, second.id, "N8", area=VILLAGE)
    assert_no_loss(nxt, in_flight=0)


@pytest.mark.faults_full
async def test_expiry_mid_send(rig: Rig) -> None:
    """An alert that expires a few seconds into sending: 0 SMS accepted after `expires`, everything
    not sent by then recorded expired, everything recorded sent is at the provider."""
    marker = "X9"
    expected = len(rig.expected())
    # At RATE a second the county takes expected / RATE seconds; it expires about a third of the way.
    expires = datetime.now(UTC) + timedelta(seconds=max(4.0, expected / int(RATE) / 3))
    alert, _ = await rig.broadcaster.issue(rig.alert(marker, expires=expires))
    rig.start_worker(sms_rate_per_second=RATE)
    rig.start_worker(sms_rate_per_second=RATE)
    await rig.settle(alert.id, within=120)
    v = await verdict(rig, alert.id, marker, cutoff=expires)
    assert_no_loss(v, in_flight=MAX_IN_FLIGHT * 2, cutoff_name="expires")
    assert v.ledger["expired"] > 0 and v.ledger["sent"] > 0, f"not a race: {v.summary()}"
    assert set(v.ledger) <= {"sent", "delivered", "expired", "no_address"}, v.summary()
