"""Rendering the console's and the public pages: one jinja2 environment over warning/web/templates,
autoescaped, with the request's language, user and CSRF token in every page's context.

    render_page(request, "console/index.html", title=..., **context) -> web.Response

Templates get `lang` ("zh-CN" | "en"), `tr(zh, en, **params)` (the `t` of warning.i18n in the request's
language), `user` (warning.users.User | None), `csrf` (the session's token, "" without a session),
`path` (for the language switch) and whatever the caller passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from warning.i18n import current_language, t

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.globals["tr"] = t

# Set by the console's session middleware (warning.web.access / login); pages only read them.
PAGE_USER: web.RequestKey[Any] = web.RequestKey("page_user")
PAGE_CSRF: web.RequestKey[str] = web.RequestKey("page_csrf")


def page_context(request: web.Request) -> dict[str, Any]:
    return {
        "lang": current_language(),
        "user": request.get(PAGE_USER),
        "csrf": request.get(PAGE_CSRF, ""),
        "path": request.path,
        "query": request.query_string,
    }


def render_page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """The page `template` rendered with the request's context; HTML, UTF-8, never cached by proxies."""
    body = ENV.get_template(template).render(**page_context(request), **context)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def static_routes() -> list[web.AbstractRouteDef]:
    """/static/…: the console's own CSS and JavaScript (no CDN: the console works offline)."""
    return [web.static("/static", STATIC, append_version=True)]
