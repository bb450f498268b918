"""(Being written: H3 (console pages).)"""

from __future__ import annotations

from aiohttp import web


def console_routes() -> list[web.AbstractRouteDef]:
    return []
