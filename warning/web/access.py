"""Who may reach which route: every handler declares it, and what declares nothing is refused.

    @public                 anyone (health, webhooks with their own signatures, cadre links, public pages)
    @requires("read")       a signed-in user (console session) or a bearer token whose role may `read`

Actions are those of `warning.users.PERMISSIONS` (read, issue, cancel, approve, admin). The access
middleware (see `access_middleware`) reads the declaration from the matched handler; the roles × routes
test walks every registered route and checks each against it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from warning.audit import client_ip
from warning.config import Settings
from warning.i18n import t, use_language
from warning.sessions import COOKIE, Session, Sessions
from warning.store.connection import ReadersBusy
from warning.users import User, Users
from warning.views import ReadGate, ViewCache
from warning.web.bodies import error_document
from warning.web.pages import ENV, PAGE_CSRF, PAGE_USER, page_context

ACCESS_ATTR = "__warning_access__"
AUTH_CACHE_TTL = 1.0  # seconds a reader's token is taken as checked (a revoked one reads this long more)
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


# -- the access middleware ---------------------------------------------------------------------------

USER: web.RequestKey[User | None] = web.RequestKey("user")
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
SESSION_ID: web.RequestKey[str] = web.RequestKey("session_id")
SESSIONS: web.RequestKey[Sessions] = web.RequestKey("sessions")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("client_ip")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
OPENAPI_PATH = "/api/v1/openapi.json"
# Console pages get framing and content-security headers (the cadre and resident pages keep their own).
CONSOLE_PREFIXES = ("/console", "/login", "/logout", "/lang", "/alerts/")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FORBIDDEN_PAGE = ENV.from_string(
    """{% extends "console/base.html" %}
{% block body %}<section class="panel"><h1>{{ title }}</h1><p id="forbidden">{{ message }}</p>
<p><a href="/">{{ tr("返回首页", "Back to the start page") }}</a></p></section>{% endblock %}"""
)


def error_json(status: int, code: str, message: str) -> web.Response:
    body = json.dumps(error_document(code, message), ensure_ascii=False)
    return web.Response(text=body, status=status, content_type="application/json")


def unauthorized() -> web.Response:
    return error_json(
        401,
        "unauthorized",
        t(
            "缺少或无效的令牌：请加 Authorization: Bearer 令牌（用 warning users add 创建）",
            "missing or invalid token: send Authorization: Bearer TOKEN (create one with `warning users add`)",
        ),
    )


def forbidden(request: web.Request, message: str) -> web.Response:
    """403: JSON on the API, a page in the request's language elsewhere."""
    if request.path.startswith("/api/"):
        return error_json(403, "forbidden", message)
    body = _FORBIDDEN_PAGE.render(
        **page_context(request), title=t("无权访问", "Not allowed"), message=message
    )
    return web.Response(text=body, status=403, content_type="text/html", charset="utf-8")


def role_message(user: User, action: str) -> str:
    return t(
        "您的角色（{r}）不能执行此操作（需要“{a}”权限），请联系管理员。",
        "your role ({r}) may not do this (it needs “{a}”); ask an administrator.",
        r=user.role.value,
        a=action,
    )


def client_address(request: web.Request, trust_proxy: bool) -> str:
    """The client's IP: the first X-Forwarded-For hop behind a trusted proxy, else the peer's."""
    forwarded = request.headers.get("X-Forwarded-For", "") if trust_proxy else ""
    first = forwarded.split(",", 1)[0].strip()
    return first[:64] if first else (request.remote or "")


def login_redirect(request: web.Request) -> web.Response:
    target = "/login?" + urlencode({"next": request.path_qs})
    return web.Response(status=303, headers={"Location": target})


async def _csrf_token(request: web.Request) -> str:
    """The token the request carries: the header, or a form's `csrf` field (or, for a multipart
    upload, `?csrf=` so the upload's body is left for its handler to stream)."""
    found = request.headers.get(CSRF_HEADER, "")
    if found:
        return found
    if request.content_type == "multipart/form-data" and CSRF_FIELD in request.query:
        return request.query[CSRF_FIELD]
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler's own request.post() gets the same form
        value = form.get(CSRF_FIELD, "")
        return value if isinstance(value, str) else ""
    return ""


async def _csrf_valid(request: web.Request) -> bool:
    given = await _csrf_token(request)
    return bool(given) and hmac.compare_digest(given.encode(), request[PAGE_CSRF].encode())


