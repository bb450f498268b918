"""The directory as the area picker needs it: townships → villages with coordinates and counts.

GET /api/v1/directory/villages?q=NAME   (read)  q filters by village or township name or code
"""

from __future__ import annotations

import json

from aiohttp import web

from warning.errors import FieldError
from warning.estimate import village_tree
from warning.i18n import t
from warning.web.access import requires
from warning.web.api import require_user
from warning.web.bodies import query_value
from warning.web.keys import BROADCASTER, READ_MODEL

QUERY_MAX = 64  # characters of a search


@requires("read")
async def directory_villages(request: web.Request) -> web.Response:
    """Townships and their villages (code, name, lat, lon, residents, must_reach, speakers), filtered by
    `q`; at most a bounded number of villages (`truncated` says when more matched)."""
    require_user(request, "read")
    query = query_value(request, "q")
    if len(query) > QUERY_MAX:
        raise FieldError(t("q 最多 {n} 个字", "q may be at most {n} characters", n=QUERY_MAX), field="q")
    # The readers' own Redis pool when there is one: a crowd of pickers never waits for the fan-out.
    service = request.app[READ_MODEL] if READ_MODEL in request.app else request.app[BROADCASTER]
    tree = await village_tree(service.directory, query)
    return web.json_response(tree.to_json(), dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def directory_routes() -> list[web.AbstractRouteDef]:
    return [web.get("/api/v1/directory/villages", directory_villages)]
