"""Reading a fetched feed into entries: Atom 1.0, RSS 2.0, or a URL that is itself one CAP document.

Feeds are parsed with defusedxml (no DTDs, no entities, no external references). An entry's CAP is
the Atom `<link type="application/cap+xml">`, or the RSS `<enclosure type="application/cap+xml">`,
else the RSS item's `<link>`; a CAP `<alert>` embedded in the entry is kept as bytes instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin
from xml.etree.ElementTree import Element, ParseError, tostring

# No stubs ship for defusedxml; the ignore tolerates them being installed later.
from defusedxml import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped,unused-ignore]

from warning.errors import FetchError
from warning.feeds.settings import FeedFormat
from warning.i18n import t

ATOM = "{http://www.w3.org/2005/Atom}"
CAP_TYPE = "application/cap+xml"
CAP_NAMESPACES = ("urn:oasis:names:tc:emergency:cap:1.2",)


@dataclass(frozen=True)
class FeedEntry:
    """One entry of a feed: its id and title, when it changed, and where its CAP document is."""

    id: str
    title: str
    updated: datetime | None
    cap_url: str | None  # absolute
    inline_cap: bytes | None = None


def parse_entries(body: bytes, feed_format: FeedFormat, url: str) -> list[FeedEntry]:
    """The entries of a feed document fetched from `url`, in document order.

    For format `cap` the document is the CAP itself: one entry whose `inline_cap` is the body.

    Raises:
        FetchError: the document is not well-formed or safe XML, or not the configured format.
    """
    if feed_format == "cap":
        return [FeedEntry(id=url, title="", updated=None, cap_url=url, inline_cap=body)]
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise FetchError(
            t("{u}：源不是可读的 XML：{e}", "{u}: the feed is not readable XML: {e}", u=url, e=exc), url=url
        ) from None
    if feed_format == "atom" and root.tag == f"{ATOM}feed":
        return [_atom_entry(entry, url) for entry in root.iter(f"{ATOM}entry")]
    if feed_format == "rss" and root.tag == "rss":
        return [_rss_item(item, url) for item in root.iter("item")]
    raise FetchError(
        t(
            "{u}：不是 {f} 源（根元素是 {r}）",
            "{u}: not a {f} feed (the root element is {r})",
            u=url,
            f=feed_format,
            r=root.tag,
        ),
        url=url,
    )


def _atom_entry(entry: Element, base: str) -> FeedEntry:
    cap_url = None
    for link in entry.iter(f"{ATOM}link"):
        if _is_cap_type(link.get("type", "")) and link.get("href"):
            cap_url = urljoin(base, link.get("href", "").strip())
            break
    updated = _text(entry, f"{ATOM}updated") or _text(entry, f"{ATOM}published")
    return FeedEntry(
        id=_text(entry, f"{ATOM}id") or cap_url or "",
        title=_text(entry, f"{ATOM}title"),
        updated=_iso_datetime(updated),
        cap_url=cap_url,
        inline_cap=_inline_cap(entry),
    )


def _rss_item(item: Element, base: str) -> FeedEntry:
    cap_url = None
    for enclosure in item.iter("enclosure"):
        if _is_cap_type(enclosure.get("type", "")) and enclosure.get("url"):
            cap_url = urljoin(base, enclosure.get("url", "").strip())
            break
    link = _text(item, "link")
    if cap_url is None and link:
        cap_url = urljoin(base, link)
    return FeedEntry(
        id=_text(item, "guid") or cap_url or "",
        title=_text(item, "title"),
        updated=_rfc822_datetime(_text(item, "pubDate")),
        cap_url=cap_url,
        inline_cap=_inline_cap(item),
    )


def _inline_cap(entry: Element) -> bytes | None:
    for namespace in CAP_NAMESPACES:
        alert = next(entry.iter(f"{{{namespace}}}alert"), None)
        if alert is not None:
            return bytes(tostring(alert, encoding="utf-8"))
    return None


def _is_cap_type(media_type: str) -> bool:
    return media_type.split(";")[0].strip().lower() == CAP_TYPE


def _text(parent: Element, tag: str) -> str:
    child = parent.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _iso_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _rfc822_datetime(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError, IndexError):
        return None
