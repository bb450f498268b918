"""Recipients of an audience in a village, streamed from the directory in batches, for every channel at once.

One pass over the directory per (audience, village) serves all of the audience's channels; each
channel takes its own address: a phone for `sms` and `voice`, the WeChat openid for `wechat`, the
WeCom userid for `wecom`, the device id for `speaker`. A member without that address is still yielded
(with an empty address) so the ledger records `no_address` and the reach ledger still counts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from warning.audiences import Audience, Members
from warning.deliveries import Recipient
from warning.directory.store import Directory
from warning.model import Contact, Resident, Speaker


@dataclass
class VillageBatch:
    """Up to `batch_size` members of one audience in one village, as recipients per channel."""

    residents: list[Resident] = field(default_factory=list)  # only for resident audiences
    recipients: dict[str, list[Recipient]] = field(default_factory=dict)


def resident_address(channel: str, resident: Resident) -> str:
    if channel in ("sms", "voice"):
        return resident.phone
    return resident.wechat_openid if channel == "wechat" else ""


def contact_address(channel: str, contact: Contact) -> str:
    if channel in ("sms", "voice"):
        return contact.phone
    return contact.wechat_userid if channel == "wecom" else ""


def _speaker_address(channel: str, speaker: Speaker) -> str:
    return speaker.device_id if channel == "speaker" else ""


async def village_batches(
    directory: Directory,
    audience: Audience,
    channels: Sequence[str],
    village: str,
    *,
    batch_size: int,
    seen_contacts: set[str],
) -> AsyncIterator[VillageBatch]:
    """Yield the audience's members in one village, at most `batch_size` at a time, for `channels`.

    Contacts who cover several villages are yielded once per alert: `seen_contacts` carries them across
    villages (a county has thousands of contacts, not millions).
    """
    if audience.members is Members.RESIDENTS:
        async for residents in directory.stream_residents(
            [village], any_tags=audience.any_tags, batch_size=batch_size
        ):
            yield VillageBatch(
                residents,
                {
                    ch: [Recipient(f"r:{r.id}", resident_address(ch, r), r.language) for r in residents]
                    for ch in channels
                },
            )
    elif audience.members is Members.SPEAKERS:
        async for speakers in directory.stream_speakers([village], batch_size=batch_size):
            yield VillageBatch(
                recipients={
                    ch: [Recipient(f"s:{s.device_id}", _speaker_address(ch, s), "zh-CN") for s in speakers]
                    for ch in channels
                }
            )
    else:
        found: list[Contact] = []
        for role in sorted(audience.roles):
            for contact in await directory.contacts_for(village, role):
                if contact.id not in seen_contacts:
                    seen_contacts.add(contact.id)
                    found.append(contact)
        for start in range(0, len(found), batch_size):
            chunk = found[start : start + batch_size]
            yield VillageBatch(
                recipients={
                    ch: [Recipient(f"c:{c.id}", contact_address(ch, c), "zh-CN") for c in chunk]
                    for ch in channels
                }
            )
