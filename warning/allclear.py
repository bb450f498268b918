"""The all-clear (解除) of a cancelled alert: to everyone it was sent to, on the channels they got it on.

Who: every recipient whose delivery of any version of the alert was sent, delivered, ambiguous or in
flight on a person channel (sms, voice, wechat, wecom): they may have read the warning, so they must read
that it is over. Someone whose message was still queued at the cancel never got the warning and gets no
all-clear. Loudspeakers are a broadcast to the whole village, so every loudspeaker of the area plays the
all-clear (it replaces the `stop` a silent cancel sends).

How: the state hashes are scanned in bounded pages (HSCAN), the addresses re-read from the directory in
batches, and the all-clear queued in the `{channel}.clear` ledger of the current version, where HSETNX
makes it at most one per recipient and channel however often this runs (a crashed cancel is resumed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from warning.audiences.recipients import contact_address, resident_address
from warning.deliveries import Batch, Deliveries, Recipient
from warning.directory.store import Directory
from warning.fanout import ALL_CLEAR, ALL_CLEAR_ACTION
from warning.model import Alert

log = logging.getLogger(__name__)

PERSON_CHANNELS = ("sms", "voice", "wechat", "wecom")
GOT_IT = frozenset("sSDA")  # in flight, sent, delivered, ambiguous: the warning may have been read
CLEAR_WINDOW = 6 * 3600.0  # seconds after the cancel during which an all-clear may still be sent
_PAGE = 1000


async def _got_it(deliveries: Deliveries, alert: Alert, channel: str) -> list[str]:
    """Recipient ids that were sent any version of the alert on `channel`, each once, in scan order."""
    seen: dict[str, None] = {}
    for version in range(1, alert.version + 1):
        key = deliveries.states_key(alert.id, version, channel)
        cursor = 0
        while True:
            scanned: Any = await deliveries.redis.hscan(key, cursor, count=_PAGE)
            cursor, fields = scanned
            for rid, state in fields.items():
                if str(state) in GOT_IT:
                    seen[str(rid)] = None
            if cursor == 0:
                break
    return list(seen)


async def _recipients(directory: Directory, channel: str, ids: Sequence[str]) -> list[Recipient]:
    residents = await directory.residents([i[2:] for i in ids if i.startswith("r:")])
    contacts = await directory.contacts([i[2:] for i in ids if i.startswith("c:")])
    out = []
    for rid in ids:
        kind, ident = rid[:2], rid[2:]
        if kind == "r:" and (resident := residents.get(ident)) is not None:
            out.append(Recipient(rid, resident_address(channel, resident), resident.language))
        elif kind == "c:" and (contact := contacts.get(ident)) is not None:
            out.append(Recipient(rid, contact_address(channel, contact), "zh-CN"))
    return out


async def queue_person_all_clear(
    alert: Alert, channels: Sequence[str], *, directory: Directory, deliveries: Deliveries, batch_size: int
) -> dict[str, int]:
    """Queue the all-clear for everyone who was sent the alert on each person channel; queued per channel.

    A recipient removed from the directory since is skipped; one without the address now is recorded
    as no_address.
    """
    queued: dict[str, int] = {}
    for channel in (c for c in channels if c in PERSON_CHANNELS):
        ids = await _got_it(deliveries, alert, channel)
        for start in range(0, len(ids), batch_size):
            recipients = await _recipients(directory, channel, ids[start : start + batch_size])
            if not recipients:
                continue
            batch = Batch(
                alert.id, alert.version, channel, ALL_CLEAR, "", tuple(recipients), action=ALL_CLEAR_ACTION
            )
            async with deliveries.redis.pipeline(transaction=False) as pipe:
                await deliveries.enqueue_on(pipe, batch, urgent=True)
                (count, _), *_ = await pipe.execute()
            queued[channel] = queued.get(channel, 0) + int(count)
        if len(ids) and channel not in queued:
            log.warning("all-clear: nobody left to send to", extra={"alert": alert.id, "channel": channel})
    return queued
