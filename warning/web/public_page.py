"""(Being written: H3 (public alert page).)"""

from __future__ import annotations

from aiohttp import web


def public_routes() -> list[web.AbstractRouteDef]:
    return []
