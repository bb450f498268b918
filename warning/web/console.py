"""The duty officer's console pages: the dashboard, composing an alert (with live preview and reach
estimate, see static/compose.js) and the two-person rule's review pages.

    GET  /                          dashboard: recent alerts, those waiting for approval     (read)
    GET  /console/compose           the compose form; ?from=ID revises a returned draft or
                                    prepares an update of an issued alert                    (issue)
    POST /console/compose           submit → 303 live page (issued) or review page (pending) (issue)
    GET  /console/approvals         alerts waiting for approval                              (read)
    GET  /console/approvals/{id}    review: texts, reach, who submitted it and when          (read)
    POST /console/approvals/{id}    decision approve | return | reject (+ reason)            (approve)

The form is turned into an AlertRequest by the API's own JSON conversion, so the console and the API
refuse the same things with the same words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from warning.approval import Proposal
from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster, request_from_fields
from warning.errors import AlertError, AlertNotFound, FieldError, UsageError
from warning.i18n import t
from warning.labels import BEIJING, beijing, label, labels
from warning.model import Alert, AlertState, Level, Village
from warning.preview import Preview
from warning.readmodel import ReadModel
from warning.users import User
from warning.web.access import requires
from warning.web.api import in_background, request_from_json
from warning.web.keys import BACKGROUND, BROADCASTER, READ_MODEL
from warning.web.pages import PAGE_USER, render_page

RECENT = 50  # alerts on the dashboard
PENDING_SCAN = 200  # recent alerts searched for those waiting for approval
MAP_VILLAGES = 5000  # villages drawn on the compose page (a county has a few hundred)
MAP_WIDTH = 600.0
MAP_HEIGHT = 380.0
MAP_PAD = 24.0
EVENTS = ("台风", "暴雨", "山洪", "地质灾害", "高温", "寒潮", "大风", "雷电", "冰雹", "大雾", "道路结冰")
EXPIRES_HOURS = (2, 6, 12, 24, 48)
DECISIONS = ("approve", "return", "reject")


def _user(request: web.Request) -> User:
    """The signed-in user (the access middleware lets no one else reach a console handler)."""
    user = request.get(PAGE_USER)
    if not isinstance(user, User):
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    return user


# -- dashboard ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    """One alert as the dashboard lists it."""

    alert: Alert
    areas: str
    delivered: int
    failed: int
    update_waiting: bool = False  # issued, with an update waiting for approval


async def _row(model: ReadModel, alert: Alert, *, update_waiting: bool = False) -> AlertRow:
    names = await model.area_names(alert.areas)
    _, counts = await model.status(alert.id)
    channels = model.channels(alert)
    delivered = sum(c.get("delivered") for k, c in counts.items() if k in channels)
    failed = sum(c.get("failed") + c.get("dead") for k, c in counts.items() if k in channels)
    areas = "、".join(names.values()) or "、".join(alert.areas)
    return AlertRow(alert, areas, delivered, failed, update_waiting)


async def _updates_waiting(request: web.Request) -> list[Alert]:
    """Issued alerts whose update waits for approval, longest waiting first."""
    waiting = await request.app[BROADCASTER].pending_approvals()
    return [a for a in waiting if a.state is AlertState.ISSUED]


@requires("read")
async def dashboard(request: web.Request) -> web.Response:
    """Recent alerts (level band, 【演练】, event, areas, state, time, delivered/failed) and the approvals box."""
    user = _user(request)
    model = request.app[READ_MODEL]
    recent = await model.alerts.recent(limit=PENDING_SCAN)
    pending = [a for a in recent if a.state is AlertState.PENDING_APPROVAL]
    updates = await _updates_waiting(request)
    proposed = {a.id for a in updates}
    rows = [await _row(model, a, update_waiting=a.id in proposed) for a in recent[:RECENT]]
    return render_page(
        request,
        "console/index.html",
        title=t("预警总览", "Alerts"),
        rows=rows,
        pending=[await _row(model, a) for a in pending]
        + [await _row(model, a, update_waiting=True) for a in updates],
        may_issue=user.may("issue"),
        may_approve=user.may("approve"),
        label=label,
        beijing=beijing,
    )


# -- compose --------------------------------------------------------------------------------------


@dataclass
class Township:
    code: str
    name: str
    villages: list[Village] = field(default_factory=list)


@dataclass(frozen=True)
class MapPoint:
    code: str
    name: str
    x: float
    y: float


@dataclass
class Draft:
    """The form's values as the operator typed them (kept on a validation error)."""

    event: str = ""
    level: str = "blue"
    areas: tuple[str, ...] = ()
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    exercise: bool = True
    headline: str = ""
    description: str = ""
    instruction: str = ""
    expires: str = ""
    updates: str = ""  # an issued alert this form updates
    revise: str = ""  # a returned draft this form resubmits


