"""(Being written: H2 (two-person rule API).)"""

from __future__ import annotations

from aiohttp import web


def approval_routes() -> list[web.AbstractRouteDef]:
    return []
