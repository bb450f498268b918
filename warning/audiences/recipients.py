"""Recipients of an audience in an area, streamed from the directory village by village, in batches."""

from __future__ import annotations

from collections.abc import AsyncIterator

from warning.audiences import Audience, Members
from warning.deliveries import Recipient
from warning.directory.store import Directory
from warning.model import Contact


def _address(channel: str, phone: str, device: str = "") -> str:
    return device if channel == "speaker" else phone


async def village_recipients(
    directory: Directory,
    audience: Audience,
    channel: str,
    village: str,
    *,
    batch_size: int,
    seen_contacts: set[str],
) -> AsyncIterator[list[Recipient]]:
    """Yield the audience's recipients in one village for one channel, at most `batch_size` at a time.

    Contacts who cover several villages are yielded once per alert: `seen_contacts` carries them across
    villages (a county has thousands of contacts, not millions).
    """
    if audience.members is Members.RESIDENTS:
        async for residents in directory.stream_residents(
            [village], any_tags=audience.any_tags, batch_size=batch_size
        ):
            yield [Recipient(f"r:{r.id}", _address(channel, r.phone), r.language) for r in residents]
    elif audience.members is Members.SPEAKERS:
        async for speakers in directory.stream_speakers([village], batch_size=batch_size):
            yield [
                Recipient(f"s:{s.device_id}", _address(channel, "", s.device_id), "zh-CN") for s in speakers
            ]
    else:
        found: list[Contact] = []
        for role in sorted(audience.roles):
            for contact in await directory.contacts_for(village, role):
                if contact.id not in seen_contacts:
                    seen_contacts.add(contact.id)
                    found.append(contact)
        for start in range(0, len(found), batch_size):
            yield [
                Recipient(f"c:{c.id}", _address(channel, c.phone), "zh-CN")
                for c in found[start : start + batch_size]
            ]
