"""The JSON API (DESIGN §5.2): alerts — issue, list, read, cancel — behind bearer tokens and roles."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from warning.approval import reason_field
from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster, parse_levels
from warning.cap.atom import atom_feed
from warning.config import Settings
from warning.errors import AlertError, AlertNotFound, CapError, FieldError, MissingField, UsageError
from warning.i18n import current_language, t
from warning.model import Alert, AlertState, AlertStatus
from warning.readmodel import ReadModel, counts_json
from warning.store.connection import ReadersBusy
from warning.users import User, Users
from warning.views import (
    UNREACHED_MAX_PAGE,
    UNREACHED_PAGE,
    VILLAGES_MAX_PAGE,
    VILLAGES_PAGE,
    ReadGate,
    ViewCache,
    reach_csv,
    reach_view,
)
from warning.web.access import USER, access_middleware, public, requires, role_message, unauthorized
from warning.web.bodies import error_document, int_param, query_value, read_bytes, read_json_object

log = logging.getLogger(__name__)

_ALERT_FIELDS = {
    "id",
    "event",
    "level",
    "areas",
    "headline",
    "description",
    "instruction",
    "expires",
    "exercise",
    "audiences",
    "event_code",
}


# An alert id of the caller's own choosing ("" lets the service choose one).
ALERT_ID = re.compile(r"([A-Za-z0-9][A-Za-z0-9._:@+-]{0,127})?", re.ASCII)
# Who may see the cadres' signed links: those who may issue (operators and up), not viewers.
LINKS_ACTION = "issue"
EVENTS_MAX_SECONDS = 3600  # an event stream ends after an hour; clients reconnect
TASKS_PAGE = 500  # task lists in one page of /tasks unless `limit` says fewer (at most TASKS_MAX_PAGE)
TASKS_MAX_PAGE = 1000
BUSY_RETRY_AFTER = 1  # seconds a reader turned away with 503 is asked to wait


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


CAP_ROUTE = "/api/v1/alerts/{id}/cap"  # public for public alerts: the Atom feed links it for anyone


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response(error_document(code, message, field), status=status, dumps=_dumps)


def alert_json(alert: Alert) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(alert.to_json())
    return document | {"exercise": alert.exercise}


def request_from_json(body: dict[str, Any]) -> AlertRequest:
    """Raises UsageError naming the offending field (attached as `.field`)."""

    def bad(field: str, zh: str, en: str) -> FieldError:
        return FieldError(t(zh, en, f=field), field=field)

    for key in body:
        if key not in _ALERT_FIELDS:
            raise bad(key, "未知字段 {f}", "unknown field {f}")
    for key in ("event", "level", "areas"):
        if key not in body:
            raise bad(key, "缺少字段 {f}", "missing field {f}")
    areas = body["areas"]
    if isinstance(areas, str):
        areas = [a.strip() for a in areas.split(",") if a.strip()]
    if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
        raise bad("areas", "{f} 应为区域代码的列表", "{f} must be a list of area codes")
    audiences = body.get("audiences", list(DEFAULT_AUDIENCES))
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise bad("audiences", "{f} 应为受众名称的列表", "{f} must be a list of audience names")
    expires = None
    if body.get("expires") is not None:
        try:
            expires = datetime.fromisoformat(str(body["expires"]))
        except ValueError:
            raise bad(
                "expires",
                "{f} 应为 ISO 8601 时间，如 2026-08-01T12:00:00+08:00",
                "{f} must be an ISO 8601 time such as 2026-08-01T12:00:00+08:00",
            ) from None
    for key in ("event", "headline", "description", "instruction", "event_code", "id"):
        if key in body and not isinstance(body[key], str):
            raise bad(key, "{f} 应为字符串", "{f} must be a string")
    if not ALERT_ID.fullmatch(body.get("id", "")):
        # It becomes the CAP identifier and part of URLs: CAP forbids spaces, commas, "<" and "&".
        raise bad(
            "id",
            "{f} 只能含字母、数字和 . _ : @ + -（最多 128 个字符）",
            "{f} may hold only letters, digits and . _ : @ + - (at most 128 characters)",
        )
    if "exercise" in body and not isinstance(body["exercise"], bool):
        raise bad("exercise", "{f} 应为 true 或 false", "{f} must be true or false")
    return AlertRequest(
        event=body["event"],
        level=parse_levels(str(body["level"])),
        areas=tuple(areas),
        headline=body.get("headline", ""),
        description=body.get("description", ""),
        instruction=body.get("instruction", ""),
        expires=expires,
        exercise=body.get("exercise", False),
        audiences=tuple(audiences),
        event_code=body.get("event_code", ""),
        id=body.get("id", ""),
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def busy() -> web.Response:
    """503 + Retry-After: the readers' Redis pool is saturated (never a 500; the writers are unaffected)."""
    response = error(
        503,
        "busy",
        t(
            "查看的人太多，请 {s} 秒后重试（发送不受影响）",
            "too many readers at once: retry in {s} s (sending is unaffected)",
            s=BUSY_RETRY_AFTER,
        ),
    )
    response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
    return response


