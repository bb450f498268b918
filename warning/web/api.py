"""The JSON API (DESIGN §5.2): alerts — issue, list, read, cancel — behind bearer tokens and roles."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster, parse_levels
from warning.cap.atom import atom_feed
from warning.errors import AlertError, AlertNotFound, CapError, FieldError, MissingField, UsageError
from warning.i18n import t
from warning.model import Alert, AlertState, AlertStatus
from warning.readmodel import counts_json
from warning.users import User, Users
from warning.views import UNREACHED_LIMIT, reach_csv, reach_view
from warning.web.bodies import error_document, read_bytes, read_json_object
from warning.web.openapi import OPENAPI_PATH

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


USER: web.RequestKey[User | None] = web.RequestKey("user")
# Who may see the cadres' signed links: those who may issue (operators and up), not viewers.
LINKS_ACTION = "issue"
EVENTS_MAX_SECONDS = 3600  # an event stream ends after an hour; clients reconnect


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


CAP_ROUTE = "/api/v1/alerts/{id}/cap"  # public for public alerts: the Atom feed links it for anyone


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response(error_document(code, message, field), status=status, dumps=_dumps)


def alert_json(alert: Alert) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(alert.to_json())
    return document | {"exercise": alert.exercise}


def _request_from_json(body: dict[str, Any]) -> AlertRequest:
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


def auth_middleware(users: web.AppKey[Users]) -> Any:
    """Every /api/ route but the public OpenAPI document needs `Authorization: Bearer TOKEN`; roles per route."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/") or request.path == OPENAPI_PATH:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = await request.app[users].authenticate(token.strip()) if scheme.lower() == "bearer" else None
        # Decided by the route matched, never by the path's text: `/api/v1/alerts/cap` is another route.
        resource = request.match_info.route.resource
        public_cap = request.method == "GET" and resource is not None and resource.canonical == CAP_ROUTE
        if user is None and not public_cap:
            return _unauthorized()
        request[USER] = user  # None only on the public CAP route and the OpenAPI document
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

    return middleware


def _unauthorized() -> web.Response:
    return error(
        401,
        "unauthorized",
        t(
            "缺少或无效的令牌：请加 Authorization: Bearer 令牌（用 warning users add 创建）",
            "missing or invalid token: send Authorization: Bearer TOKEN (create one with `warning users add`)",
        ),
    )


def _require(request: web.Request, action: str) -> User:
    user = request[USER]
    if user is None:  # the middleware answers 401 first; this keeps a new public route from skipping it
        raise web.HTTPUnauthorized(text=_unauthorized().text, content_type="application/json")
    if not user.may(action):
        raise web.HTTPForbidden(
            text=json.dumps(
                {
                    "error": {
                        "code": "forbidden",
                        "message": t(
                            "角色 {r} 不能执行 {a}", "role {r} may not {a}", r=user.role.value, a=action
                        ),
                    }
                }
            ),
            content_type="application/json",
        )
    return user


def _public(alert: Alert) -> bool:
    return alert.state is AlertState.ISSUED and alert.status is AlertStatus.ACTUAL


def _in_background(app: web.Application, tasks: web.AppKey[set[asyncio.Task[Any]]], work: Any) -> None:
    """Run a fan-out after the response; the app waits for it on shutdown, and a crash is resumed anyway."""
    task = asyncio.create_task(work)
    app[tasks].add(task)
    task.add_done_callback(app[tasks].discard)


