"""Issuing and cancelling warnings: validate, render, save, fan out, audit (used by the CLI and the API)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from warning.alerts import new_alert_id
from warning.allclear import CLEAR_WINDOW, queue_person_all_clear
from warning.approval import (
    Move,
    Moves,
    Proposal,
    Proposals,
    check_approver,
    check_proposal_approver,
    require_reason,
)
from warning.approval import needs_approval as rule_applies
from warning.audiences import DEFAULT_AUDIENCES, Audience, Members, select
from warning.cap import CapAlert, parse_cap
from warning.cap.emit import cap_identifier, cap_time, emit_cap
from warning.cap.mapping import MappedAlert, map_cap
from warning.config import Settings
from warning.deliveries import CODES, Batch
from warning.errors import AlertError, AlertNotFound, UsageError
from warning.estimate import Estimate, estimate_reach
from warning.fanout import (
    ALL_CLEAR,
    ALL_CLEAR_ACTION,
    LANGUAGES,
    FanoutReport,
    Progress,
    fan_out,
    mark_pending,
    render_all,
    text_field,
)
from warning.fanout_lease import FanoutLease, FanoutLeases, fanout_marker
from warning.i18n import current_language, t
from warning.model import Alert, AlertState, AlertStatus, Level
from warning.preview import Preview, count_recipients, preview_rows, require_text
from warning.readmodel import ReadModel
from warning.render.renderer import Renderer
from warning.store import Store

log = logging.getLogger(__name__)
CANCEL_WAIT = 10.0  # seconds a cancel waits for another decision on the alert (an approval) to end

_AREA = re.compile(r"^\d{6}(\d{3}){0,2}$")
STOP_AUDIENCE = "speakers"


@dataclass(frozen=True)
class CapOutcome:
    """What a CAP message did: `issued` (fan-out still to run), `pending_approval`, `updated`, `cancelled`
    or `draft`."""

    action: str
    alert: Alert


@dataclass(frozen=True)
class CancelOutcome:
    """A cancel: the alert, the all-clear messages queued per channel, and whether it was cancelled before."""

    alert: Alert
    all_clear: dict[str, int]
    again: bool = False


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    batch: Batch
    reason: str


@dataclass(frozen=True)
class AlertRequest:
    """What an operator asks for; everything else is filled in."""

    event: str
    level: Level
    areas: tuple[str, ...]
    headline: str = ""
    description: str = ""
    instruction: str = ""
    expires: datetime | None = None
    exercise: bool = False
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    event_code: str = ""
    sender: str = ""
    id: str = ""  # given: re-issuing the same id is idempotent


class Broadcaster(ReadModel):
    """The alert service: one instance per process, built by the composition root."""

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings)
        self.renderer = Renderer(settings.templates, sender_name=settings.bureau.name)
        self.fanout_leases = FanoutLeases(store.redis, store.keys)
        self._moves = Moves(store.redis, store.keys)
        self._proposals = Proposals(store.redis, store.keys)

    # -- issuing ------------------------------------------------------------------------------------

    async def _validate(self, request: AlertRequest, now: datetime, *, sent: bool = True) -> list[Audience]:
        """The request's audiences; `sent` (Actual/Exercise going out) also needs headline and instruction.

        Raises:
            MissingField: a sent alert without a headline or an instruction (blank counts as missing).
            UsageError: any other invalid field.
        """
        if sent:
            require_text(request.headline, request.instruction)
        if not request.event.strip():
            raise UsageError(
                t("缺少预警事件名称（--event），如 台风", "the event is missing (--event), e.g. Typhoon")
            )
        if not request.areas:
            raise UsageError(
                t("缺少预警区域（--area），如 331099101", "no area given (--area), e.g. 331099101")
            )
        for area in request.areas:
            if not _AREA.match(area):
                raise UsageError(
                    t(
                        "区域代码 {a} 无效：应为6位（县）、9位（乡镇）或12位（村）数字",
                        "area code {a} is invalid: use 6 (county), 9 (township) or 12 (village) digits",
                        a=area,
                    )
                )
            if not await self.directory.village_codes([area]):
                raise UsageError(
                    t(
                        "区域 {a} 下名录中没有任何村庄：请检查代码或先导入名录",
                        "no village of the directory lies in area {a}: check the code or import the "
                        "directory first",
                        a=area,
                    )
                )
        if request.expires is not None:
            if request.expires.tzinfo is None:
                raise UsageError(
                    t(
                        "失效时间需带时区，如 2026-08-01T12:00:00+08:00",
                        "expires needs a time zone, e.g. 2026-08-01T12:00:00+08:00",
                    )
                )
            if request.expires <= now:
                raise UsageError(
                    t("失效时间 {e} 已过", "expires {e} is in the past", e=request.expires.isoformat())
                )
        return select(request.audiences, self.audiences)

    async def issue(
        self,
        request: AlertRequest,
        *,
        actor: str = "cli",
        role: str = "operator",
        progress: Progress | None = None,
    ) -> tuple[Alert, FanoutReport]:
        """Prepare the alert, then queue every delivery (see `prepare` and `fan_out`).

        Raises:
            UsageError: invalid request (message says what to fix), including RenderError.
            AlertError: the id exists and is no longer issued (cancelled or expired).
        """
        alert = await self.prepare(request, actor=actor, role=role)
        return alert, await self.fan_out(alert, progress=progress)

    async def fan_out(
        self, alert: Alert, *, progress: Progress | None = None, lease: FanoutLease | None = None
    ) -> FanoutReport:
        """Queue every delivery of an issued alert, then the cadres' task links and the escalation
        ladder for its must-reach residents; idempotent, so safe to repeat after a crash. `lease`: the
        fan-out's lease when the caller (a resumer) holds it already."""
        report = await fan_out(
            alert,
            select(alert.audiences, self.audiences),
            directory=self.directory,
            deliveries=self.deliveries,
            renderer=self.renderer,
            batch_size=self.settings.worker.batch_size,
            progress=progress,
            reach=self.reach,
            lease=lease,
            leases=self.fanout_leases,
        )
        if not report.stopped_early:
            await self.reach.registered(alert.id)
            await self.tasks.send_links(alert)
            await self.escalation.schedule(alert)
            if "speaker" in report.queued or "speaker" in report.no_address:
                async for speakers in self.directory.stream_speakers(alert.areas):
                    await self.escalation.watch_speakers(alert, [(s.device_id, s.village) for s in speakers])
        return report

    async def prepare(self, request: AlertRequest, *, actor: str = "cli", role: str = "operator") -> Alert:
        """Validate, render every message once and save the alert as issued, marked for fan-out.

        Re-issuing an existing id changes nothing and queues nothing new (deliveries are idempotent).

        Raises:
            UsageError: invalid request (message says what to fix), including RenderError.
            AlertError: the id exists and is no longer issued (cancelled or expired).
        """
        now = datetime.now(UTC)
        audiences = await self._validate(request, now)
        existing = await self.alerts.find(request.id) if request.id else None
        if existing is not None:
            if existing.state is not AlertState.ISSUED:
                raise _cannot(existing, "再次发布", "issued again")
            alert = existing
        else:
            alert = self._draft(request, audiences, now)
        names = await self._area_names(alert)
        texts = await render_all(
            alert, audiences, self.renderer, area_names=names, max_segments=self.settings.sms.max_segments
        )
        await self.texts.store(alert, texts)
        # Marked before it is issued: if this process dies now, another resumes the fan-out.
        await mark_pending(self.deliveries, alert, leases=self.fanout_leases)
        if existing is None:
            alert = replace(alert, state=AlertState.ISSUED)
            await self.alerts.save(alert)
            await self._record(alert, "issue", actor=actor, role=role, detail=_summary(alert))
        return alert

    async def update(
        self,
        alert_id: str,
        request: AlertRequest,
        *,
        actor: str = "cli",
        role: str = "operator",
        references: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> tuple[Alert, FanoutReport]:
        """Replace an issued alert with a new version (see `prepare_update`) and queue it (`fan_out`): the
        CLI's and the CAP feeds' update, which the two-person rule does not hold (see `propose_update`).

        Raises:
            AlertNotFound, AlertError, UsageError: as `prepare_update`.
        """
        alert = await self.prepare_update(alert_id, request, actor=actor, role=role, references=references)
        return alert, await self.fan_out(alert, progress=progress)

    async def prepare_update(
        self,
        alert_id: str,
        request: AlertRequest,
        *,
        actor: str = "cli",
        role: str = "operator",
        references: tuple[str, ...] = (),
    ) -> Alert:
        """Replace an issued alert with a new version, marked for fan-out (the caller starts `fan_out`):
        what is still pending of the old one is cancelled, and everyone in the (new) area will get the new
        message, saying what changed. An update waiting for approval is dropped (this one supersedes it).

        Raises:
            AlertNotFound: unknown id.
            AlertError: the alert is not issued (cancelled, expired, draft), or someone is deciding on it.
            UsageError: invalid request, including RenderError.
        """
        async with self._moves.deciding(alert_id):
            alert, previous = await self._apply_update(
                alert_id, request, actor=actor, role=role, references=references
            )
        await self._settle_pending(previous, CODES["cancelled"])
        return alert

    async def propose_update(self, alert_id: str, request: AlertRequest, *, actor: str, role: str) -> Alert:
        """An operator's update through the console or the API, under the two-person rule judged on the
        NEW level (and the alert's own kind: an Actual alert stays under the rule even if the update says
        exercise). Below the rule it is `prepare_update` (the new version, marked for fan-out: the caller
        starts `fan_out`). Otherwise the issued version stays as it is, still going out, and the update is
        kept as the alert's proposal (rendered, so the approver sees its exact texts) until another
        approver approves it; a second proposal replaces the first. Returns the alert: its new version, or
        the unchanged one while the proposal waits (then `proposal(alert_id)` is that proposal).

        Raises:
            AlertNotFound, AlertError, MissingField, UsageError: as `prepare_update`.
        """
        previous = await self.alerts.get(alert_id)
        if previous.state is not AlertState.ISSUED:
            raise _cannot(previous, "更新", "updated")
        if not self._update_needs_approval(previous, request):
            return await self.prepare_update(alert_id, request, actor=actor, role=role)
        async with self._moves.deciding(alert_id):
            previous = await self.alerts.get(alert_id)
            if previous.state is not AlertState.ISSUED:
                raise _cannot(previous, "更新", "updated")
            now = datetime.now(UTC)
            audiences = await self._validate(request, now)
            proposed = self._next_version(previous, request, audiences, now)
            texts = await self._update_texts(proposed, audiences, previous)
            replaced = await self._proposals.get(alert_id)
            proposal = Proposal(
                secrets.token_hex(8), previous.version, request_fields(request), actor, role, now, texts
            )
            await self._proposals.put(alert_id, proposal)
            detail = f"v{previous.version}→v{previous.version + 1} {_summary(proposed)}: {proposed.headline}"
            if replaced is not None:
                detail += f"; replaces the update {replaced.actor} proposed at {replaced.at.isoformat()}"
            await self._record(
                previous, "propose_update", actor=actor, role=role, detail=detail, waiting=True
            )
        return previous

    async def proposal(self, alert_id: str) -> Proposal | None:
        """The update of the issued alert waiting for approval, if any."""
        return await self._proposals.get(alert_id)

    async def preview_proposal(self, alert_id: str) -> tuple[Proposal, Preview] | None:
        """The alert's waiting update and what approving it would send (its texts, as rendered for the
        reviewer, and recipients per audience × channel); None when no update waits.

        Raises:
            AlertNotFound: unknown id.
            UsageError: the update can no longer go out as it is (e.g. its expiry passed meanwhile).
        """
        proposal = await self._proposals.get(alert_id)
        if proposal is None:
            return None
        previous = await self.alerts.get(alert_id)
        request = request_from_fields(proposal.request)
        now = datetime.now(UTC)
        audiences = await self._validate(request, now)
        alert = self._next_version(previous, request, audiences, now)
        texts = proposal.texts or await self._update_texts(alert, audiences, previous)
        counts = await count_recipients(
            alert, audiences, self.directory, batch_size=self.settings.worker.batch_size
        )
        preview = Preview(
            alert=alert,
            villages=counts.villages,
            rows=preview_rows(audiences, texts, counts),
            area_names=tuple(await self._area_names(alert)),
            people=counts.people,
        )
        return proposal, preview

    def _update_needs_approval(self, previous: Alert, request: AlertRequest) -> bool:
        # An update never turns an Actual alert into a self-approved drill: the kind is the alert's own.
        return rule_applies(self.settings.approval, request.level, exercise=previous.exercise)

    def _next_version(
        self,
        previous: Alert,
        request: AlertRequest,
        audiences: list[Audience],
        now: datetime,
        references: tuple[str, ...] = (),
    ) -> Alert:
        """The version that `request` makes of the issued `previous` (saved by nobody yet)."""
        return replace(
            previous,
            version=previous.version + 1,
            msg_type="Update",
            sent=now,
            event=request.event.strip(),
            level=request.level,
            areas=request.areas,
            headline=request.headline,
            description=request.description,
            instruction=request.instruction,
            expires=request.expires,
            event_code=request.event_code or previous.event_code,
            status=AlertStatus.EXERCISE if request.exercise else previous.status,
            audiences=tuple(a.name for a in audiences),
            references=references
            or (f"{previous.sender},{cap_identifier(previous)},{cap_time(previous.sent)}",),
        )

    async def _update_texts(self, alert: Alert, audiences: list[Audience], previous: Alert) -> dict[str, str]:
        return await render_all(
            alert,
            audiences,
            self.renderer,
            area_names=await self._area_names(alert),
            max_segments=self.settings.sms.max_segments,
            previous=previous,
        )

    async def _apply_update(
        self,
        alert_id: str,
        request: AlertRequest,
        *,
        actor: str,
        role: str,
        references: tuple[str, ...] = (),
        approved_by: tuple[str, str] | None = None,
        proposed: Proposal | None = None,
    ) -> tuple[Alert, Alert]:
        """Save the new version (the caller holds the alert's decision and settles the old version's
        pending deliveries); `approved_by` (actor, role): the approver of the proposal `proposed`, recorded
        before the update. Returns the new version and the one it replaced."""
        previous = await self.alerts.get(alert_id)
        if previous.state is not AlertState.ISSUED:
            raise _cannot(previous, "更新", "updated")
        now = datetime.now(UTC)
        audiences = await self._validate(request, now)
        alert = self._next_version(previous, request, audiences, now, references)
        await self.texts.store(alert, await self._update_texts(alert, audiences, previous))
        await mark_pending(self.deliveries, alert, leases=self.fanout_leases)
        # From this write on, workers refuse the old version's queued batches (the control version moved).
        await self.alerts.save(alert)
        superseded = await self._proposals.clear(alert.id)
        detail = f"v{previous.version}→v{alert.version} {alert.level.value}"
        if approved_by is not None and proposed is not None:
            await self._record(
                alert,
                "approve",
                actor=approved_by[0],
                role=approved_by[1],
                detail=f"update {detail} proposed by {proposed.actor}",
            )
        elif superseded:
            detail += "; the update that was waiting for approval is dropped"
        await self._record(alert, "update", actor=actor, role=role, detail=detail)
        return alert, previous

    def _draft(
        self,
        request: AlertRequest,
        audiences: list[Audience],
        now: datetime,
        *,
        status: AlertStatus | None = None,
    ) -> Alert:
        """A new alert (state draft) from a request; `status` defaults to Actual, or Exercise for a drill."""
        return Alert(
            id=request.id or new_alert_id(now),
            sender=request.sender or self.settings.bureau.sender,
            sent=now,
            event=request.event.strip(),
            level=request.level,
            areas=request.areas,
            headline=request.headline,
            description=request.description,
            instruction=request.instruction,
            event_code=request.event_code,
            expires=request.expires,
            status=status or (AlertStatus.EXERCISE if request.exercise else AlertStatus.ACTUAL),
            audiences=tuple(a.name for a in audiences),
            state=AlertState.DRAFT,
        )

    async def _area_names(self, alert: Alert) -> list[str]:
        return list((await self.area_names(alert.areas)).values())

    async def resume_fanouts(self) -> int:
        """Finish fan-outs whose process died or lost Redis: each marker whose lease lapsed is claimed
        atomically (so two housekeepers never resume it twice, and a live run is never touched) and run
        again under that lease, idempotently. Returns how many this call resumed."""
        markers = await self.fanout_leases.resumable()
        done = await asyncio.gather(*(self._resume(m) for m in markers), return_exceptions=True)
        for marker, outcome in zip(markers, done, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    "resuming a fan-out failed; it is retried next round",
                    exc_info=outcome,
                    extra={"marker": marker},
                )
        return sum(1 for outcome in done if outcome is True)

    async def _resume(self, marker: str) -> bool:
        alert_id, version, action = marker.rsplit(":", 2)
        async with self.fanout_leases.claim(marker) as lease:
            if lease is None:
                return False  # alive after all, finished meanwhile, or another housekeeper took it
            alert = await self.alerts.find(alert_id)
            if alert is None or alert.version != int(version):
                await lease.finish()  # a later version superseded it: nothing left to do
                return False
            log.warning("resuming an interrupted fan-out", extra={"alert": alert_id, "action": action})
            if action == "play":
                await self.fan_out(alert, lease=lease)
            elif action == ALL_CLEAR_ACTION:
                await self._queue_all_clear(alert, lease=lease)
            else:
                await self._speakers_fan_out(alert, action, lease=lease)
            await lease.finish()  # does nothing if the lease was lost half-way: its new owner finishes
            return True

    # -- CAP ----------------------------------------------------------------------------------------

    async def ingest_cap(
        self, data: bytes, *, actor: str = "cli", role: str = "operator", approval: bool = False
    ) -> CapOutcome:
        """Act on a CAP 1.2 message: a new alert, an update or a cancel of one of ours.

        Test, Draft and System messages are kept as drafts and never reach the public; Exercise is a drill.

        Raises:
            CapError: the message is invalid (names the element and rule), or matches none of our villages.
            AlertNotFound: an Update or Cancel references no alert of ours.
            UsageError: the references are ambiguous, or the message cannot become an alert.
        """
        return await self.act_on_cap(parse_cap(data), actor=actor, role=role, approval=approval)

    async def act_on_cap(
        self,
        cap: CapAlert,
        *,
        draft_only: bool = False,
        audiences: tuple[str, ...] = (),
        actor: str = "cli",
        role: str = "operator",
        approval: bool = False,
    ) -> CapOutcome:
        """Act on a parsed CAP message (see `ingest_cap`); `draft_only` keeps a new alert as a draft for
        an operator to approve (feed rules that may not issue on their own); `audiences` overrides ours;
        `approval` (a person submitting through the API) applies the two-person rule to a new alert,
        whose outcome is then `pending_approval` when it waits.

        Raises:
            CapError, AlertNotFound, UsageError: as `ingest_cap`.
        """
        mapped = await map_cap(cap, self.directory)
        if mapped.msg_type in ("Update", "Cancel"):
            target = await self._referenced(mapped.references)
            if mapped.msg_type == "Cancel":
                cancelled = await self.cancel(target.id, actor=actor, role=role)
                return CapOutcome("cancelled", cancelled.alert)
            if approval:  # a person posting CAP is under the two-person rule like any update
                alert = await self.propose_update(target.id, self._request(mapped), actor=actor, role=role)
                if alert.version == target.version:
                    return CapOutcome("pending_approval", alert)
                await self.fan_out(alert)
                return CapOutcome("updated", alert)
            alert, _ = await self.update(
                target.id, self._request(mapped), actor=actor, role=role, references=mapped.references
            )
            return CapOutcome("updated", alert)
        request = self._request(mapped)
        if audiences:
            request = replace(request, audiences=audiences)
        if draft_only or mapped.status not in (AlertStatus.ACTUAL, AlertStatus.EXERCISE):
            draft = await self._save_draft(request, mapped.status, actor=actor, role=role)
            return CapOutcome("draft", draft)
        if approval:
            alert = await self.submit(request, actor=actor, role=role)
            return CapOutcome("issued" if alert.state is AlertState.ISSUED else "pending_approval", alert)
        alert = await self.prepare(request, actor=actor, role=role)
        return CapOutcome("issued", alert)

    async def preview(self, request: AlertRequest) -> Preview:
        """What issuing `request` would send: every audience × channel × language text, as the real issue
        renders it, and how many recipients would get it or lack an address. Nothing is saved or queued.

        Raises:
            MissingField, UsageError: exactly as `prepare` (including RenderError).
        """
        now = datetime.now(UTC)
        audiences = await self._validate(request, now)
        alert = self._draft(request, audiences, now)
        texts = await render_all(
            alert,
            audiences,
            self.renderer,
            area_names=(names := await self._area_names(alert)),
            max_segments=self.settings.sms.max_segments,
        )
        counts = await count_recipients(
            alert, audiences, self.directory, batch_size=self.settings.worker.batch_size
        )
        return Preview(
            alert=alert,
            villages=counts.villages,
            rows=preview_rows(audiences, texts, counts),
            area_names=tuple(names),
            people=counts.people,
        )

    async def estimate(self, request: AlertRequest) -> Estimate:
        """Whom issuing `request` would reach (residents, must-reach, phones, loudspeakers online) and how
        long its channels take at the configured rates. Nothing is saved or queued; the headline and
        instruction may still be blank (the compose page asks while they are being typed).

        Raises:
            UsageError: invalid request (event, areas, expires, audiences), including RenderError.
        """
        now = datetime.now(UTC)
        audiences = await self._validate(request, now, sent=False)
        alert = self._draft(request, audiences, now)
        texts = await render_all(
            alert,
            audiences,
            self.renderer,
            area_names=await self._area_names(alert),
            max_segments=self.settings.sms.max_segments,
        )
        counts = await count_recipients(
            alert, audiences, self.directory, batch_size=self.settings.worker.batch_size
        )
        return await estimate_reach(
            alert,
            audiences,
            texts,
            counts,
            store=self.store,
            directory=self.directory,
            settings=self.settings,
        )

    def _request(self, mapped: MappedAlert) -> AlertRequest:
        if mapped.level is None:
            raise UsageError(
                t(
                    "无法确定预警级别：CAP 中既无 severity 也无颜色",
                    "cannot tell the warning level: the CAP "
                    "message has neither a usable severity nor a colour",
                )
            )
        return AlertRequest(
            event=mapped.event,
            level=mapped.level,
            areas=mapped.areas,
            headline=mapped.headline,
            description=mapped.description,
            instruction=mapped.instruction,
            expires=mapped.expires,
            exercise=mapped.status is AlertStatus.EXERCISE,
            event_code=mapped.event_code,
            sender=mapped.sender,
            id=mapped.identifier,
        )

    async def cap_document(self, alert: Alert) -> bytes:
        """The alert as CAP 1.2 XML, with one area per village it covers."""
        codes = await self.directory.village_codes(alert.areas)
        return emit_cap(
            alert,
            sender=alert.sender,
            sender_name=self.settings.bureau.name,
            villages=await self.directory.villages(codes),
            references=alert.references,
        )

    # -- the two-person rule ------------------------------------------------------------------------

    def needs_approval(self, request: AlertRequest) -> bool:
        """Whether submitting `request` through the console or the API waits for a second person's approval."""
        return rule_applies(self.settings.approval, request.level, exercise=request.exercise)

    async def submit(self, request: AlertRequest, *, actor: str, role: str) -> Alert:
        """Issue `request` (state issued and marked for fan-out: the caller starts `fan_out`), or — when the
        two-person rule applies — render it and save it as pending_approval, queuing nothing.

        Submitting an id again that is issued or waiting changes nothing.

        Raises:
            MissingField, UsageError: invalid request (as `prepare`).
            AlertError: the id exists in another state (draft, rejected, cancelled, expired).
        """
        if not self.needs_approval(request):
            return await self.prepare(request, actor=actor, role=role)
        now = datetime.now(UTC)
        audiences = await self._validate(request, now)
        existing = await self.alerts.find(request.id) if request.id else None
        if existing is not None:
            if existing.state in (AlertState.PENDING_APPROVAL, AlertState.ISSUED):
                return existing
            raise _cannot(existing, "再次提交", "submitted again")
        alert = replace(self._draft(request, audiences, now), state=AlertState.PENDING_APPROVAL)
        await self._render(alert)
        await self.alerts.save(alert)
        await self._record(alert, "submit", actor=actor, role=role, detail=_summary(alert))
        return alert

    async def approve(
        self, alert_id: str, *, actor: str = "cli", role: str = "approver", proposal: str = ""
    ) -> Alert:
        """Issue an alert waiting for approval, or a draft (e.g. one a feed rule drafted): render it, mark it
        for fan-out and save it issued; or, for an issued alert whose update waits, issue that update as
        the new version (its content stays the proposer's; the approver is recorded approving it). The
        caller runs `fan_out` (the API in the background, the CLI with its progress bar). Whoever submitted
        or edited it (for an update: whoever proposed it) may not approve it, unless it is a drill and
        `[approval] drills_self_approve`. `proposal`: the id of the proposed update the approver reviewed
        (refused if another replaced it meanwhile); "" approves whichever waits.

        Raises:
            AlertNotFound: unknown id.
            AlertError: not waiting for approval nor a draft; a CAP Test/Draft/System message (those never
                reach the public); the two-person rule refuses `actor`; the update reviewed was replaced.
            MissingField: it has no headline or instruction.
        """
        async with self._moves.deciding(alert_id):
            alert = await self.alerts.get(alert_id)
            waiting = await self._proposals.get(alert_id) if alert.state is AlertState.ISSUED else None
            if waiting is None:
                return await self._approve_alert(alert, actor=actor, role=role)
            updated, previous = await self._approve_update(
                alert, waiting, actor=actor, role=role, expected=proposal
            )
        await self._settle_pending(previous, CODES["cancelled"])
        return updated

    async def _approve_alert(self, alert: Alert, *, actor: str, role: str) -> Alert:
        if alert.state not in (AlertState.PENDING_APPROVAL, AlertState.DRAFT):
            raise _cannot(
                alert,
                "批准（只有待审批的预警和草稿可以批准）",
                "approved (only alerts waiting or drafts can be)",
            )
        if alert.status not in (AlertStatus.ACTUAL, AlertStatus.EXERCISE):
            raise AlertError(
                t(
                    "预警 {id} 是 CAP {st} 消息，不能向公众发布",
                    "alert {id} is a CAP {st} message and never goes to the public",
                    id=alert.id,
                    st=alert.status.value,
                )
            )
        require_text(alert.headline, alert.instruction)
        if not (alert.exercise and self.settings.approval.drills_self_approve):
            check_approver(await self._moves.of(alert.id), actor, alert_id=alert.id)
        await self._render(alert)
        await mark_pending(self.deliveries, alert, leases=self.fanout_leases)
        alert = await self.alerts.set_state(alert, AlertState.ISSUED)
        await self._record(alert, "approve", actor=actor, role=role, detail=_summary(alert))
        return alert

    async def _approve_update(
        self, alert: Alert, proposal: Proposal, *, actor: str, role: str, expected: str
    ) -> tuple[Alert, Alert]:
        if expected and expected != proposal.id:
            raise AlertError(
                t(
                    "预警 {id} 待审批的更新已被另一份更新取代，请刷新页面重新审阅",
                    "the update of alert {id} waiting for approval was replaced by another: reload and "
                    "review it again",
                    id=alert.id,
                )
            )
        if not (alert.exercise and self.settings.approval.drills_self_approve):
            check_proposal_approver(proposal, actor, alert_id=alert.id)
        return await self._apply_update(
            alert.id,
            request_from_fields(proposal.request),
            actor=proposal.actor,
            role=proposal.role,
            approved_by=(actor, role),
            proposed=proposal,
        )

    async def _decline_update(
        self, alert: Alert, action: str, *, actor: str, role: str, reason: str
    ) -> Alert | None:
        """Return or reject the alert's waiting update (the issued version stays); None if none waits."""
        if alert.state is not AlertState.ISSUED:
            return None
        proposal = await self._proposals.get(alert.id)
        if proposal is None:
            return None
        await self._proposals.clear(alert.id)
        headline = request_from_fields(proposal.request).headline
        await self._record(
            alert,
            action,
            actor=actor,
            role=role,
            reason=reason,
            detail=f"update proposed by {proposal.actor}: {headline}",
            waiting=False,
        )
        return alert

    async def return_for_edit(self, alert_id: str, *, actor: str, role: str, reason: str) -> Alert:
        """Send an alert waiting for approval back to its submitter as a draft, saying why; or send an
        issued alert's waiting update back to its proposer (the issued version stays, still going out).

        Raises:
            MissingField: no reason; FieldError: a reason over 500 characters.
            AlertNotFound: unknown id.
            AlertError: it is not waiting for approval.
        """
        reason = require_reason(reason)
        async with self._moves.deciding(alert_id):
            alert = await self.alerts.get(alert_id)
            declined = await self._decline_update(alert, "return", actor=actor, role=role, reason=reason)
            if declined is not None:
                return declined
            if alert.state is not AlertState.PENDING_APPROVAL:
                raise _cannot(
                    alert,
                    "退回修改（只有待审批的预警可以退回）",
                    "returned for edit (only alerts waiting can be)",
                )
            alert = await self.alerts.set_state(alert, AlertState.DRAFT)
            await self._record(alert, "return", actor=actor, role=role, reason=reason)
        return alert

    async def reject(
        self, alert_id: str, *, actor: str = "cli", role: str = "approver", reason: str
    ) -> Alert:
        """Refuse an alert waiting for approval or a draft, saying why: it is never issued. Rejecting again
        changes nothing. For an issued alert whose update waits, refuse that update (the issued version
        stays, still going out).

        Raises:
            MissingField: no reason; FieldError: a reason over 500 characters.
            AlertNotFound: unknown id.
            AlertError: it is neither waiting for approval nor a draft.
        """
        reason = require_reason(reason)
        async with self._moves.deciding(alert_id):
            alert = await self.alerts.get(alert_id)
            declined = await self._decline_update(alert, "reject", actor=actor, role=role, reason=reason)
            if declined is not None:
                return declined
            if alert.state is AlertState.REJECTED:
                return alert
            if alert.state not in (AlertState.DRAFT, AlertState.PENDING_APPROVAL):
                raise _cannot(
                    alert,
                    "驳回（只有待审批的预警和草稿可以驳回）",
                    "rejected (only alerts waiting or drafts can be)",
                )
            alert = await self.alerts.set_state(alert, AlertState.REJECTED)
            await self._record(alert, "reject", actor=actor, role=role, reason=reason)
        return alert

    async def revise(self, alert_id: str, request: AlertRequest, *, actor: str, role: str) -> Alert:
        """Resubmit a draft (one returned for edit) as `request` under the same id: pending_approval again,
        or issued (marked for fan-out: the caller starts `fan_out`) when the rule no longer applies.

        Raises:
            AlertNotFound: unknown id.
            AlertError: the alert is not a draft.
            MissingField, UsageError: invalid request (as `prepare`).
        """
        async with self._moves.deciding(alert_id):
            previous = await self.alerts.get(alert_id)
            if previous.state is not AlertState.DRAFT:
                raise _cannot(previous, "修改后重新提交（只有草稿可以）", "revised (only a draft can be)")
            now = datetime.now(UTC)
            audiences = await self._validate(request, now)
            alert = replace(
                self._draft(replace(request, id=previous.id), audiences, now),
                sender=request.sender or previous.sender,
                event_code=request.event_code or previous.event_code,
            )
            waits = self.needs_approval(request)
            await self._render(alert)
            if waits:
                alert = replace(alert, state=AlertState.PENDING_APPROVAL)
            else:
                await mark_pending(self.deliveries, alert, leases=self.fanout_leases)
                alert = replace(alert, state=AlertState.ISSUED)
            await self.alerts.save(alert)
            await self._record(alert, "revise", actor=actor, role=role, detail=_summary(alert))
            if not waits:
                await self._record(alert, "issue", actor=actor, role=role, detail=_summary(alert))
        return alert

    async def moves(self, alert_id: str) -> list[Move]:
        """Who did what to the alert and when (draft, submit, return, revise, approve, reject, issue,
        update, cancel), oldest first."""
        return await self._moves.of(alert_id)

    async def pending_approvals(self, limit: int = 1000) -> list[Alert]:
        """The alerts waiting for approval now, and the issued ones whose update waits, longest waiting
        first (however old: not a scan of recent)."""
        found = [await self.alerts.find(alert_id) for alert_id in await self._moves.waiting(limit)]
        return [a for a in found if a is not None and await self._waits(a)]

    async def _waits(self, alert: Alert) -> bool:
        if alert.state is AlertState.PENDING_APPROVAL:
            return True
        return alert.state is AlertState.ISSUED and await self._proposals.get(alert.id) is not None

    async def _render(self, alert: Alert) -> None:
        """Render and store every text of the alert's version (replacing what an earlier edit stored)."""
        texts = await render_all(
            alert,
            select(alert.audiences, self.audiences),
            self.renderer,
            area_names=await self._area_names(alert),
            max_segments=self.settings.sms.max_segments,
        )
        await self.texts.redis.delete(self.texts.key(alert.id, alert.version))
        await self.texts.store(alert, texts)

    async def _record(
        self,
        alert: Alert,
        action: str,
        *,
        actor: str,
        role: str,
        reason: str = "",
        detail: str = "",
        waiting: bool | None = None,
    ) -> None:
        """One move of the alert, kept with it and appended to the audit log; `waiting`: whether it waits
        for approval after the move (default: whether it is pending_approval)."""
        if waiting is None:
            waiting = alert.state is AlertState.PENDING_APPROVAL
        await self._moves.add(alert.id, action, actor=actor, role=role, reason=reason, waiting=waiting)
        text = detail if reason in detail else "; ".join(p for p in (detail, reason) if p)
        await self.alerts.audit(actor=actor, role=role, action=action, obj=alert.id, result="ok", detail=text)

    async def _referenced(self, references: tuple[str, ...]) -> Alert:
        """The one alert of ours that the references name; refuses to guess."""
        found: dict[str, Alert] = {}
        for reference in references:
            identifier = reference.split(",")[1] if reference.count(",") == 2 else ""
            # Our later versions go out as `{id}-v{n}` (a new CAP identifier per message).
            alert = await self.alerts.find(identifier) if identifier else None
            if alert is None and re.fullmatch(r".+-v\d+", identifier):
                alert = await self.alerts.find(identifier.rsplit("-v", 1)[0])
            if alert is not None:
                found[alert.id] = alert
        if not found:
            raise AlertNotFound(
                t(
                    "CAP 引用的预警不在本系统中：{r}",
                    "the CAP references name no alert of ours: {r}",
                    r=" ".join(references) or "-",
                )
            )
        if len(found) > 1:
            raise UsageError(
                t(
                    "CAP 引用了多个本系统的预警（{ids}），不予猜测，请只引用一个",
                    "the CAP references name several of our alerts ({ids}); refusing to guess",
                    ids=", ".join(sorted(found)),
                )
            )
        return next(iter(found.values()))

    async def _save_draft(
        self, request: AlertRequest, status: AlertStatus, *, actor: str, role: str
    ) -> Alert:
        now = datetime.now(UTC)
        # Drafts are not sent, so they may lack a headline or instruction; approving them needs both.
        audiences = await self._validate(request, now, sent=False)
        existing = await self.alerts.find(request.id) if request.id else None
        if existing is not None:
            return existing
        draft = self._draft(request, audiences, now, status=status)
        await self.alerts.save(draft)
        await self._record(
            draft,
            "draft",
            actor=actor,
            role=role,
            detail=f"CAP status {status.value}: kept as a draft, not sent",
        )
        return draft

    # -- cancelling and expiring --------------------------------------------------------------------

    async def cancel(
        self,
        alert_id: str,
        *,
        silent: bool = False,
        note: str = "",
        actor: str = "cli",
        role: str = "operator",
    ) -> CancelOutcome:
        """Cancel: no further send is claimed from this moment, pending deliveries become cancelled, the
        ladder stops, and — unless `silent` — everyone who was sent the alert gets the all-clear (解除) on
        the channels they got it on, with `note` as what to do now, and every loudspeaker of the area
        plays it; a silent cancel sends loudspeakers `stop`. Cancelling again sends nothing more.

        Raises:
            AlertError: unknown id, or the alert is not issued.
            RenderError: an all-clear template is broken (the alert is not cancelled then).
        """
        # Decided under the alert's decision lock: an approval of its waiting update in flight ends first
        # (and is then cancelled with it), never half before and half after the cancel.
        async with self._moves.deciding(alert_id, wait=CANCEL_WAIT):
            return await self._cancel(alert_id, silent=silent, note=note, actor=actor, role=role)

    async def _cancel(
        self, alert_id: str, *, silent: bool, note: str, actor: str, role: str
    ) -> CancelOutcome:
        alert = await self.alerts.get(alert_id)
        if alert.state is AlertState.CANCELLED:
            return CancelOutcome(alert, {}, again=True)
        if alert.state is not AlertState.ISSUED:
            raise _cannot(alert, "撤销", "cancelled")
        channels = self.channels(alert)
        if not silent:
            # Rendered before anything changes: a broken template refuses the cancel instead of half-doing it.
            await self.texts.store(alert, await self._all_clear_texts(alert, channels, note))
            await self.deliveries.redis.hset(
                self.alerts.control_key(alert.id), "clear_until", str(time.time() + CLEAR_WINDOW)
            )
        alert = await self.alerts.set_state(alert, AlertState.CANCELLED)
        dropped = await self._proposals.clear(alert.id)
        await self._record(
            alert,
            "cancel",
            actor=actor,
            role=role,
            reason=note.strip(),
            detail=("silent" if silent else f"all-clear {note}".strip())
            + ("; the update waiting for approval is dropped" if dropped else ""),
        )
        await self.escalation.stop(alert.id)
        await self._settle_pending(alert, CODES["cancelled"])
        if silent:
            if self._has_speakers(alert):
                await self._speakers_fan_out(alert, "stop")
            return CancelOutcome(alert, {})
        return CancelOutcome(alert, await self._queue_all_clear(alert))

    async def _all_clear_texts(self, alert: Alert, channels: list[str], note: str) -> dict[str, str]:
        # The all-clear says what was lifted (event, level, headline) and, as its instruction, the note.
        lifted = replace(alert, msg_type="Cancel", instruction=note.strip())
        rendered = self.renderer.check(
            lifted,
            [(ALL_CLEAR, channel) for channel in channels],
            LANGUAGES,
            area_names=await self._area_names(alert),
            max_segments=self.settings.sms.max_segments,
        )
        return {text_field(audience, channel, lang): r.text for audience, channel, lang, r in rendered}

    async def _queue_all_clear(self, alert: Alert, *, lease: FanoutLease | None = None) -> dict[str, int]:
        """Queue the all-clear under its fan-out lease (idempotent: a resumed or repeated run queues
        nobody twice); `lease` when the caller (a resumer) holds it and finishes it."""
        if lease is not None:
            return await self._all_clear_under(alert, lease)
        async with self.fanout_leases.take(fanout_marker(alert.id, alert.version, ALL_CLEAR_ACTION)) as taken:
            if taken is None:
                log.info("all-clear already being queued by another process", extra={"alert": alert.id})
                return {}
            queued = await self._all_clear_under(alert, taken)
            await taken.finish()
            return queued

    async def _all_clear_under(self, alert: Alert, lease: FanoutLease) -> dict[str, int]:
        queued = await queue_person_all_clear(
            alert,
            self.channels(alert),
            directory=self.directory,
            deliveries=self.deliveries,
            batch_size=self.settings.worker.batch_size,
        )
        if self._has_speakers(alert):
            report = await self._speakers_fan_out(alert, ALL_CLEAR_ACTION, lease=lease)
            queued.update({k.partition(".")[0]: v for k, v in report.queued.items() if v})
        return queued

    def _has_speakers(self, alert: Alert) -> bool:
        return any(
            self.audiences[name].members is Members.SPEAKERS
            for name in alert.audiences
            if name in self.audiences
        )

    async def _speakers_fan_out(
        self, alert: Alert, action: str, *, lease: FanoutLease | None = None
    ) -> FanoutReport:
        return await fan_out(
            alert,
            select((STOP_AUDIENCE,), self.audiences),
            directory=self.directory,
            deliveries=self.deliveries,
            renderer=self.renderer,
            batch_size=self.settings.worker.batch_size,
            action=action,
            lease=lease,
            leases=self.fanout_leases,
        )

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Mark issued alerts past `expires` as expired and their pending deliveries expired."""
        now = now or datetime.now(UTC)
        expired = []
        for alert in await self.alerts.recent(limit=1000):
            if alert.state is AlertState.ISSUED and alert.expired_at(now):
                alert = await self.alerts.set_state(alert, AlertState.EXPIRED)
                await self._proposals.clear(alert.id)
                await self.alerts.audit(
                    actor="system", role="scheduler", action="expire", obj=alert.id, result="ok"
                )
                await self._settle_pending(alert, CODES["expired"])
                expired.append(alert.id)
        return expired

    async def _settle_pending(self, alert: Alert, code: str) -> None:
        """Move every queued/retrying delivery of the alert to a final state, in bounded batches: the
        warning's own ledgers and every other one queued for it (cadres' task SMS, escalation calls, …),
        not the all-clear and stop commands a cancel queues."""
        redis = self.deliveries.redis
        ledgers = dict.fromkeys(
            [*self.channels(alert), *await self.deliveries.ledgers(alert.id, alert.version)]
        )
        for channel in ledgers:
            if channel.endswith((f".{ALL_CLEAR_ACTION}", ".stop")):
                continue
            key = self.deliveries.states_key(alert.id, alert.version, channel)
            cursor = 0
            while True:
                scanned: Any = await redis.hscan(key, cursor, count=1000)
                cursor, fields = scanned
                moves = [(str(rid), code) for rid, state in fields.items() if str(state) in ("q", "r")]
                await self.deliveries.move(alert.id, alert.version, channel, moves)
                if cursor == 0:
                    break

    # -- dead letters -------------------------------------------------------------------------------

    async def dead_letters(self, channel: str, limit: int | None = None) -> list[DeadLetter]:
        """The channel's dead letters, oldest first (at most `limit` batches)."""
        entries: Any = await self.deliveries.redis.xrange(self.deliveries.dead_key(channel), count=limit)
        return [
            DeadLetter(str(entry_id), Batch.from_json(fields["b"]), str(fields.get("reason", "")))
            for entry_id, fields in entries or []
        ]

    async def dead_count(self, channel: str) -> int:
        """How many dead-lettered batches the channel holds."""
        return int(await self.deliveries.redis.xlen(self.deliveries.dead_key(channel)))

    async def requeue_dead(self, channel: str, *, actor: str = "cli", role: str = "operator") -> int:
        """Put dead-lettered deliveries back in the queue with a fresh attempt count; returns how many."""
        requeued = 0
        for letter in await self.dead_letters(channel):
            batch = letter.batch
            moved = await self.deliveries.move(
                batch.alert_id, batch.version, batch.ledger, [(r.id, "q") for r in batch.recipients]
            )
            again = batch.with_recipients(
                [r for r, ok in zip(batch.recipients, moved, strict=True) if ok == "1"],
                attempt=1,
                unexpected=0,
            )
            if again.recipients:
                alert = await self.alerts.get(batch.alert_id)
                stream = self.deliveries.stream_key(channel, alert.level.urgent or batch.action == "stop")
                await self.deliveries.redis.xadd(stream, {"b": again.to_json()})
                requeued += len(again.recipients)
            await self.deliveries.redis.xdel(self.deliveries.dead_key(channel), letter.entry_id)
        if requeued:
            await self.alerts.audit(
                actor=actor, role=role, action="requeue", obj=channel, result="ok", detail=str(requeued)
            )
        return requeued

    # -- reading ------------------------------------------------------------------------------------


