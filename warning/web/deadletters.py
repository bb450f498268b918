"""The dead letters over the API: deliveries no retry can fix (a refused number, an adapter bug).

    GET  /api/v1/deadletters?channel=sms&limit=100   the batches per channel, oldest first, bounded
    POST /api/v1/deadletters/requeue   {"channel": "sms"} (or {} for every channel): back in the queue

Reading needs `read`; requeueing needs `cancel` (an operator's move, audited with who did it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from warning.broadcast import Broadcaster, DeadLetter
from warning.channels.registry import REGISTRY
from warning.errors import FieldError
from warning.i18n import t
from warning.web.access import requires
from warning.web.api import require_user
from warning.web.bodies import int_param, query_value, read_json_object

MAX_LIMIT = 1000


def _channels(value: Any) -> list[str]:
    """The channel asked for, or every registered one.

    Raises:
        FieldError: an unknown channel.
    """
    if value in (None, ""):
        return sorted(REGISTRY)
    if not isinstance(value, str) or value not in REGISTRY:
        raise FieldError(
            t(
                "channel 应为 {names} 之一",
                "channel must be one of {names}",
                names=", ".join(sorted(REGISTRY)),
            ),
            field="channel",
        )
    return [value]


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    batch = letter.batch
    return {
        "id": letter.entry_id,
        "channel": batch.channel,
        "ledger": batch.ledger,
        "alert_id": batch.alert_id,
        "version": batch.version,
        "village": batch.village,
        "audience": batch.audience,
        "attempt": batch.attempt,
        "recipients": len(batch.recipients),
        "reason": letter.reason,
    }


def deadletter_routes(broadcaster: web.AppKey[Broadcaster]) -> list[web.RouteDef]:
    @requires("read")
    async def list_dead(request: web.Request) -> web.Response:
        """Dead-lettered batches per channel (at most `limit` per channel), with the total per channel."""
        require_user(request, "read")
        channels = _channels(query_value(request, "channel"))
        limit = int_param(request, "limit", 100, MAX_LIMIT)
        service = request.app[broadcaster]
        letters: list[dict[str, Any]] = []
        totals: dict[str, int] = {}
        for channel in channels:
            totals[channel] = await service.dead_count(channel)
            letters.extend(_letter_json(letter) for letter in await service.dead_letters(channel, limit))
        return web.json_response({"dead_letters": letters, "totals": totals})

    @requires("cancel")
    async def requeue(request: web.Request) -> web.Response:
        """Put a channel's dead letters (or every channel's) back in the queue; returns how many."""
        user = require_user(request, "cancel")
        body = await read_json_object(request)
        service = request.app[broadcaster]
        requeued = {
            channel: await service.requeue_dead(channel, actor=user.name, role=user.role.value)
            for channel in _channels(body.get("channel"))
        }
        return web.json_response({"requeued": requeued})

    return [
        web.get("/api/v1/deadletters", list_dead),
        web.post("/api/v1/deadletters/requeue", requeue),
    ]