def api_routes(
    broadcaster: web.AppKey[Broadcaster], background: web.AppKey[set[asyncio.Task[Any]]]
) -> list[web.RouteDef]:
    async def create_alert(request: web.Request) -> web.Response:
        """Issue an alert: validated, rendered and saved before 201; recipients are queued in the background."""
        user = _require(request, "issue")
        service = request.app[broadcaster]
        if request.content_type in ("application/cap+xml", "application/xml", "text/xml"):
            outcome = await service.ingest_cap(
                await read_bytes(request), actor=user.name, role=user.role.value
            )
            if outcome.action == "issued":
                _in_background(request.app, background, service.fan_out(outcome.alert))
            status = 201 if outcome.action in ("issued", "draft") else 200
            return web.json_response(
                alert_json(outcome.alert) | {"cap_action": outcome.action}, status=status
            )
        body = await read_json_object(request)
        alert = await service.prepare(_request_from_json(body), actor=user.name, role=user.role.value)
        _in_background(request.app, background, service.fan_out(alert))
        return web.json_response(alert_json(alert), status=201)

    async def preview_alert(request: web.Request) -> web.Response:
        """What issuing this JSON body would send (texts, recipients per audience × channel); nothing saved."""
        _require(request, "issue")
        body = await read_json_object(request)
        preview = await request.app[broadcaster].preview(_request_from_json(body))
        document = dataclasses.asdict(preview) | {
            "alert": alert_json(preview.alert),
            "recipients": preview.recipients,
            "no_address": preview.no_address,
        }
        return web.json_response(document, dumps=_dumps)

    async def list_alerts(request: web.Request) -> web.Response:
        _require(request, "read")
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "50"))))
        except ValueError:
            raise FieldError(t("limit 应为整数", "limit must be an integer"), field="limit") from None
        alerts = await request.app[broadcaster].alerts.recent(limit=limit)
        return web.json_response({"alerts": [alert_json(a) for a in alerts]})

    async def get_alert(request: web.Request) -> web.Response:
        _require(request, "read")
        alert, counts = await request.app[broadcaster].status(request.match_info["id"])
        return web.json_response(alert_json(alert) | {"deliveries": counts_json(counts)})

    async def update_alert(request: web.Request) -> web.Response:
        """Replace an issued alert with a new version (same JSON as creating one); 200 with the new version."""
        user = _require(request, "issue")
        body = await read_json_object(request)
        alert, _ = await request.app[broadcaster].update(
            request.match_info["id"], _request_from_json(body), actor=user.name, role=user.role.value
        )
        return web.json_response(alert_json(alert))

    async def alert_cap(request: web.Request) -> web.Response:
        """The alert as CAP 1.2 XML; without a token only issued, non-exercise alerts are visible.

        An anonymous caller gets the same 401 for an unknown id as for a non-public alert, so nothing
        tells them which ids exist.
        """
        service = request.app[broadcaster]
        if request[USER] is None:
            found = await service.alerts.find(request.match_info["id"])
            if found is None or not _public(found):
                return _unauthorized()
            alert = found
        else:
            alert = await service.alerts.get(request.match_info["id"])
        body = await service.cap_document(alert)
        return web.Response(body=body, content_type="application/cap+xml", charset="utf-8")

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

    async def approve_alert(request: web.Request) -> web.Response:
        """Issue a draft (two-person rule: an approver, not the operator who drafted it, approves)."""
        user = _require(request, "approve")
        service = request.app[broadcaster]
        alert, _ = await service.approve(request.match_info["id"], actor=user.name, role=user.role.value)
        return web.json_response(alert_json(alert))

    async def reject_alert(request: web.Request) -> web.Response:
        """Refuse a draft (e.g. one a feed rule drafted); it is never issued."""
        user = _require(request, "approve")
        alert = await request.app[broadcaster].reject(
            request.match_info["id"], actor=user.name, role=user.role.value
        )
        return web.json_response(alert_json(alert))

    async def alert_events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: the alert's progress every second until it is no longer issued."""
        _require(request, "read")
        service = request.app[broadcaster]
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
            await response.write(f"event: {name}\ndata: {_dumps(progress)}\n\n".encode())
            if name == "end":
                break
            await asyncio.sleep(1)
        return response

    async def cancel_alert(request: web.Request) -> web.Response:
        """Cancel; the body (optional) is `{"silent": false, "note": "…"}`: the all-clear goes out unless silent."""
        user = _require(request, "cancel")
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
        return web.json_response({**alert_json(outcome.alert), "all_clear": outcome.all_clear})

    async def alert_reach(request: web.Request) -> web.Response:
        """Reach per village and audience, and the unreached must-reach residents with who answers for them."""
        _require(request, "read")
        try:
            limit = max(1, min(100_000, int(request.query.get("limit", str(UNREACHED_LIMIT)))))
        except ValueError:
            raise FieldError(t("limit 应为整数", "limit must be an integer"), field="limit") from None
        view = await reach_view(request.app[broadcaster], request.match_info["id"], limit=limit)
        if request.query.get("format") == "csv":
            return web.Response(
                text=reach_csv(view),
                content_type="text/csv",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="reach-{view["alert_id"]}.csv"'},
            )
        return web.json_response(view, dumps=_dumps)

    async def alert_tasks(request: web.Request) -> web.Response:
        """The cadres' task lists: per contact how many residents, how many confirmed, and — for
        operators and up — the signed page link (a link lets whoever holds it confirm residents, so a
        viewer sees names and counts only)."""
        user = _require(request, "read")
        service = request.app[broadcaster]
        alert = await service.alerts.get(request.match_info["id"])
        lists = await service.tasks.lists(alert)
        tasks = [dataclasses.asdict(task) for task in lists]
        if not user.may(LINKS_ACTION):
            for task in tasks:
                del task["link"]
        return web.json_response({"alert_id": alert.id, "tasks": tasks}, dumps=_dumps)

    return [
        web.get("/api/v1/alerts/{id}/reach", alert_reach),
        web.get("/api/v1/alerts/{id}/tasks", alert_tasks),
        web.post("/api/v1/alerts/preview", preview_alert),
        web.post("/api/v1/alerts", create_alert),
        web.get("/api/v1/alerts", list_alerts),
        web.get("/api/v1/alerts/{id}", get_alert),
        web.post("/api/v1/alerts/{id}/cancel", cancel_alert),
        web.post("/api/v1/alerts/{id}/reject", reject_alert),
        web.get("/api/v1/alerts/{id}/events", alert_events),
        web.post("/api/v1/alerts/{id}/update", update_alert),
        web.post("/api/v1/alerts/{id}/approve", approve_alert),
        web.get(CAP_ROUTE, alert_cap),
        web.get("/feeds/alerts.atom", atom),
    ]