def request_fields(request: AlertRequest) -> dict[str, Any]:
    """An update's request as JSON fields (the API's names), as a proposal keeps it."""
    return {
        "event": request.event,
        "level": request.level.value,
        "areas": list(request.areas),
        "headline": request.headline,
        "description": request.description,
        "instruction": request.instruction,
        "expires": request.expires.isoformat() if request.expires else None,
        "exercise": request.exercise,
        "audiences": list(request.audiences),
        "event_code": request.event_code,
    }


def request_from_fields(fields: dict[str, Any]) -> AlertRequest:
    """The request a proposal keeps (see `request_fields`)."""
    expires = fields.get("expires")
    return AlertRequest(
        event=str(fields["event"]),
        level=Level(fields["level"]),
        areas=tuple(fields["areas"]),
        headline=str(fields.get("headline", "")),
        description=str(fields.get("description", "")),
        instruction=str(fields.get("instruction", "")),
        expires=datetime.fromisoformat(expires) if expires else None,
        exercise=bool(fields.get("exercise", False)),
        audiences=tuple(fields.get("audiences", DEFAULT_AUDIENCES)),
        event_code=str(fields.get("event_code", "")),
    )


def _summary(alert: Alert) -> str:
    return f"{alert.event} {alert.level.value} {','.join(alert.areas)}"


def _cannot(alert: Alert, doing_zh: str, doing_en: str) -> AlertError:
    """The error for acting on an alert in the wrong state, naming the state."""
    return AlertError(
        t(
            "预警 {id} 是 {s} 状态，不能{d}",
            "alert {id} is {s} and cannot be {d}",
            id=alert.id,
            s=alert.state.value,
            d=doing_zh if current_language() == "zh-CN" else doing_en,
        )
    )


def parse_levels(text: str) -> Level:
    """A level from `red`/`orange`/… or 红色/橙色/黄色/蓝色.

    Raises:
        UsageError: not a level.
    """
    aliases = {
        "红": "red",
        "红色": "red",
        "橙": "orange",
        "橙色": "orange",
        "黄": "yellow",
        "黄色": "yellow",
        "蓝": "blue",
        "蓝色": "blue",
    }
    value = aliases.get(text.strip(), text.strip().lower())
    try:
        return Level(value)
    except ValueError:
        raise UsageError(
            t(
                "预警级别 {l} 无效：用 red/orange/yellow/blue 或 红色/橙色/黄色/蓝色",
                "level {l} is invalid: use red, orange, yellow or blue",
                l=text,
            )
        ) from None


def split_codes(text: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in text.split(",") if code.strip())
