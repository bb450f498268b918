"""(Being written: H2 (directory tree API).)"""

from __future__ import annotations

from aiohttp import web


def directory_routes() -> list[web.AbstractRouteDef]:
    return []
