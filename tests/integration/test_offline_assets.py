"""The console works offline: no template, static file or page-building module of the web app points a
browser at anything outside the service (no CDN script, no web font, no external stylesheet or image).
XML namespace names (SVG, Atom, CAP, XML-DSig) are identifiers, not fetched, and are allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "warning"
SCANNED = [
    *(PACKAGE / "web" / "templates").rglob("*"),
    *(PACKAGE / "web" / "static").rglob("*"),
    *(PACKAGE / "templates").rglob("*"),
    *(PACKAGE / "web").glob("*.py"),
]
TEXT_SUFFIXES = {".html", ".j2", ".css", ".js", ".svg", ".py", ".txt", ".json", ".xml", ".webmanifest"}

# Namespace names: never fetched by a browser or by us.
NAMESPACES = (
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/2005/Atom",
    "http://www.w3.org/2000/09/xmldsig#",
    "http://www.w3.org/XML/1998/namespace",
    "urn:oasis:names:tc:emergency:cap:1.2",
    "http://www.incident.com/cap/1.0",
)
# A URL a page would load: absolute http(s), or protocol-relative (//cdn.example/x.js) in an attribute,
# a CSS url(...) or @import.
PROTOCOL_RELATIVE = re.compile(
    r"""(?:src|href|action|srcset)\s*=\s*["']//|url\(\s*["']?//|@import\s+["']//"""
)
ABSOLUTE = re.compile(r"""https?://([^\s"'<>(){}\\/]*)[^\s"'<>(){}\\]*""", re.IGNORECASE)
# The service's own address; "" is a host built from settings, as in http://{host}:{port}.
OWN_HOSTS = ("127.0.0.1", "localhost", "[::1]", "")


def outside_references(text: str) -> list[str]:
    """Every reference in `text` to a place outside the service."""
    found = [m.group(0) for m in PROTOCOL_RELATIVE.finditer(text)]
    for match in ABSOLUTE.finditer(text):
        url = match.group(0)
        host = match.group(1).split(":")[0]
        if not any(url.startswith(ns) for ns in NAMESPACES) and host not in OWN_HOSTS:
            found.append(url)
    return found


def test_the_scanner_finds_what_a_browser_would_fetch() -> None:
    page = """<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/x.css">
    <script src="//unpkg.com/y.js"></script><style>@font-face{src:url(https://fonts.gstatic.com/a.woff2)}</style>
    <svg xmlns="http://www.w3.org/2000/svg"></svg><a href="/alerts/1">ok</a> http://{host}:{port}"""
    assert outside_references(page) == [
        'src="//',
        "https://cdn.jsdelivr.net/npm/x.css",
        "https://fonts.gstatic.com/a.woff2",
    ]
    assert outside_references('<a href="/static/console.css">') == []


@pytest.mark.parametrize(
    "path",
    [p for p in SCANNED if p.is_file() and p.suffix in TEXT_SUFFIXES],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_asset_refers_outside_the_service(path: Path) -> None:
    assert outside_references(path.read_text(encoding="utf-8")) == []


def test_the_console_has_assets_to_scan() -> None:
    """The scan above covers something: the console's base page and its stylesheet are there."""
    names = {p.name for p in SCANNED}
    assert {"base.html", "console.css"} <= names, sorted(names)
