"""(Being written: H1 (audit).)"""

from __future__ import annotations

from aiohttp import web


def audit_routes() -> list[web.AbstractRouteDef]:
    return []