def _townships(villages: Sequence[Village]) -> list[Township]:
    found: dict[str, Township] = {}
    for village in villages:
        code = village.township_code
        found.setdefault(code, Township(code, village.township or code)).villages.append(village)
    return list(found.values())


def _map_points(villages: Sequence[Village]) -> tuple[list[MapPoint], float, float]:
    """Villages with coordinates projected (north up) into a box at most MAP_WIDTH × MAP_HEIGHT; and the
    box's width and height."""
    placed = [(v, float(v.lat), float(v.lon)) for v in villages if v.lat is not None and v.lon is not None]
    if not placed:
        return [], 0.0, 0.0
    lats, lons = [lat for _, lat, _ in placed], [lon for _, _, lon in placed]
    squeeze = math.cos(math.radians(sum(lats) / len(lats)))  # a degree of longitude is shorter up north
    span_x = max((max(lons) - min(lons)) * squeeze, 1e-6)
    span_y = max(max(lats) - min(lats), 1e-6)
    scale = min((MAP_WIDTH - 2 * MAP_PAD) / span_x, (MAP_HEIGHT - 2 * MAP_PAD) / span_y)
    points = [
        MapPoint(
            v.code,
            v.name,
            round(MAP_PAD + (lon - min(lons)) * squeeze * scale, 1),
            round(MAP_PAD + (max(lats) - lat) * scale, 1),
        )
        for v, lat, lon in placed
    ]
    return points, round(span_x * scale + 2 * MAP_PAD, 1), round(span_y * scale + 2 * MAP_PAD, 1)


def _approval_matrix(service: Broadcaster, areas: Sequence[str]) -> dict[str, dict[str, bool]]:
    """Whether an alert needs a second person, per level and for a drill / an Actual alert."""
    matrix: dict[str, dict[str, bool]] = {}
    for level in Level:
        matrix[level.value] = {
            kind: service.needs_approval(
                AlertRequest(event="-", level=level, areas=tuple(areas[:1]), exercise=kind == "exercise")
            )
            for kind in ("exercise", "actual")
        }
    return matrix


def _update_matrix(service: Broadcaster, updated: Alert) -> dict[str, dict[str, bool]]:
    """As `_approval_matrix` for an update of `updated`: judged on the new level and the alert's own kind
    (ticking "exercise" does not take an Actual alert out of the rule)."""
    matrix = _approval_matrix(service, updated.areas)
    kind = "exercise" if updated.exercise else "actual"
    return {level: dict.fromkeys(row, row[kind]) for level, row in matrix.items()}


