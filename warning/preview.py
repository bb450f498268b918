"""What issuing an alert would send, without sending: texts and recipient counts per audience × channel.

Counting streams the directory village by village exactly as the fan-out does (`village_batches`), so
memory is bounded by one village; a person in two audiences is counted once per channel, for the first
audience, as the delivery ledger would queue them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from warning.audiences import Audience
from warning.audiences.recipients import village_batches
from warning.directory.store import Directory
from warning.errors import MissingField
from warning.fanout import LANGUAGES, text_field
from warning.i18n import t
from warning.model import Alert
from warning.render.sms import sms_segments

PHONE_CHANNELS = ("sms", "voice")  # the lanes that call a phone number


def require_text(headline: str, instruction: str) -> None:
    """Refuse an alert that would go out without a headline or an instruction (blank counts as missing).

    Raises:
        MissingField: naming `headline` or `instruction`, with what to write.
    """
    if not headline.strip():
        raise MissingField(
            t(
                "缺少预警标题（--headline），如 “台风今夜登陆”",
                'the headline is missing (--headline), e.g. "Typhoon makes landfall tonight"',
            ),
            field="headline",
        )
    if not instruction.strip():
        raise MissingField(
            t(
                "缺少防御指引（--instruction），写明群众该做什么，如 “请低洼地区群众立即转移到村委会”",
                "the instruction is missing (--instruction): say what people must do, e.g. "
                '"Residents of low-lying areas: move to the village committee now"',
            ),
            field="instruction",
        )


@dataclass(frozen=True)
class PreviewText:
    """One language's text of an audience × channel; `segments`/`encoding` for SMS only."""

    language: str
    text: str
    recipients: int  # of the row's recipients, those who get this language
    segments: int | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class PreviewRow:
    """One audience × channel: who would get it, who lacks an address, and the texts per language."""

    audience: str
    channel: str
    recipients: int
    no_address: int
    texts: tuple[PreviewText, ...]
    segments: int = 1  # SMS: segments of the zh-CN text (the longest a recipient of this row gets)
    encoding: str = ""


@dataclass(frozen=True)
class DistinctText:
    """One distinct text and the audience × channel rows that send it."""

    language: str
    text: str
    used_by: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Preview:
    """The alert as it would be issued (not saved) and what it would send."""

    alert: Alert
    villages: int
    rows: tuple[PreviewRow, ...]
    area_names: tuple[str, ...] = ()
    people: int = 0  # distinct recipients (people or loudspeakers) over every channel

    @property
    def texts(self) -> tuple[DistinctText, ...]:
        """Every distinct text once, zh-CN first, with the rows that send it."""
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for language in LANGUAGES:
            for row in self.rows:
                for text in row.texts:
                    if text.language == language and text.text:
                        found.setdefault((language, text.text), []).append((row.audience, row.channel))
        return tuple(DistinctText(lang, text, tuple(used)) for (lang, text), used in found.items())

    @property
    def recipients(self) -> int:
        return sum(r.recipients for r in self.rows)

    @property
    def no_address(self) -> int:
        return sum(r.no_address for r in self.rows)


@dataclass
class Counts:
    """Recipient counts keyed by (audience, channel), and per language of those with an address."""

    villages: int = 0
    people: int = 0
    must_reach: int = 0  # residents of the must-reach audiences (cadres confirm each of them)
    phones: int = 0  # distinct numbers the SMS and voice lanes would call (once per village)
    queued: dict[tuple[str, str], int] = field(default_factory=dict)
    no_address: dict[tuple[str, str], int] = field(default_factory=dict)
    languages: dict[tuple[str, str, str], int] = field(default_factory=dict)


def _text_language(language: str) -> str:
    # Texts.get falls back to zh-CN for a language nothing was rendered in.
    return language if language in LANGUAGES else "zh-CN"


async def count_recipients(
    alert: Alert, audiences: Sequence[Audience], directory: Directory, *, batch_size: int
) -> Counts:
    """Count, without queuing, whom the fan-out would queue (or record as no_address) per audience × channel."""
    counts = Counts()
    seen_contacts: set[str] = set()
    villages = await directory.village_codes(alert.areas)
    for village in villages:
        # The ledger is per channel, so a resident already counted on a channel by an earlier audience
        # is not queued again; residents and speakers belong to one village, so this set stays small.
        seen: dict[str, set[str]] = {}
        everyone: set[str] = set()
        must: set[str] = set()
        phones: set[str] = set()  # a household shares one; a number shared across villages counts in each
        for audience in audiences:
            async for members in village_batches(
                directory,
                audience,
                audience.channels,
                village,
                batch_size=batch_size,
                seen_contacts=seen_contacts,
            ):
                if audience.must_reach:
                    must.update(r.id for r in members.residents)
                for channel, recipients in members.recipients.items():
                    done = seen.setdefault(channel, set())
                    key = (audience.name, channel)
                    for r in recipients:
                        if r.id in done:
                            continue
                        done.add(r.id)
                        everyone.add(r.id)
                        if r.address:
                            if channel in PHONE_CHANNELS:
                                phones.add(r.address)
                            counts.queued[key] = counts.queued.get(key, 0) + 1
                            lang = (audience.name, channel, _text_language(r.language))
                            counts.languages[lang] = counts.languages.get(lang, 0) + 1
                        else:
                            counts.no_address[key] = counts.no_address.get(key, 0) + 1
        # Contacts are yielded once per alert, so counting per village never counts anyone twice.
        counts.people += len(everyone)
        counts.must_reach += len(must)
        counts.phones += len(phones)
    counts.villages = len(villages)
    return counts


def preview_rows(
    audiences: Sequence[Audience], texts: Mapping[str, str], counts: Counts
) -> tuple[PreviewRow, ...]:
    """The rows of a preview, in audience then channel order, zh-CN text first."""
    rows = []
    for audience in audiences:
        for channel in audience.channels:
            row_texts = []
            for language in LANGUAGES:
                text = texts.get(text_field(audience.name, channel, language), "")
                segments = sms_segments(text) if channel == "sms" else None
                row_texts.append(
                    PreviewText(
                        language=language,
                        text=text,
                        recipients=counts.languages.get((audience.name, channel, language), 0),
                        segments=segments.count if segments else None,
                        encoding=segments.encoding if segments else None,
                    )
                )
            rows.append(
                PreviewRow(
                    audience=audience.name,
                    channel=channel,
                    recipients=counts.queued.get((audience.name, channel), 0),
                    no_address=counts.no_address.get((audience.name, channel), 0),
                    texts=tuple(row_texts),
                    segments=row_texts[0].segments or 1,
                    encoding=row_texts[0].encoding or "",
                )
            )
    return tuple(rows)
