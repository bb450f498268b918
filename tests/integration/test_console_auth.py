"""Signing in to the console: a right password gives a session cookie (HttpOnly, SameSite=Strict) and
goes to `next` (same-site only); a wrong one is the form again (401, audited); five failures block the
name for 15 minutes (429); sessions end when idle, when the user is revoked, and on sign-out; the
language switch sets a cookie and the page follows it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.conftest import Servers
from tests.integration.console_service import PASSWORD, Service, csrf_of, sign_in, start
from warning.sessions import LOGIN_FAILURES_PER_ADDRESS, Sessions
from warning.store import Store
from warning.users import Users
from warning.web.app import BROADCASTER, STORE


@pytest.fixture
async def service(store: Store, servers: Servers) -> AsyncIterator[Service]:
    async for running in start(store, servers):
        yield running


async def login(
    client: aiohttp.ClientSession, base: str, user: str, password: str, next_path: str = "/"
) -> aiohttp.ClientResponse:
    async with client.get(f"{base}/login") as page:
        token = csrf_of(await page.text())
    form = {"username": user, "password": password, "csrf": token, "next": next_path}
    response = await client.post(f"{base}/login", data=form, allow_redirects=False)
    await response.read()
    return response


async def test_right_password_sets_a_strict_httponly_cookie_and_goes_to_next(service: Service) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, Path=/; the redirect is to `next`."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        answer = await login(client, service.base, "u-operator", PASSWORD, "/console/compose")
        assert answer.status == 303 and answer.headers["Location"] == "/console/compose"
        cookie = next(v for k, v in answer.headers.items() if k == "Set-Cookie" and "warning_session=" in v)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        async with client.get(f"{service.base}/console/audit", allow_redirects=False) as page:
            assert page.status == 403  # signed in, but an operator is no admin


async def test_wrong_password_is_the_form_again_and_audited(service: Service) -> None:
    """A wrong password and an unknown user get the same message (no enumeration), 401, audited."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        wrong = await login(client, service.base, "u-operator", "not the password")
        unknown = await login(client, service.base, "nobody", "not the password")
        assert wrong.status == unknown.status == 401
        async with client.get(f"{service.base}/console/audit", allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"].startswith("/login?next=")
    entries = await service.app[BROADCASTER].alerts.audit_log("u-operator")
    assert [e["action"] for e in entries] == ["login.failed"]
    assert entries[0]["ip"] == "127.0.0.1"


async def test_five_failures_block_the_name_for_fifteen_minutes(service: Service) -> None:
    """After five wrong passwords even the right one is refused with 429 and when to retry."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        statuses = [
            (await login(client, service.base, "u-viewer", "wrong password!")).status for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
        async with client.get(f"{service.base}/login") as page:
            token = csrf_of(await page.text())
        form = {"username": "u-viewer", "password": PASSWORD, "csrf": token, "next": "/"}
        async with client.post(f"{service.base}/login", data=form, allow_redirects=False) as answer:
            assert answer.status == 429
            assert int(answer.headers["Retry-After"]) > 800
            assert "15 分钟后再试" in await answer.text()
    actions = [e["action"] for e in await service.app[BROADCASTER].alerts.audit_log("u-viewer")]
    assert actions.count("login.failed") == 5 and "login.throttled" in actions
    # The duty room shares one address: a colleague signs in at once despite those five failures.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        assert (await login(client, service.base, "u-operator", PASSWORD)).status == 303


async def test_one_address_is_blocked_after_many_failures_over_many_names(service: Service) -> None:
    """A guesser trying name after name from one address is refused after LOGIN_FAILURES_PER_ADDRESS."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        statuses = [
            (await login(client, service.base, f"guess-{n // 4}", "wrong password!")).status
            for n in range(LOGIN_FAILURES_PER_ADDRESS)
        ]
        assert statuses[:-1] == [401] * (LOGIN_FAILURES_PER_ADDRESS - 1) and statuses[-1] == 429
        assert (await login(client, service.base, "u-operator", PASSWORD)).status == 429


async def test_next_never_leaves_the_site(service: Service) -> None:
    """`next` pointing elsewhere (//evil, https://evil, backslash) redirects to / instead."""
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            answer = await login(client, service.base, "u-admin", PASSWORD, target)
            assert answer.status == 303 and answer.headers["Location"] == "/", target


async def test_login_without_its_csrf_cookie_is_refused(service: Service) -> None:
    """A cross-site POST to /login (no pre-login cookie) does not sign anyone in."""
    async with aiohttp.ClientSession() as client:
        form = {"username": "u-admin", "password": PASSWORD, "csrf": "x" * 32}
        async with client.post(f"{service.base}/login", data=form, allow_redirects=False) as answer:
            assert answer.status == 403 and "warning_session" not in answer.cookies


async def test_an_idle_session_ends(store: Store, servers: Servers) -> None:
    """With a 60 s idle timeout, a session last seen 61 s ago is gone."""
    sessions = Sessions(store.redis, store.keys, idle=60, lifetime=3600)
    session_id, session = await sessions.create("u-a", "viewer")
    assert await sessions.resolve(session_id, now=session.created + 59) is not None
    assert await sessions.resolve(session_id, now=session.created + 59 + 61) is None
    old_id, old = await sessions.create("u-a", "viewer")
    assert await sessions.resolve(old_id, now=old.created + 3601) is None  # past the absolute lifetime


async def test_revoking_a_user_ends_their_session_at_once(service: Service) -> None:
    """A revoked user's next request is sent to the login page; a role change applies at once."""
    client, _ = await sign_in(service.base, "u-admin")
    async with client:
        async with client.get(f"{service.base}/console/audit", allow_redirects=False) as page:
            assert page.status == 200
        users = Users(service.app[STORE].redis, service.app[STORE].keys)
        await users.add("u-admin", "viewer")
        async with client.get(f"{service.base}/console/audit", allow_redirects=False) as page:
            assert page.status == 403
        await users.revoke("u-admin")
        async with client.get(f"{service.base}/console/audit", allow_redirects=False) as page:
            assert page.status == 303


async def test_logout_ends_the_session(service: Service) -> None:
    """POST /logout with the CSRF token ends the session: the cookie no longer opens pages."""
    client, csrf = await sign_in(service.base, "u-admin")
    async with client:
        cookie = client.cookie_jar.filter_cookies(URL(service.base))["warning_session"].value
        async with client.post(f"{service.base}/logout", data={"csrf": csrf}, allow_redirects=False) as out:
            assert out.status == 303
    async with (
        aiohttp.ClientSession(cookies={"warning_session": cookie}) as again,
        again.get(f"{service.base}/console/audit", allow_redirects=False) as page,
    ):
        assert page.status == 303


async def test_language_switch_sets_a_cookie_and_pages_follow(service: Service) -> None:
    """/lang?to=en sets `lang` and redirects to next; the login page is then in English."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(f"{service.base}/lang?to=en&next=/login", allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/login"
            assert "Max-Age=31536000" in answer.headers["Set-Cookie"]
        async with client.get(f"{service.base}/login") as page:
            text = await page.text()
            assert "Duty officer sign-in" in text and 'lang="en"' in text
        async with client.get(f"{service.base}/lang?to=zh-CN&next=//evil", allow_redirects=False) as answer:
            assert answer.headers["Location"] == "/"
        async with client.get(f"{service.base}/login") as page:
            assert "值班人员登录" in await page.text()
            assert page.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