async def _compose_page(
    request: web.Request,
    draft: Draft,
    *,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    service = request.app[BROADCASTER]
    directory = service.directory
    villages = await directory.villages((await directory.village_codes())[:MAP_VILLAGES])
    points, width, height = _map_points(villages)
    audiences = list(service.audiences)
    title = t("起草预警", "Compose an alert")
    matrix = _approval_matrix(service, [v.code for v in villages[:1]])
    if draft.updates:
        title = t("升级/更新预警 {id}", "Update alert {id}", id=draft.updates)
        updated = await service.alerts.find(draft.updates)
        if updated is not None:
            matrix = _update_matrix(service, updated)
    elif draft.revise:
        title = t("修改退回的预警 {id}", "Revise returned alert {id}", id=draft.revise)
    return render_page(
        request,
        "console/compose.html",
        status=status,
        title=title,
        draft=draft,
        errors=dict(errors or {}),
        events=EVENTS,
        levels=[(lv.value, label("level", lv.value)) for lv in Level],
        townships=_townships(villages),
        points=points,
        map_width=width,
        map_height=height,
        audiences=[(name, label("audience", name)) for name in audiences],
        expires_hours=EXPIRES_HOURS,
        approval=json.dumps(matrix),
        max_segments=service.settings.sms.max_segments,
        labels_audience=dict(labels("audience")),
        labels_channel=dict(labels("channel")),
    )


def _draft_of(alert: Alert) -> Draft:
    return Draft(
        event=alert.event,
        level=alert.level.value,
        areas=alert.areas,
        audiences=alert.audiences,
        exercise=alert.exercise,
        headline=alert.headline,
        description=alert.description,
        instruction=alert.instruction,
        expires=alert.expires.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if alert.expires else "",
    )


@requires("issue")
async def compose_form(request: web.Request) -> web.Response:
    """The compose form, empty, or (`?from=ID`) filled from a returned draft or an issued alert."""
    _user(request)
    source = request.query.get("from", "")
    if not source:
        return await _compose_page(request, Draft())
    alert = await request.app[BROADCASTER].alerts.find(source)
    if alert is None:
        raise web.HTTPNotFound(text=t("没有这条预警", "no such alert"))
    draft = _draft_of(alert)
    if alert.state is AlertState.ISSUED:
        draft.updates = alert.id
    elif alert.state is AlertState.DRAFT:
        draft.revise = alert.id
    else:
        return await _compose_page(
            request,
            Draft(),
            errors={
                "form": t(
                    "预警 {id} 是“{s}”状态，不能修改或更新；可以据此起草一条新的。",
                    "alert {id} is {s}: it cannot be revised or updated; compose a new one instead.",
                    id=alert.id,
                    s=label("state", alert.state.value),
                )
            },
            status=409,
        )
    return await _compose_page(request, draft)


def _areas(chosen: Sequence[str]) -> tuple[str, ...]:
    """The areas picked, without a village whose township is picked too (the township covers it)."""
    picked = list(dict.fromkeys(a.strip() for a in chosen if a.strip()))
    return tuple(a for a in picked if not any(o != a and a.startswith(o) for o in picked))


def _expires(text: str, now: datetime) -> str | None:
    """`6` (hours from now) or a time (Beijing time unless it says otherwise) as ISO 8601; "" → None.

    Raises:
        FieldError: neither.
    """
    text = text.strip()
    if not text:
        return None
    try:
        hours = float(text)
    except ValueError:
        pass
    else:
        if not 0 < hours <= 24 * 30:
            raise FieldError(
                t("有效时长应在 0 到 720 小时之间", "the duration must be between 0 and 720 hours"),
                field="expires",
            )
        return (now + timedelta(hours=hours)).isoformat()
    try:
        when = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise FieldError(
            t(
                "有效期应为小时数（如 6）或到期时间（如 2026-08-01 18:00）",
                "expires must be hours (e.g. 6) or a time (e.g. 2026-08-01 18:00)",
            ),
            field="expires",
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=BEIJING)).isoformat()


def _draft_from_form(form: MultiDictProxy[Any]) -> Draft:
    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    return Draft(
        event=text("event").strip(),
        level=text("level") or "blue",
        areas=_areas([a for a in form.getall("areas", []) if isinstance(a, str)]),
        audiences=tuple(a for a in form.getall("audiences", []) if isinstance(a, str)),
        exercise=text("exercise") == "on",
        headline=text("headline"),
        description=text("description"),
        instruction=text("instruction"),
        expires=text("expires"),
        updates=text("updates"),
        revise=text("revise"),
    )


