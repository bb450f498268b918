"""Every route of the whole app declares who may reach it, and each is refused exactly to those whose
role lacks its action: anonymous (pages 303 to /login, the API 401), then viewer, operator, approver and
admin, by session cookie (with the CSRF header) and by bearer token. Unknown alert ids keep "allowed"
calls from changing anything. Routes added later are walked too, without editing this test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers
from tests.integration.console_service import ROLES, Service, sign_in, start
from warning.store import Store
from warning.users import PERMISSIONS, UserRole
from warning.web.access import PUBLIC, access_of


@pytest.fixture
async def service(store: Store, servers: Servers) -> AsyncIterator[Service]:
    async for running in start(store, servers):
        yield running


def walked(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, concrete path, declared access) for every non-static route; placeholders filled with
    an id nobody has."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource) or route.method == "HEAD":
            continue
        path = re.sub(r"\{[^}]+\}", "no-such-id-0", resource.canonical)
        found.append((route.method, path, access_of(route.handler) or "UNDECLARED"))
    return found


async def test_every_route_declares_its_access(service: Service) -> None:
    """No route is left undeclared (an undeclared one would be refused to everyone)."""
    undeclared = [(m, p) for m, p, a in walked(service.app) if a == "UNDECLARED"]
    assert not undeclared


async def test_roles_times_routes(service: Service) -> None:
    """Denied iff the role lacks the action, by session and by bearer; anonymous is sent to sign in."""
    problems: list[str] = []
    routes = [r for r in walked(service.app) if r[2] not in (PUBLIC, "UNDECLARED")]
    assert routes
    async with aiohttp.ClientSession() as anonymous:
        for method, path, _ in routes:
            async with anonymous.request(method, service.base + path, allow_redirects=False) as answer:
                want = 401 if path.startswith("/api/") else 303
                if answer.status != want:
                    problems.append(f"anonymous {method} {path}: {answer.status}, not {want}")
    for role in ROLES:
        allowed = PERMISSIONS[UserRole(role)]
        client, csrf = await sign_in(service.base, f"u-{role}")
        async with client, aiohttp.ClientSession() as bearer:
            for method, path, action in routes:
                for how, session, headers in (
                    ("session", client, {"X-CSRF-Token": csrf}),
                    ("bearer", bearer, {"Authorization": f"Bearer {service.tokens[role]}"}),
                ):
                    if path == "/logout":
                        continue  # answers 303 to /login by design (and would end the walk's session)
                    async with session.request(
                        method,
                        service.base + path,
                        headers=headers,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as answer:
                        denied = answer.status in (401, 403) or (
                            answer.status == 303 and answer.headers.get("Location", "").startswith("/login")
                        )
                        if denied != (action not in allowed):
                            problems.append(f"{role} by {how} {method} {path} ({action}): {answer.status}")
    assert not problems, "\n".join(problems)
