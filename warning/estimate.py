"""What an alert would reach before it is sent: people, phones, loudspeakers online, and how long it takes.

Counting streams the directory village by village exactly as the fan-out does (`village_batches`, as
`warning.preview` counts), so memory is bounded by one village whatever the county's size; nothing is
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
from warning.audiences.recipients import village_batches
from warning.channels.liveness import speaker_status
from warning.config import Settings
from warning.directory.store import Directory
from warning.fanout import LANGUAGES, text_field
from warning.model import Alert, Village
from warning.render.sms import sms_segments
from warning.store import Store

PHONE_CHANNELS = ("sms", "voice")
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


@dataclass
class _Tally:
    recipients: dict[str, int] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    phones: int = 0
    must_reach: int = 0
    speakers_total: int = 0
    speakers_online: int = 0


async def estimate_reach(
    alert: Alert,
    audiences: Sequence[Audience],
    texts: Mapping[str, str],
    *,
    store: Store,
    directory: Directory,
    settings: Settings,
) -> Estimate:
    """Count whom the alert would reach, village by village, without queuing anything.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    segments = _segments_of(audiences, texts)
    tally = _Tally()
    seen_contacts: set[str] = set()
    villages = await directory.village_codes(alert.areas)
    for village in villages:
        await _count_village(
            village, audiences, segments, tally, directory, settings.worker.batch_size, seen_contacts
        )
        await _count_speakers(village, tally, store, directory)
    residents = sum(counts["residents"] for counts in (await village_counts(store, villages)).values())
    shown = [*SHOWN_CHANNELS, *(c for a in audiences for c in a.channels if c not in SHOWN_CHANNELS)]
    channels = {
        name: ChannelEstimate(
            recipients=tally.recipients.get(name, 0),
            segments=tally.segments.get(name, tally.recipients.get(name, 0)),
            seconds=tally.recipients.get(name, 0) / channel_rate(settings, name),
        )
        for name in dict.fromkeys(shown)
    }
    return Estimate(
        villages=len(villages),
        residents=residents,
        must_reach=tally.must_reach,
        phones=tally.phones,
        speakers_total=tally.speakers_total,
        speakers_online=tally.speakers_online,
        channels=channels,
    )


async def _count_village(
    village: str,
    audiences: Sequence[Audience],
    segments: Mapping[tuple[str, str], int],
    tally: _Tally,
    directory: Directory,
    batch_size: int,
    seen_contacts: set[str],
) -> None:
    # As the delivery ledger would queue them: a person in two audiences gets one message per channel,
    # from the first audience; residents belong to one village, so these sets stay one village large.
    seen: dict[str, set[str]] = {}
    phones: set[str] = set()
    must: set[str] = set()
    for audience in audiences:
        async for batch in village_batches(
            directory,
            audience,
            audience.channels,
            village,
            batch_size=batch_size,
            seen_contacts=seen_contacts,
        ):
            if audience.must_reach:
                must.update(r.id for r in batch.residents)
            for channel, recipients in batch.recipients.items():
                done = seen.setdefault(channel, set())
                for r in recipients:
                    if r.id in done or not r.address:
                        continue
                    done.add(r.id)
                    tally.recipients[channel] = tally.recipients.get(channel, 0) + 1
                    if channel == "sms":
                        language = r.language if r.language in LANGUAGES else "zh-CN"
                        tally.segments["sms"] = tally.segments.get("sms", 0) + segments.get(
                            (audience.name, language), 1
                        )
                    if channel in PHONE_CHANNELS:
                        phones.add(r.address)
    tally.phones += len(phones)
    tally.must_reach += len(must)


async def _count_speakers(village: str, tally: _Tally, store: Store, directory: Directory) -> None:
    """The village's loudspeakers and how many are online now (their last status report, as the fleet shows)."""
    async for speakers in directory.stream_speakers([village]):
        status = await speaker_status(store, [s.device_id for s in speakers])
        tally.speakers_total += len(speakers)
        tally.speakers_online += sum(1 for s in speakers if status.get(s.device_id, {}).get("online"))


async def village_counts(store: Store, codes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per village: residents, must_reach (vulnerable residents) and speakers, in one round trip.

    Reads the directory's index sets (layout: warning/directory/store.py) by their cardinality.
    """
    if not codes:
        return {}
    parts = ("residents", "vulnerable", "speakers")
    async with store.redis.pipeline(transaction=False) as pipe:
        for code in codes:
            for part in parts:
                pipe.scard(store.keys.key("dir", f"v:{code}:{part}"))
        found: list[Any] = await pipe.execute()
    return {
        code: {
            "residents": int(found[i * 3]),
            "must_reach": int(found[i * 3 + 1]),
            "speakers": int(found[i * 3 + 2]),
        }
        for i, code in enumerate(codes)
    }


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
    store: Store, directory: Directory, query: str = "", *, limit: int = TREE_MAX_VILLAGES
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
    counts = await village_counts(store, [v.code for v in chosen])
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
