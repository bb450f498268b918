"""What an alert would reach before it is sent: people, phones, loudspeakers online, and how long it takes.

The recipients are counted once, by the preview's `count_recipients` (streaming the directory village
by village exactly as the fan-out does), so memory is bounded by one village whatever the county's size; nothing is
saved or queued. A phone number is counted once per village (a household shares one; a number shared
across villages is counted in each). Expected seconds are the time to the last first attempt at the
configured provider rates: channels send side by side, so the alert's time is its slowest channel's.

Also the directory's per-village counts (residents, must-reach, loudspeakers) for the area picker,
read from the directory's index sets (SCARD), never by scanning records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warning.audiences import Audience
from warning.channels.liveness import speaker_status
from warning.config import Settings
from warning.directory.store import Directory
from warning.fanout import LANGUAGES, text_field
from warning.model import Alert, Village
from warning.preview import Counts
from warning.render.sms import sms_segments
from warning.store import Store

SHOWN_CHANNELS = ("sms", "voice", "wechat", "speaker")  # always in the answer, even at 0
TREE_MAX_VILLAGES = 5000  # villages one directory tree answer lists at most (a county has hundreds)


@dataclass(frozen=True)
class ChannelEstimate:
    """One channel: messages it would send, SMS segments in all (one a message elsewhere), and seconds."""

    recipients: int
    segments: int
    seconds: float


@dataclass(frozen=True)
class Estimate:
    """The reach of an alert before it is sent."""

    villages: int
    residents: int  # everyone living in the areas
    must_reach: int  # residents of the alert's must-reach audiences (cadres confirm each of them)
    phones: int  # distinct numbers the SMS and voice lanes would call
    speakers_total: int
    speakers_online: int
    channels: Mapping[str, ChannelEstimate] = field(default_factory=dict)

    @property
    def expected_seconds(self) -> float:
        return max((c.seconds for c in self.channels.values()), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "villages": self.villages,
            "residents": self.residents,
            "must_reach": self.must_reach,
            "phones": self.phones,
            "speakers": {"total": self.speakers_total, "online": self.speakers_online},
            "channels": {
                name: {"recipients": c.recipients, "segments": c.segments, "seconds": round(c.seconds, 1)}
                for name, c in self.channels.items()
            },
            "expected_seconds": round(self.expected_seconds, 1),
        }


def channel_rate(settings: Settings, channel: str) -> float:
    """Messages a second the channel sends at across every worker (its configured provider rate)."""
    rates = {
        "sms": settings.sms.rate_per_second,
        "voice": settings.voice.rate_per_second,
        "wechat": settings.wechat.rate_per_second,
        "wecom": settings.wecom.rate_per_second,
        "speaker": settings.speaker.rate_per_second,
    }
    return rates.get(channel, settings.sms.rate_per_second)


def _segments_of(audiences: Sequence[Audience], texts: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """SMS segments per (audience, language) of the rendered texts."""
    return {
        (a.name, lang): sms_segments(texts.get(text_field(a.name, "sms", lang), "")).count
        for a in audiences
        if "sms" in a.channels
        for lang in LANGUAGES
    }


async def estimate_reach(
    alert: Alert,
    audiences: Sequence[Audience],
    texts: Mapping[str, str],
    counts: Counts,
    *,
    store: Store,
    directory: Directory,
    settings: Settings,
) -> Estimate:
    """The reach of an alert from the preview's recipient counts (warning.preview `count_recipients`,
    which walks the directory as the fan-out would), the directory's per-village counters and the
    loudspeakers' liveness; nothing is queued.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    villages = await directory.village_codes(alert.areas)
    segments = _segments_of(audiences, texts)
    recipients: dict[str, int] = {}
    for (_, channel), n in counts.queued.items():
        recipients[channel] = recipients.get(channel, 0) + n
    sms_segments_total = sum(
        n * segments.get((audience, language), 1)
        for (audience, channel, language), n in counts.languages.items()
        if channel == "sms"
    )
    speaker_ids = [d for ids in (await directory.speaker_ids(villages)).values() for d in ids]
    status = await speaker_status(store, speaker_ids)
    residents = sum(c["residents"] for c in (await directory.village_counts(villages)).values())
    shown = [*SHOWN_CHANNELS, *(c for a in audiences for c in a.channels if c not in SHOWN_CHANNELS)]
    channels = {
        name: ChannelEstimate(
            recipients=recipients.get(name, 0),
            segments=sms_segments_total if name == "sms" else recipients.get(name, 0),
            seconds=recipients.get(name, 0) / channel_rate(settings, name),
        )
        for name in dict.fromkeys(shown)
    }
    return Estimate(
        villages=len(villages),
        residents=residents,
        must_reach=counts.must_reach,
        phones=counts.phones,
        speakers_total=len(speaker_ids),
        speakers_online=sum(1 for d in speaker_ids if status.get(d, {}).get("online")),
        channels=channels,
    )


@dataclass(frozen=True)
class VillageTree:
    """Townships → villages matching a search, with their counts; `truncated` when the answer was cut."""

    townships: list[dict[str, Any]]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"townships": self.townships, "truncated": self.truncated}


def _matches(village: Village, query: str) -> bool:
    if not query:
        return True
    return any(query in text.casefold() for text in (village.name, village.township, village.code))


async def village_tree(
    directory: Directory, query: str = "", *, limit: int = TREE_MAX_VILLAGES
) -> VillageTree:
    """The directory's townships and villages, those whose name, township name or code contains `query`
    (case-folded), at most `limit` villages, in code order.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    needle = query.strip().casefold()
    chosen = [v for v in await directory.villages(await directory.village_codes()) if _matches(v, needle)]
    truncated = len(chosen) > limit
    chosen = chosen[:limit]
    counts = await directory.village_counts([v.code for v in chosen])
    townships: dict[str, dict[str, Any]] = {}
    for village in chosen:
        township = townships.setdefault(
            village.township_code,
            {"code": village.township_code, "name": village.township, "villages": []},
        )
        township["villages"].append(
            {"code": village.code, "name": village.name, "lat": village.lat, "lon": village.lon}
            | counts[village.code]
        )
    return VillageTree(list(townships.values()), truncated)
