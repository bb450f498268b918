"""The whole service on a loopback port with users (password and token), for the console's tests:
`settings_for` (this test's namespace, a free port), `serving` (the app running, users added), `start`
(a user per role, no channel workers); `sign_in` returns a client session holding a user's session
cookie and CSRF token."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import web

from tests.conftest import Servers, free_port, start_app
from warning.broadcast import Broadcaster
from warning.config import MqttSettings, Settings
from warning.store import Store
from warning.users import Users
from warning.web.app import BROADCASTER, STORE, build_app

ROLES = ("viewer", "operator", "approver", "admin")
PASSWORD = "correct horse battery"


@dataclass
class Service:
    app: web.Application
    base: str
    tokens: dict[str, str]  # by user name: each user's API token

    @property
    def broadcaster(self) -> Broadcaster:
        return self.app[BROADCASTER]


def settings_for(store: Store, servers: Servers, port: int | None = None, **server: object) -> Settings:
    """Settings for a service on `port` (default: a free one) in `store`'s namespace, on the test's servers."""
    port = free_port() if port is None else port
    base = Settings()
    return replace(
        base,
        server=replace(
            base.server, host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}", **server
        ),
        redis=replace(base.redis, url=servers.redis_url, namespace=store.keys.namespace, allow_volatile=True),
        mqtt=MqttSettings(
            url=servers.mqtt_url or "", embedded_port=0, topic_prefix=f"t{uuid.uuid4().hex[:8]}"
        ),
    )


@asynccontextmanager
async def serving(
    settings: Settings, users: Mapping[str, str], *, channels: list[str] | None = None
) -> AsyncIterator[Service]:
    """The app of `settings` serving on its port with `channels`' workers (none by default) and each of
    `users` (name → role) added with PASSWORD."""
    app = build_app(settings, channels=channels or [])
    runner = await start_app(app, settings.server.port)
    try:
        accounts = Users(app[STORE].redis, app[STORE].keys)
        tokens = {name: await accounts.add(name, role, password=PASSWORD) for name, role in users.items()}
        yield Service(app, settings.server.base_url, tokens)
    finally:
        await runner.cleanup()


async def start(store: Store, servers: Servers, **server: object) -> AsyncIterator[Service]:
    """A user `u-ROLE` per role (tokens by role), no channel workers."""
    users = {f"u-{role}": role for role in ROLES}
    async with serving(settings_for(store, servers, **server), users) as service:
        service.tokens = {role: service.tokens[f"u-{role}"] for role in ROLES}
        yield service


def csrf_of(html: str) -> str:
    """The login form's hidden CSRF field."""
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]*)"', html)
    return found.group(1) if found else ""


def session_csrf(html: str) -> str:
    """The signed-in page's CSRF token (`<meta name="csrf">`)."""
    found = re.search(r'<meta name="csrf" content="([^"]*)"', html)
    return found.group(1) if found else ""


async def sign_in(base: str, user: str, password: str = PASSWORD) -> tuple[aiohttp.ClientSession, str]:
    """A browser-like client signed in as `user`; returns it and the session's CSRF token."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with client.get(f"{base}/login") as page:
        token = csrf_of(await page.text())
    form = {"username": user, "password": password, "csrf": token, "next": "/console/audit"}
    async with client.post(f"{base}/login", data=form, allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()
    async with client.get(f"{base}/login") as page:
        csrf = session_csrf(await page.text())
    assert csrf
    return client, csrf
