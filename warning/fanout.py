"""Fan-out: an issued alert → rendered texts → batches of recipients queued per channel.

Texts are rendered once per (alert, audience, channel, language) and stored beside the alert; only a
template that asks for personal fields is rendered per recipient. Recipients stream from the directory
village by village, so the issuing process's memory does not grow with the county. Queuing is
idempotent (see deliveries.py): a fan-out interrupted half-way is simply run again. Each run holds the
fan-out's lease (fanout_lease.py), so a crashed run is resumed in seconds and two never run at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from warning.audiences import Audience
from warning.audiences.recipients import village_batches
from warning.deliveries import Batch, Deliveries, Recipient
from warning.directory.store import Directory
from warning.fanout_lease import FanoutLease, FanoutLeases, fanout_marker
from warning.model import Alert, AlertState
from warning.reach import Reach
from warning.store import Keyspace
from warning.tasks import Responsible

if TYPE_CHECKING:  # the renderer (jinja2) is loaded by those who render, not by readers of Texts
    from warning.render.renderer import Renderer

log = logging.getLogger(__name__)

LANGUAGES = ("zh-CN", "en")
# The pseudo-audience whose texts are an alert's all-clear (templates/allclear/), sent on cancel.
ALL_CLEAR = "allclear"
ALL_CLEAR_ACTION = "clear"  # the batch action (and `{channel}.clear` ledger) of all-clear messages

Progress = Callable[[int, int], None]


def text_field(audience: str, channel: str, language: str) -> str:
    return f"{audience}|{channel}|{language}"


class Texts:
    """Rendered texts of alert versions, stored in Redis and cached in each worker."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._cache: dict[tuple[str, int, str], str] = {}

    def key(self, alert_id: str, version: int) -> str:
        return self.keys.key("alert", alert_id, f"v{version}", "text")

    async def store(self, alert: Alert, texts: dict[str, str]) -> None:
        if texts:
            await self.redis.hset(self.key(alert.id, alert.version), mapping=texts)  # type: ignore[arg-type]

    async def all(self, alert_id: str, version: int) -> dict[str, str]:
        """Every stored text of a version, by field `audience|channel|language` (for the report)."""
        stored = await self.redis.hgetall(self.key(alert_id, version))
        return {str(k): str(v) for k, v in stored.items()}

    async def get(self, alert_id: str, version: int, audience: str, channel: str, language: str) -> str:
        """The text for a recipient's language, falling back to zh-CN."""
        for lang in dict.fromkeys((language, "zh-CN")):
            name = text_field(audience, channel, lang)
            cached = self._cache.get((alert_id, version, name))
            if cached is not None:
                return cached
            raw = await self.redis.hget(self.key(alert_id, version), name)
            if raw is not None:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[(alert_id, version, name)] = str(raw)
                return str(raw)
        return ""


@dataclass
class FanoutReport:
    villages: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    no_address: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False  # the alert was cancelled or expired, or the run was `superseded`
    superseded: bool = False  # another process holds (or took over) this fan-out's lease and finishes it

    def add(self, ledger: str, queued: int, skipped: int) -> None:
        self.queued[ledger] = self.queued.get(ledger, 0) + queued
        self.no_address[ledger] = self.no_address.get(ledger, 0) + skipped


async def mark_pending(
    deliveries: Deliveries, alert: Alert, action: str = "play", *, leases: FanoutLeases | None = None
) -> str:
    """Note, before an alert is saved as issued, that its fan-out is due; returns the marker.

    The issuer's own `fan_out` then takes the marker's lease within milliseconds; if the issuer dies first,
    housekeeping resumes the marker once its grace (`LeaseTiming.grace` of `leases`) has passed.
    """
    marker = fanout_marker(alert.id, alert.version, action)
    await (leases or FanoutLeases(deliveries.redis, deliveries.keys)).mark(marker)
    return marker


async def render_all(
    alert: Alert,
    audiences: Sequence[Audience],
    renderer: Renderer,
    *,
    area_names: Sequence[str],
    max_segments: int,
    previous: Alert | None = None,
) -> dict[str, str]:
    """Render every (audience, channel, language) once; fails the issue (RenderError) if any is invalid.

    For an update, `previous` is the version people already got, so each message says what changed.
    """
    pairs = [(a.name, channel) for a in audiences for channel in a.channels]
    rendered = renderer.check(
        alert, pairs, LANGUAGES, area_names=area_names, max_segments=max_segments, previous=previous
    )
    return {text_field(audience, channel, lang): r.text for audience, channel, lang, r in rendered}