def _alert_request(draft: Draft) -> AlertRequest:
    """Raises FieldError (naming the field) or UsageError, as the API would."""
    if not draft.event:
        raise FieldError(t("请填写预警事件，如 台风", "enter the event, e.g. Typhoon"), field="event")
    if not draft.areas:
        raise FieldError(t("请至少选择一个村或乡镇", "pick at least one village or township"), field="areas")
    if not draft.audiences:
        raise FieldError(t("请至少选择一类发送对象", "pick at least one audience"), field="audiences")
    body: dict[str, Any] = {
        "event": draft.event,
        "level": draft.level,
        "areas": list(draft.areas),
        "audiences": list(draft.audiences),
        "exercise": draft.exercise,
        "headline": draft.headline,
        "description": draft.description,
        "instruction": draft.instruction,
        "expires": _expires(draft.expires, datetime.now(UTC)),
    }
    return request_from_json(body)


async def _submit(request: web.Request, draft: Draft, user: User) -> tuple[Alert, bool]:
    """Issue, update or submit the draft; whether it now waits for approval. What goes out at once is
    queued in the background, after the answer."""
    service = request.app[BROADCASTER]
    alert_request = _alert_request(draft)
    actor, role = user.name, user.role.value
    if draft.updates:
        alert = await service.propose_update(draft.updates, alert_request, actor=actor, role=role)
        proposal = await service.proposal(alert.id)
        if proposal is not None and proposal.version == alert.version:
            return alert, True
    elif draft.revise:
        alert = await service.revise(draft.revise, alert_request, actor=actor, role=role)
    else:
        alert = await service.submit(alert_request, actor=actor, role=role)
    if alert.state is AlertState.ISSUED:
        in_background(request.app, BACKGROUND, service.fan_out(alert))
    return alert, alert.state is AlertState.PENDING_APPROVAL


@requires("issue")
async def compose_submit(request: web.Request) -> web.Response:
    """Issue (303 to the live page) or submit for approval (303 to the review page); a refused field
    re-renders the form with the operator's values and the message next to that field (400)."""
    user = _user(request)
    draft = _draft_from_form(await request.post())
    try:
        alert, waiting = await _submit(request, draft, user)
    except FieldError as exc:
        return await _compose_page(request, draft, errors={exc.field: str(exc)}, status=400)
    except AlertNotFound as exc:
        return await _compose_page(request, draft, errors={"form": str(exc)}, status=404)
    except AlertError as exc:
        return await _compose_page(request, draft, errors={"form": str(exc)}, status=409)
    except UsageError as exc:
        return await _compose_page(request, draft, errors={"form": str(exc)}, status=400)
    if waiting:
        raise web.HTTPSeeOther(f"/console/approvals/{quote(alert.id)}")
    raise web.HTTPSeeOther(f"/console/alerts/{quote(alert.id)}")


# -- approvals ------------------------------------------------------------------------------------


@requires("read")
async def approvals_list(request: web.Request) -> web.Response:
    """Alerts waiting for a second person, oldest first (the longest waiting on top)."""
    user = _user(request)
    model = request.app[READ_MODEL]
    recent = await model.alerts.recent(limit=PENDING_SCAN)
    waiting = sorted((a for a in recent if a.state is AlertState.PENDING_APPROVAL), key=lambda a: a.sent)
    returned = [a for a in recent if a.state is AlertState.DRAFT]
    updates = await _updates_waiting(request)
    return render_page(
        request,
        "console/approvals.html",
        title=t("待审批", "Approvals"),
        waiting=[await _row(model, a) for a in waiting]
        + [await _row(model, a, update_waiting=True) for a in updates],
        returned=[await _row(model, a) for a in returned],
        may_approve=user.may("approve"),
        label=label,
        beijing=beijing,
    )