def auth_middleware(
    users: web.AppKey[Users],
    readers: web.AppKey[Users] | None = None,
    gate: ReadGate | None = None,
    settings: web.AppKey[Settings] | None = None,
) -> Any:
    """Access for every route (warning.web.access.access_middleware: language, user from a Bearer token
    or the session cookie, the route's declaration, CSRF), and our JSON errors for the /api/ routes.

    `readers` (optional) authenticates GET requests through the readers' Redis pool (a token checked
    once serves for AUTH_CACHE_TTL), so a crowd of readers never queues for the connections that issuing
    and sending use; `gate` (optional) holds API reads to a budget of reads a second (503 beyond)."""
    access = access_middleware(users, readers, gate, settings=settings, busy=busy)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await access(request, handler)  # type: ignore[no-any-return]

        async def mapped(request: web.Request) -> web.StreamResponse:
            return await _api_errors(request, handler)

        return await access(request, mapped)  # type: ignore[no-any-return]

    return middleware


async def _api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our errors as the API's JSON error body."""
    try:
        return await handler(request)
    except CapError as exc:
        return error(400, "invalid_cap", str(exc), exc.element)
    except MissingField as exc:
        return error(400, "missing_field", str(exc), exc.field)
    except FieldError as exc:
        return error(400, "invalid", str(exc), exc.field)
    except UsageError as exc:
        return error(400, "invalid", str(exc))
    except AlertNotFound as exc:
        return error(404, "not_found", str(exc))
    except AlertError as exc:
        return error(409, "conflict", str(exc))
    except ReadersBusy:
        return busy()


def require_user(request: web.Request, action: str) -> User:
    user = request[USER]
    if user is None:  # the middleware answers 401 first; this keeps a new public route from skipping it
        raise web.HTTPUnauthorized(text=unauthorized().text, content_type="application/json")
    if not user.may(action):
        raise web.HTTPForbidden(
            text=json.dumps(error_document("forbidden", role_message(user, action)), ensure_ascii=False),
            content_type="application/json",
        )
    return user


def _public(alert: Alert) -> bool:
    return alert.state is AlertState.ISSUED and alert.status is AlertStatus.ACTUAL


def in_background(app: web.Application, tasks: web.AppKey[set[asyncio.Task[Any]]], work: Any) -> None:
    """Run a fan-out after the response; the app waits for it on shutdown, and a crash is resumed anyway."""
    task = asyncio.create_task(work)
    app[tasks].add(task)
    task.add_done_callback(app[tasks].discard)


def _cursor_param(request: web.Request, name: str) -> str:
    """An opaque page cursor from the query: digits and one dot at most, as the views hand them out."""
    value = query_value(request, name)
    # At most 19 digits a part: a Redis SCAN cursor is below 2**64, and a larger one is a Redis error (500).
    if (
        len(value) > 40
        or not all(c.isdigit() or c == "." for c in value)
        or any(len(part) > 19 for part in value.split("."))
    ):
        raise FieldError(
            t(
                "{f} 无效：请用上一页返回的值",
                "{f} is invalid: pass the value the previous page returned",
                f=name,
            ),
            field=name,
        )
    return value