async def fan_out(
    alert: Alert,
    audiences: Sequence[Audience],
    *,
    directory: Directory,
    deliveries: Deliveries,
    renderer: Renderer,
    batch_size: int,
    action: str = "play",
    progress: Progress | None = None,
    reach: Reach | None = None,
    lease: FanoutLease | None = None,
    leases: FanoutLeases | None = None,
) -> FanoutReport:
    """Queue the alert for every recipient of `audiences` in its areas; safe to run again after a crash.

    With `reach`, every resident queued for is entered in the reach ledger (and must-reach residents on
    their cadre's task list) before their messages are queued.

    The run holds the fan-out's lease: `lease` if the caller already holds it (a resumer, the all-clear),
    which then also finishes it; else one taken here from `leases` and finished when every village is
    queued. If another process holds the lease, or takes it over half-way, this run stops queuing and
    reports `superseded`: that process finishes the job.
    """
    if lease is not None:
        return await _queue_villages(
            alert, audiences, directory, deliveries, renderer, batch_size, action, progress, reach, lease
        )
    leases = leases or FanoutLeases(deliveries.redis, deliveries.keys)
    async with leases.take(fanout_marker(alert.id, alert.version, action)) as taken:
        if taken is None:
            log.info(
                "fan-out already running in another process",
                extra={"alert": alert.id, "version": alert.version, "action": action},
            )
            return FanoutReport(stopped_early=True, superseded=True)
        report = await _queue_villages(
            alert, audiences, directory, deliveries, renderer, batch_size, action, progress, reach, taken
        )
        if not report.superseded:
            await taken.finish()
    return report


async def _queue_villages(
    alert: Alert,
    audiences: Sequence[Audience],
    directory: Directory,
    deliveries: Deliveries,
    renderer: Renderer,
    batch_size: int,
    action: str,
    progress: Progress | None,
    reach: Reach | None,
    lease: FanoutLease,
) -> FanoutReport:
    report = FanoutReport()
    villages = await directory.village_codes(alert.areas)
    seen_contacts: set[str] = set()
    responsible = Responsible(directory)
    if reach is not None and action == "play":
        await reach.milestone(alert.id, "issued")
    for index, village in enumerate(villages, start=1):
        if action == "play" and await _stopped(deliveries, alert):
            report.stopped_early = True
            break
        for audience in audiences:
            personal = {
                channel: action == "play"
                and any(renderer.needs_recipient(audience.name, channel, lang) for lang in LANGUAGES)
                for channel in audience.channels
            }
            async for members in village_batches(
                directory,
                audience,
                audience.channels,
                village,
                batch_size=batch_size,
                seen_contacts=seen_contacts,
            ):
                batches = []
                for channel, recipients in members.recipients.items():
                    if personal[channel]:
                        recipients = await _personalise(
                            alert, audience, channel, recipients, renderer, directory
                        )
                    batches.append(
                        Batch(
                            alert.id,
                            alert.version,
                            channel,
                            audience.name,
                            village,
                            tuple(recipients),
                            action=action,
                        )
                    )
                if not await lease.held():
                    return _superseded(report, alert, action)
                # One round trip per batch of members: the reach ledger and every channel's queue.
                async with deliveries.redis.pipeline(transaction=False) as pipe:
                    if reach is not None and members.residents and action == "play":
                        owners = [
                            (
                                r.id,
                                await responsible.for_resident(r.cadre, village)
                                if audience.must_reach
                                else r.cadre,
                            )
                            for r in members.residents
                        ]
                        await reach.register(
                            alert.id, audience.name, village, audience.must_reach, owners, client=pipe
                        )
                    for batch in batches:
                        await deliveries.enqueue_on(
                            pipe, batch, urgent=alert.level.urgent or action != "play"
                        )
                    results = await pipe.execute()
                for batch, (queued, skipped) in zip(
                    batches, results[len(results) - len(batches) :], strict=True
                ):
                    report.add(batch.ledger, int(queued), int(skipped))
        report.villages = index
        if progress is not None:
            progress(index, len(villages))
    log.info(
        "fan-out done",
        extra={
            "alert": alert.id,
            "version": alert.version,
            "action": action,
            "villages": report.villages,
            "queued": report.queued,
        },
    )
    return report


def _superseded(report: FanoutReport, alert: Alert, action: str) -> FanoutReport:
    log.warning(
        "fan-out handed over: another process holds its lease now and finishes it",
        extra={"alert": alert.id, "version": alert.version, "action": action, "villages": report.villages},
    )
    report.stopped_early = report.superseded = True
    return report


async def _stopped(deliveries: Deliveries, alert: Alert) -> bool:
    state = await deliveries.redis.hget(deliveries.control_key(alert.id), "state")
    return state is not None and str(state) != AlertState.ISSUED.value


async def _personalise(
    alert: Alert,
    audience: Audience,
    channel: str,
    recipients: list[Recipient],
    renderer: Renderer,
    directory: Directory,
) -> list[Recipient]:
    """Render per recipient, only for templates that use personal fields."""
    out = []
    for r in recipients:
        kind, _, ident = r.id.partition(":")
        person = await (directory.resident(ident) if kind == "r" else directory.contact(ident))
        fields = {"id": ident, "name": person.name if person else ""}
        text = renderer.render(alert, audience.name, channel, r.language, recipient=fields).text
        out.append(Recipient(r.id, r.address, r.language, text))
    return out
