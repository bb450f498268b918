"""Messages to named contacts outside the audiences: task links, reminders, escalations.

Each purpose has its own ledger (`{channel}.{purpose}`, e.g. `sms.task`, `voice.esc2`), so the same
contact can get an alert's warning, its task link and each escalation step once each — and queuing
the same purpose twice (a retried sweep, a second scheduler) queues nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warning.audiences.recipients import contact_address
from warning.deliveries import Batch, Deliveries, Recipient
from warning.model import Alert, Contact


@dataclass(frozen=True, slots=True)
class Note:
    """One message to one contact: the text, and the village it concerns ("" for several)."""

    contact: Contact
    text: str
    village: str = ""


async def send_notes(
    deliveries: Deliveries, alert: Alert, purpose: str, channels: Sequence[str], notes: Sequence[Note]
) -> dict[str, int]:
    """Queue every note on every channel the contact has an address for; returns queued per ledger."""
    batches = [
        Batch(
            alert.id,
            alert.version,
            channel,
            purpose,
            note.village,
            (
                Recipient(
                    f"c:{note.contact.id}", contact_address(channel, note.contact), "zh-CN", note.text or " "
                ),
            ),
            action=purpose,
        )
        for channel in channels
        for note in notes
    ]
    queued: dict[str, int] = {}
    for start in range(0, len(batches), 500):
        for ledger, count in (
            await deliveries.enqueue_many(batches[start : start + 500], urgent=True)
        ).items():
            queued[ledger] = queued.get(ledger, 0) + count
    return queued


def names_text(names: Sequence[str], *, total: int | None = None) -> str:
    """ "张三、李四等12人" — short enough for one SMS whatever the list (`names` is a sample of `total`)."""
    total = len(names) if total is None else total
    shown = "、".join(names)
    return f"{shown}等{total}人" if total > len(names) else f"{shown}（{total}人）"