def api_routes(
    broadcaster: web.AppKey[Broadcaster],
    background: web.AppKey[set[asyncio.Task[Any]]],
    reader: web.AppKey[ReadModel] | None = None,
) -> list[web.RouteDef]:
    """The /api/v1 routes. `reader` (optional): the read model on the readers' own Redis pool, which the
    read-only routes use; without it they read through the broadcaster's pool."""
    views: ViewCache[tuple[bytes, str, dict[str, str]]] = ViewCache(0.0)
    tasks_cache: ViewCache[list[dict[str, Any]]] = ViewCache(0.0)
    tuned: list[bool] = []

    def changed(alert_id: str) -> None:
        # A write through this process is seen by the next read at once, not after the cache's lifetime.
        for cache in (views, tasks_cache):
            cache.forget(lambda key: isinstance(key, tuple) and len(key) > 1 and key[1] == alert_id)

    def reads(request: web.Request) -> ReadModel:
        if not tuned:  # the cache's lifetime comes from the settings, known once the app runs
            views.ttl = tasks_cache.ttl = request.app[broadcaster].settings.server.read_cache_ttl
            tuned.append(True)
        if reader is not None and reader in request.app:
            return request.app[reader]
        return request.app[broadcaster]

    @requires("issue")
    async def create_alert(request: web.Request) -> web.Response:
        """Issue an alert: validated, rendered and saved before 201; recipients are queued in the background.

        Under the two-person rule (`[approval] level`) the alert is saved rendered as pending_approval and
        answered 202: nothing is queued until another approver approves it."""
        user = require_user(request, "issue")
        service = request.app[broadcaster]
        if request.content_type in ("application/cap+xml", "application/xml", "text/xml"):
            outcome = await service.ingest_cap(
                await read_bytes(request), actor=user.name, role=user.role.value, approval=True
            )
            if outcome.action == "issued":
                in_background(request.app, background, service.fan_out(outcome.alert))
            status = {"issued": 201, "draft": 201, "pending_approval": 202}.get(outcome.action, 200)
            return web.json_response(
                alert_json(outcome.alert) | {"cap_action": outcome.action}, status=status
            )
        body = await read_json_object(request)
        alert = await service.submit(request_from_json(body), actor=user.name, role=user.role.value)
        if alert.state is AlertState.PENDING_APPROVAL:
            return web.json_response(alert_json(alert), status=202)
        in_background(request.app, background, service.fan_out(alert))
        return web.json_response(alert_json(alert), status=201)

    @requires("issue")
    async def preview_alert(request: web.Request) -> web.Response:
        """What issuing this JSON body would send (texts, recipients per audience × channel); nothing saved."""
        require_user(request, "issue")
        body = await read_json_object(request)
        preview = await request.app[broadcaster].preview(request_from_json(body))
        document = dataclasses.asdict(preview) | {
            "alert": alert_json(preview.alert),
            "recipients": preview.recipients,
            "no_address": preview.no_address,
        }
        return web.json_response(document, dumps=_dumps)

    @requires("read")
    async def list_alerts(request: web.Request) -> web.Response:
        require_user(request, "read")
        limit = int_param(request, "limit", 50, 1000)
        alerts = await request.app[broadcaster].alerts.recent(limit=limit)
        return web.json_response({"alerts": [alert_json(a) for a in alerts]})

    @requires("read")
    async def get_alert(request: web.Request) -> web.Response:
        require_user(request, "read")
        model, alert_id = reads(request), request.match_info["id"]

        async def build() -> tuple[bytes, str, dict[str, str]]:
            alert, counts = await model.status(alert_id)
            body = json.dumps(alert_json(alert) | {"deliveries": counts_json(counts)})
            return body.encode(), "application/json", {}

        body, content_type, headers = await views.get(("status", alert_id), build)
        return web.Response(body=body, content_type=content_type, headers=headers)

    @requires("issue")
    async def update_alert(request: web.Request) -> web.Response:
        """Replace an issued alert with a new version (same JSON as creating one): 200 with the new version,
        its recipients queued in the background. Under the two-person rule (judged on the update's level)
        202: the issued version stays as it is, still going out, and the update waits for another
        approver as the alert's `proposal` (approve, return and reject act on it)."""
        user = require_user(request, "issue")
        service, alert_id = request.app[broadcaster], request.match_info["id"]
        body = await read_json_object(request)
        alert = await service.propose_update(
            alert_id, request_from_json(body), actor=user.name, role=user.role.value
        )
        changed(alert_id)
        proposal = await service.proposal(alert.id)
        if proposal is not None and proposal.version == alert.version:
            return web.json_response(alert_json(alert) | {"proposal": proposal.public()}, status=202)
        in_background(request.app, background, service.fan_out(alert))
        return web.json_response(alert_json(alert))

    @public
    async def alert_cap(request: web.Request) -> web.Response:
        """The alert as CAP 1.2 XML; without a token only issued, non-exercise alerts are visible.

        An anonymous caller gets the same 401 for an unknown id as for a non-public alert, so nothing
        tells them which ids exist.
        """
        service = request.app[broadcaster]
        if request[USER] is None:
            found = await service.alerts.find(request.match_info["id"])
            if found is None or not _public(found):
                return unauthorized()
            alert = found
        else:
            alert = await service.alerts.get(request.match_info["id"])
        body = await service.cap_document(alert)
        return web.Response(body=body, content_type="application/cap+xml", charset="utf-8")

    @public
    async def atom(request: web.Request) -> web.Response:
        """Public Atom index of issued, non-exercise alerts, each linking its CAP document."""
        service = request.app[broadcaster]
        public = [a for a in await service.alerts.recent(limit=100) if _public(a)]
        body = atom_feed(
            public,
            base_url=service.settings.server.base_url,
            title=t("预警信息", "Warnings"),
            updated=max((a.sent for a in public), default=datetime.now(UTC)),
        )
        return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")

    @requires("approve")
    async def approve_alert(request: web.Request) -> web.Response:
        """Issue an alert waiting for approval, or a draft (two-person rule: an approver other than whoever
        submitted or edited it); 200 once it is issued, recipients are queued in the background."""
        user = require_user(request, "approve")
        service = request.app[broadcaster]
        alert = await service.approve(request.match_info["id"], actor=user.name, role=user.role.value)
        in_background(request.app, background, service.fan_out(alert))
        changed(request.match_info["id"])
        return web.json_response(alert_json(alert))

    @requires("approve")
    async def reject_alert(request: web.Request) -> web.Response:
        """Refuse an alert waiting for approval or a draft; body `{"reason": "…"}` (required); never issued."""
        user = require_user(request, "approve")
        reason = reason_field(await read_json_object(request) if request.content_length else {})
        alert = await request.app[broadcaster].reject(
            request.match_info["id"], actor=user.name, role=user.role.value, reason=reason
        )
        changed(request.match_info["id"])
        return web.json_response(alert_json(alert))

    @requires("read")
    async def alert_events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: the alert's progress every second until it is no longer issued."""
        require_user(request, "read")
        service = reads(request)
        alert = await service.alerts.get(request.match_info["id"])
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        for _ in range(EVENTS_MAX_SECONDS):
            alert, counts = await service.status(alert.id)
            must = (await service.reach.counts(alert.id)).scope("must")
            progress = {
                "alert_id": alert.id,
                "state": alert.state.value,
                "version": alert.version,
                "deliveries": counts_json(counts),
                "must_reach": must,
                "unreached_total": await service.reach.open_count(alert.id),
            }
            name = "progress" if alert.state is AlertState.ISSUED else "end"
            try:
                await response.write(f"event: {name}\ndata: {_dumps(progress)}\n\n".encode())
            except ConnectionResetError:  # the client went away: nothing to answer, nothing to log
                return response
            if name == "end":
                break
            await asyncio.sleep(1)
        return response

    @requires("cancel")
    async def cancel_alert(request: web.Request) -> web.Response:
        """Cancel; the body (optional) is `{"silent": false, "note": "…"}`: the all-clear goes out unless silent."""
        user = require_user(request, "cancel")
        body = await read_json_object(request) if request.content_length else {}
        unknown = sorted(set(body) - {"silent", "note"})
        if unknown:
            return error(
                400,
                "unknown_field",
                t("未知字段 {f}（可用：silent、note）", "unknown field {f} (use silent, note)", f=unknown[0]),
                unknown[0],
            )
        silent, note = body.get("silent", False), body.get("note", "")
        if not isinstance(silent, bool) or not isinstance(note, str) or len(note) > 500:
            field = "silent" if not isinstance(silent, bool) else "note"
            return error(
                400,
                "invalid_field",
                t(
                    "{f} 无效：silent 为 true/false，note 为不超过 500 字的文字",
                    "{f} is invalid: silent is true/false, note is text of at most 500 characters",
                    f=field,
                ),
                field,
            )
        outcome = await request.app[broadcaster].cancel(
            request.match_info["id"], silent=silent, note=note, actor=user.name, role=user.role.value
        )
        changed(request.match_info["id"])
        return web.json_response({**alert_json(outcome.alert), "all_clear": outcome.all_clear})

    @requires("read")
    async def alert_reach(request: web.Request) -> web.Response:
        """Reach per village and audience (counters), a page of villages and a page of the unreached
        must-reach residents with who answers for them (`cursor` / `villages_cursor` continue).

        Identical reads share one build for `server.read_cache_ttl`; a saturated readers' pool is 503."""
        require_user(request, "read")
        model, alert_id = reads(request), request.match_info["id"]
        limit = int_param(request, "limit", UNREACHED_PAGE, UNREACHED_MAX_PAGE)
        villages_limit = int_param(request, "villages_limit", VILLAGES_PAGE, VILLAGES_MAX_PAGE)
        cursor, villages_cursor = _cursor_param(request, "cursor"), _cursor_param(request, "villages_cursor")
        output = query_value(request, "format", "json")
        if output not in ("json", "csv"):
            raise FieldError(t("format 应为 json 或 csv", "format must be json or csv"), field="format")
        csv_format = output == "csv"

        async def build() -> tuple[bytes, str, dict[str, str]]:
            try:
                view = await reach_view(
                    model,
                    alert_id,
                    limit=limit,
                    cursor=cursor,
                    villages_limit=villages_limit,
                    villages_cursor=villages_cursor,
                )
            except ValueError:
                raise FieldError(
                    t(
                        "cursor 无效：请用上一页返回的值",
                        "cursor is invalid: pass the value the previous page returned",
                    ),
                    field="cursor",
                ) from None
            if csv_format:
                disposition = f'attachment; filename="reach-{view["alert_id"]}.csv"'
                return reach_csv(view).encode(), "text/csv", {"Content-Disposition": disposition}
            return _dumps(view).encode(), "application/json", {}

        language = current_language()
        key = ("reach", alert_id, limit, cursor, villages_limit, villages_cursor, csv_format, language)
        body, content_type, headers = await views.get(key, build)
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    @requires("read")
    async def alert_tasks(request: web.Request) -> web.Response:
        """The cadres' task lists: per contact how many residents, how many confirmed, and — for
        operators and up — the signed page link (a link lets whoever holds it confirm residents, so a
        viewer sees names and counts only)."""
        user = require_user(request, "read")
        service, alert_id = reads(request), request.match_info["id"]
        limit = int_param(request, "limit", TASKS_PAGE, TASKS_MAX_PAGE)
        cursor = _cursor_param(request, "cursor")
        if "." in cursor:
            raise FieldError(t("cursor 无效", "cursor is invalid"), field="cursor")
        first = int(cursor or "0")

        async def build() -> list[dict[str, Any]]:
            alert = await service.alerts.get(alert_id)
            return [dataclasses.asdict(task) for task in await service.tasks.lists(alert)]

        every: list[dict[str, Any]] = await tasks_cache.get(("tasks", alert_id), build)
        tasks = [dict(task) for task in every[first : first + limit]]
        if not user.may(LINKS_ACTION):
            for task in tasks:
                del task["link"]
        after = first + len(tasks)
        document = {
            "alert_id": alert_id,
            "tasks": tasks,
            "tasks_total": len(every),
            "next": str(after) if after < len(every) else None,
        }
        return web.json_response(document, dumps=_dumps)

    return [
        web.get("/api/v1/alerts/{id}/reach", alert_reach),
        web.get("/api/v1/alerts/{id}/tasks", alert_tasks),
        web.post("/api/v1/alerts/preview", preview_alert),
        web.post("/api/v1/alerts", create_alert),
        web.get("/api/v1/alerts", list_alerts),
        # Not "preview" nor "estimate": those paths are POST-only routes, and their Allow header must say so.
        web.get("/api/v1/alerts/{id:(?!(?:preview|estimate)$)[^{}/]+}", get_alert),
        web.post("/api/v1/alerts/{id}/cancel", cancel_alert),
        web.post("/api/v1/alerts/{id}/reject", reject_alert),
        web.get("/api/v1/alerts/{id}/events", alert_events),
        web.post("/api/v1/alerts/{id}/update", update_alert),
        web.post("/api/v1/alerts/{id}/approve", approve_alert),
        web.get(CAP_ROUTE, alert_cap),
        web.get("/feeds/alerts.atom", atom),
    ]