def _declaration(request: web.Request) -> str | None:
    if isinstance(request.match_info.route.resource, web.StaticResource):
        return PUBLIC  # the console's own CSS and JavaScript
    return route_access(request)


def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/" or request.path.startswith(CONSOLE_PREFIXES):
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")


def access_middleware(
    users: web.AppKey[Users],
    readers: web.AppKey[Users] | None = None,
    gate: ReadGate | None = None,
    *,
    settings: web.AppKey[Settings] | None = None,
    busy: Callable[[], web.Response] | None = None,
) -> Any:
    """For every request: its language (cookie `lang` or `?lang=`), its client address (for the audit
    log), its user (Bearer token or session cookie; the role read from the account every time), then
    the matched handler's declaration enforced — undeclared 403, PUBLIC passes, an action needs a user
    (pages 303 to /login, the API 401) whose role may do it (else 403) — and CSRF on every
    state-changing request that a session cookie authenticates.

    `readers` (optional) authenticates API reads through the readers' pool (a token checked once
    serves for AUTH_CACHE_TTL); `gate` (optional) holds API reads to a budget a second (`busy()`,
    503, beyond it)."""
    checked: ViewCache[User | None] = ViewCache(AUTH_CACHE_TTL, max_entries=1024)
    made: list[tuple[Users, Sessions]] = []

    def sessions_for(app: web.Application) -> Sessions:
        source = app[users]
        if not made or made[0][0] is not source:
            server = app[settings].server if settings is not None and settings in app else None
            made[:] = [
                (
                    source,
                    Sessions(
                        source.redis,
                        source.keys,
                        idle=server.session_idle if server else 7200.0,
                        lifetime=server.session_max if server else 43200.0,
                    ),
                )
            ]
        return made[0][1]

    async def bearer_user(request: web.Request, token: str) -> User | None:
        reading = request.method in ("GET", "HEAD") and readers is not None and readers in request.app
        if reading and readers is not None:
            source = request.app[readers]
            return await checked.get(token, lambda: source.authenticate(token))
        return await request.app[users].authenticate(token)

    async def identify(request: web.Request, token: str) -> bool:
        """Find the request's user (bearer token, else session cookie) and fill the request's keys;
        True when the session cookie authenticated it (so CSRF applies)."""
        request[USER] = request[PAGE_USER] = None
        request[SESSION] = None
        request[PAGE_CSRF] = ""
        request[SESSIONS] = sessions = sessions_for(request.app)
        if token:
            request[USER] = request[PAGE_USER] = await bearer_user(request, token)
            return False
        session_id = request.cookies.get(COOKIE, "")
        session = await sessions.resolve(session_id) if session_id else None
        user = await request.app[users].user(session.user) if session is not None else None
        if session is None or user is None:
            return False
        request[USER] = request[PAGE_USER] = user
        request[SESSION], request[SESSION_ID], request[PAGE_CSRF] = session, session_id, session.csrf
        return True

    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        reading = api and request.method in ("GET", "HEAD") and request.path != OPENAPI_PATH
        if reading and gate is not None and not await gate.enter():
            return busy() if busy is not None else error_json(503, "busy", "busy")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        try:
            by_session = await identify(request, token)
        except ReadersBusy:
            return busy() if busy is not None else error_json(503, "busy", "busy")
        user = request[USER]
        if request.match_info.http_exception is not None:
            # 404 / 405 are aiohttp's own answer; on the API only for a caller who may see that much.
            return unauthorized() if api and user is None else await handler(request)
        declared = _declaration(request)
        if declared is None:
            return forbidden(
                request, t("此地址未声明访问权限：拒绝访问。", "this route declares no access: refused.")
            )
        if declared == PUBLIC:
            return await handler(request)
        if user is None:
            return unauthorized() if api or token else login_redirect(request)
        if not user.may(declared):
            return forbidden(request, role_message(user, declared))
        if by_session and request.method not in SAFE_METHODS and not await _csrf_valid(request):
            return forbidden(
                request,
                t(
                    "安全校验失败（CSRF 令牌缺失或无效）：请刷新页面后重试。",
                    "security check failed (missing or invalid CSRF token): reload the page and retry.",
                ),
            )
        return await handler(request)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        server = request.app[settings].server if settings is not None and settings in request.app else None
        address = client_address(request, server.trust_proxy if server else False)
        request[CLIENT_IP] = address
        language = request.query.get("lang") or request.cookies.get("lang") or ""
        with client_ip(address), use_language(language) if language else nullcontext():
            response = await serve(request, handler)
            _secure_headers(request, response)
            return response

    return middleware
