"""Signing in and out of the console, and its language switch.

GET  /login              the form (username, password, a CSRF token bound to a short-lived cookie)
POST /login              → 303 to `next` (same-site paths only) with the session cookie; a wrong
                         password is the form again (401); too many failures are 429 (audited)
POST /logout             ends the session (CSRF checked by the access middleware)
GET  /lang?to=en&next=/  sets the cookie `lang` for a year and goes back
"""

from __future__ import annotations

import hmac
import math
import secrets

from aiohttp import web

from warning.i18n import parse_language, t
from warning.sessions import COOKIE, LoginThrottle
from warning.users import User
from warning.web.access import CLIENT_IP, SESSION_ID, SESSIONS, USER, public, requires
from warning.web.keys import BROADCASTER, SETTINGS, USERS
from warning.web.pages import render_page

LOGIN_COOKIE = "warning_login"  # the pre-login CSRF token (double submit), for LOGIN_COOKIE_AGE
LOGIN_COOKIE_AGE = 3600
LANG_AGE = 365 * 86400


def safe_next(target: str) -> str:
    """`target` if it is a path on this site, else "/" (never `//host`, a scheme or a backslash)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


def _secure(request: web.Request) -> bool:
    settings = request.app.get(SETTINGS)
    public_url = settings.server.public_url if settings is not None else ""
    return request.secure or public_url.startswith("https://")


async def _audit(
    request: web.Request, actor: str, role: str, action: str, result: str, detail: str = ""
) -> None:
    await request.app[BROADCASTER].alerts.audit(
        actor=actor, role=role, action=action, obj=actor, result=result, detail=detail
    )


def _form(
    request: web.Request, *, status: int = 200, message: str = "", username: str = "", next_path: str = "/"
) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE, "")
    if len(token) < 20:
        token = secrets.token_urlsafe(24)
    response = render_page(
        request,
        "console/login.html",
        status=status,
        title=t("登录", "Sign in"),
        login_csrf=token,
        message=message,
        username=username,
        next_path=next_path,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_COOKIE_AGE,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )
    return response


@public
async def login_page(request: web.Request) -> web.Response:
    """The sign-in form (also for someone signed in: they may sign in as another user)."""
    return _form(request, next_path=safe_next(request.query.get("next", "/")))


@public
async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    username = str(form.get("username", "")).strip()[:100]
    password = str(form.get("password", ""))[:1000]
    next_path = safe_next(str(form.get("next", "/")))
    cookie, given = request.cookies.get(LOGIN_COOKIE, ""), str(form.get("csrf", ""))
    if not cookie or not given or not hmac.compare_digest(cookie, given):
        message = t("页面已过期，请重新输入后登录。", "the page expired: enter your details again.")
        return _form(request, status=403, message=message, username=username, next_path=next_path)
    ip = request.get(CLIENT_IP, request.remote or "")
    store = request.app[BROADCASTER].store
    throttle = LoginThrottle(store.redis, store.keys)
    wait = await throttle.blocked_for(username, ip)
    if wait:
        if await throttle.report_refusal(username, ip):
            await _audit(request, username or "-", "", "login.throttled", "refused", f"retry in {wait} s")
        return _too_many(request, wait, username, next_path)
    user = await request.app[USERS].check_login(username, password) if username and password else None
    if user is None:
        blocked = await throttle.failed(username, ip)
        detail = f"blocked for {blocked} s" if blocked else ""
        await _audit(request, username or "-", "", "login.failed", "refused", detail)
        if blocked:
            return _too_many(request, blocked, username, next_path)
        message = t("用户名或密码不正确。", "wrong user name or password.")
        return _form(request, status=401, message=message, username=username, next_path=next_path)
    await throttle.succeeded(username)
    return await _signed_in(request, user, next_path)


def _too_many(request: web.Request, seconds: int, username: str, next_path: str) -> web.Response:
    minutes = max(1, math.ceil(seconds / 60))
    message = t(
        "登录失败次数过多，请 {m} 分钟后再试。",
        "too many failed sign-ins: try again in {m} minute(s).",
        m=minutes,
    )
    response = _form(request, status=429, message=message, username=username, next_path=next_path)
    response.headers["Retry-After"] = str(seconds)
    return response


async def _signed_in(request: web.Request, user: User, next_path: str) -> web.Response:
    session_id, _ = await request[SESSIONS].create(user.name, user.role.value)
    await _audit(request, user.name, user.role.value, "login", "ok")
    response = web.Response(status=303, headers={"Location": next_path})
    response.set_cookie(
        COOKIE, session_id, path="/", httponly=True, samesite="Strict", secure=_secure(request)
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


@requires("read")
async def logout(request: web.Request) -> web.Response:
    user = request[USER]
    session_id = request.get(SESSION_ID, "")
    if session_id:
        await request[SESSIONS].end(session_id)
    if user is not None:
        await _audit(request, user.name, user.role.value, "logout", "ok")
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


@public
async def language(request: web.Request) -> web.Response:
    chosen = parse_language(request.query.get("to", "zh-CN"))
    response = web.Response(status=303, headers={"Location": safe_next(request.query.get("next", "/"))})
    response.set_cookie("lang", chosen, max_age=LANG_AGE, path="/", samesite="Lax", secure=_secure(request))
    return response


def login_routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/login", login_page),
        web.post("/login", login_submit),
        web.post("/logout", logout),
        web.get("/lang", language),
    ]
