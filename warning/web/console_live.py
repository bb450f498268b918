"""(Being written: H4 (live alert page, fleet, directory upload).)"""

from __future__ import annotations

from aiohttp import web


def live_routes() -> list[web.AbstractRouteDef]:
    return []
