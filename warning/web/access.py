"""Who may reach which route: every handler declares it, and what declares nothing is refused.

    @public                 anyone (health, webhooks with their own signatures, cadre links, public pages)
    @requires("read")       a signed-in user (console session) or a bearer token whose role may `read`

Actions are those of `warning.users.PERMISSIONS` (read, issue, cancel, approve, admin). The access
middleware (see `access_middleware`) reads the declaration from the matched handler; the roles × routes
test walks every registered route and checks each against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

ACCESS_ATTR = "__warning_access__"
PUBLIC = "public"

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def public(handler: H) -> H:
    """Anyone may call this route (it checks whatever it needs itself, e.g. a signature or a link token)."""
    setattr(handler, ACCESS_ATTR, PUBLIC)
    return handler


def requires(action: str) -> Callable[[H], H]:
    """Only a user whose role may `action` (see warning.users.PERMISSIONS) may call this route."""

    def mark(handler: H) -> H:
        setattr(handler, ACCESS_ATTR, action)
        return handler

    return mark


def access_of(handler: Any) -> str | None:
    """The handler's declaration (PUBLIC or an action), or None if it declares nothing (refused)."""
    found = getattr(handler, ACCESS_ATTR, None)
    return found if isinstance(found, str) else None


def route_access(request: web.Request) -> str | None:
    """The matched route's declaration; None for an undeclared route (and for 404/405, which aiohttp answers)."""
    return access_of(request.match_info.handler)
