"""The two-person rule's API beside approve/reject (in warning.web.api): return for edit, an alert's
moves, and the reach estimate the composer and the approver see before anything is sent.

    POST /api/v1/alerts/estimate       (issue)    the alert JSON body → residents, must-reach, phones,
                                                   loudspeakers online, per channel counts and seconds
    POST /api/v1/alerts/{id}/return    (approve)  {"reason": "…"} → the alert, a draft again
    GET  /api/v1/alerts/{id}/moves     (read)     who did what to the alert, when, and why
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from warning.approval import Move, reason_field
from warning.web.access import requires
from warning.web.api import alert_json, request_from_json, require_user
from warning.web.bodies import read_json_object
from warning.web.keys import BROADCASTER

ESTIMATE_ROUTE = "/api/v1/alerts/estimate"


def move_json(move: Move) -> dict[str, Any]:
    return {
        "action": move.action,
        "actor": move.actor,
        "role": move.role,
        "at": move.at.isoformat(),
        "reason": move.reason,
    }


@requires("issue")
async def estimate_alert(request: web.Request) -> web.Response:
    """Whom this alert JSON body would reach and how long it would take; nothing is saved or queued."""
    require_user(request, "issue")  # checked again here: the declaration above is what the middleware reads
    body = await read_json_object(request)
    estimate = await request.app[BROADCASTER].estimate(request_from_json(body))
    return web.json_response(estimate.to_json())


@requires("approve")
async def return_alert(request: web.Request) -> web.Response:
    """Send an alert waiting for approval back to its submitter as a draft; `reason` is required."""
    user = require_user(request, "approve")
    reason = reason_field(await read_json_object(request) if request.content_length else {})
    alert = await request.app[BROADCASTER].return_for_edit(
        request.match_info["id"], actor=user.name, role=user.role.value, reason=reason
    )
    return web.json_response(alert_json(alert))


@requires("read")
async def alert_moves(request: web.Request) -> web.Response:
    """The alert's moves, oldest first: action, actor, role, time and reason."""
    require_user(request, "read")
    service = request.app[BROADCASTER]
    alert = await service.alerts.get(request.match_info["id"])
    moves = await service.moves(alert.id)
    return web.json_response(
        {"alert_id": alert.id, "state": alert.state.value, "moves": [move_json(m) for m in moves]}
    )


def approval_routes() -> list[web.AbstractRouteDef]:
    return [
        web.post(ESTIMATE_ROUTE, estimate_alert),
        web.post("/api/v1/alerts/{id}/return", return_alert),
        web.get("/api/v1/alerts/{id}/moves", alert_moves),
    ]