def _request_of(alert: Alert) -> AlertRequest:
    return AlertRequest(
        event=alert.event,
        level=alert.level,
        areas=alert.areas,
        headline=alert.headline,
        description=alert.description,
        instruction=alert.instruction,
        expires=alert.expires,
        exercise=alert.exercise,
        audiences=alert.audiences,
        event_code=alert.event_code,
    )


async def _approval_page(
    request: web.Request,
    alert_id: str,
    *,
    reason: str = "",
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    user = _user(request)
    service = request.app[BROADCASTER]
    alert = await service.alerts.find(alert_id)
    if alert is None:
        raise web.HTTPNotFound(text=t("没有这条预警", "no such alert"))
    proposal = await service.proposal(alert.id) if alert.state is AlertState.ISSUED else None
    preview: Preview | None = None
    problem = ""
    try:
        if proposal is not None:
            found = await service.preview_proposal(alert.id)
            preview = found[1] if found is not None else None
        else:
            preview = await service.preview(_request_of(alert))
    except UsageError as exc:  # e.g. expired meanwhile: the approver must see why it cannot go out
        problem = str(exc)
    moves = await service.moves(alert.id)
    submitted = next((m for m in reversed(moves) if m.action in ("submit", "revise")), None)
    names = await service.area_names(alert.areas)
    changes = await _changes(service, alert, proposal) if proposal is not None else []
    estimate_body = dict(proposal.request) if proposal is not None else _estimate_body(alert)
    waits = alert.state is AlertState.PENDING_APPROVAL or proposal is not None
    mine = (
        proposal.actor == user.name
        if proposal is not None
        else (submitted is not None and submitted.actor == user.name)
    )
    return render_page(
        request,
        "console/approval.html",
        status=status,
        title=t("审批：{e}", "Review: {e}", e=alert.event),
        alert=alert,
        area_names="、".join(names.values()) or "、".join(alert.areas),
        preview=preview,
        problem=problem,
        moves=moves,
        submitted=submitted,
        proposal=proposal,
        changes=changes,
        mine=mine,
        may_approve=user.may("approve") and waits,
        may_revise=user.may("issue") and alert.state is AlertState.DRAFT,
        alert_json=json.dumps(estimate_body, ensure_ascii=False),
        reason=reason,
        errors=dict(errors or {}),
        label=label,
        beijing=beijing,
        move_words=_move_words(),
        role_names=_role_names(),
        max_segments=service.settings.sms.max_segments,
    )


@dataclass(frozen=True)
class Change:
    """One fact of an issued alert beside what its waiting update makes of it."""

    field: str
    what: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def _changes(service: Broadcaster, alert: Alert, proposal: Proposal) -> list[Change]:
    """What the update changes: level, event, areas, headline, instruction, expiry (all shown; the
    template marks those that differ)."""
    proposed = request_from_fields(proposal.request)

    async def areas(codes: Sequence[str]) -> str:
        names = await service.area_names(codes)
        return "、".join(names.values()) or "、".join(codes)

    def expires(when: datetime | None) -> str:
        return beijing(when, full=True) if when else t("未设", "not set")

    return [
        Change("level", t("级别", "Level"), alert.level.value, proposed.level.value),
        Change("event", t("事件", "Event"), alert.event, proposed.event.strip()),
        Change("areas", t("区域", "Areas"), await areas(alert.areas), await areas(proposed.areas)),
        Change("headline", t("标题", "Headline"), alert.headline, proposed.headline),
        Change("description", t("情况说明", "Description"), alert.description, proposed.description),
        Change("instruction", t("防御指引", "Instruction"), alert.instruction, proposed.instruction),
        Change("expires", t("有效至", "Expires"), expires(alert.expires), expires(proposed.expires)),
    ]


def _role_names() -> dict[str, str]:
    return {
        "viewer": t("查看员", "viewer"),
        "operator": t("值班员", "operator"),
        "approver": t("审批人", "approver"),
        "admin": t("管理员", "admin"),
    }


def _move_words() -> dict[str, str]:
    """What each recorded move is called on the review page."""
    return {
        "draft": t("起草", "drafted"),
        "submit": t("提交审批", "submitted for approval"),
        "revise": t("修改后重新提交", "revised and resubmitted"),
        "return": t("退回修改", "returned for editing"),
        "reject": t("驳回", "rejected"),
        "approve": t("批准", "approved"),
        "issue": t("发布", "issued"),
        "propose_update": t("提出更新（待审批）", "proposed an update (waiting for approval)"),
        "update": t("更新", "updated"),
        "cancel": t("撤销", "cancelled"),
    }


def _estimate_body(alert: Alert) -> dict[str, Any]:
    """The alert as the estimate API's JSON body (the review page asks for its reach with it)."""
    return {
        "event": alert.event,
        "level": alert.level.value,
        "areas": list(alert.areas),
        "audiences": list(alert.audiences),
        "exercise": alert.exercise,
        "headline": alert.headline,
        "description": alert.description,
        "instruction": alert.instruction,
        "expires": alert.expires.isoformat() if alert.expires else None,
    }


@requires("read")
async def approval_page(request: web.Request) -> web.Response:
    """The review page: the alert, its exact texts per audience × channel, its reach, who and when."""
    return await _approval_page(request, request.match_info["id"])


async def _decide(
    request: web.Request, alert_id: str, decision: str, reason: str, user: User, *, proposal: str = ""
) -> Alert:
    """`proposal`: the id of the waiting update the approver reviewed (approving refuses another)."""
    service = request.app[BROADCASTER]
    actor, role = user.name, user.role.value
    if decision == "approve":
        alert = await service.approve(alert_id, actor=actor, role=role, proposal=proposal)
        in_background(request.app, BACKGROUND, service.fan_out(alert))
        return alert
    # A missing or over-long reason is refused by the service itself (FieldError naming `reason`).
    if decision == "return":
        return await service.return_for_edit(alert_id, actor=actor, role=role, reason=reason)
    return await service.reject(alert_id, actor=actor, role=role, reason=reason)


@requires("approve")
async def approval_decide(request: web.Request) -> web.Response:
    """approve (→ live page, sending starts), return for edit or reject (reason required) → review page."""
    user = _user(request)
    alert_id = request.match_info["id"]
    form = await request.post()
    decision, reason = str(form.get("decision", "")), str(form.get("reason", ""))
    proposal = str(form.get("proposal", ""))
    if decision not in DECISIONS:
        errors = {"decision": t("请选择批准、退回修改或驳回", "choose approve, return or reject")}
        return await _approval_page(request, alert_id, reason=reason, errors=errors, status=400)
    try:
        alert = await _decide(request, alert_id, decision, reason, user, proposal=proposal)
    except FieldError as exc:
        return await _approval_page(
            request, alert_id, reason=reason, errors={exc.field: str(exc)}, status=400
        )
    except AlertNotFound:
        raise web.HTTPNotFound(text=t("没有这条预警", "no such alert")) from None
    except AlertError as exc:  # the two-person rule, or no longer waiting
        return await _approval_page(request, alert_id, reason=reason, errors={"form": str(exc)}, status=409)
    except UsageError as exc:
        return await _approval_page(request, alert_id, reason=reason, errors={"form": str(exc)}, status=400)
    if decision == "approve" and alert.state is AlertState.ISSUED:
        raise web.HTTPSeeOther(f"/console/alerts/{quote(alert.id)}")
    # Returned or rejected (an update of an issued alert too): the review page shows the recorded move.
    raise web.HTTPSeeOther(f"/console/approvals/{quote(alert.id)}")


def console_routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/", dashboard),
        web.get("/console/compose", compose_form),
        web.post("/console/compose", compose_submit),
        web.get("/console/approvals", approvals_list),
        web.get("/console/approvals/{id}", approval_page),
        web.post("/console/approvals/{id}", approval_decide),
    ]
