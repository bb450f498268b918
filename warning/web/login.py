"""(Being written: H1 (auth).)"""

from __future__ import annotations

from aiohttp import web


def login_routes() -> list[web.AbstractRouteDef]:
    return []
