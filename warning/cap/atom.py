"""The public Atom 1.0 index of our alerts: one entry per issued, real alert, linking its CAP document.

CAP aggregators (Google Public Alerts, WMO's register of alerting authorities) poll such a feed and
fetch each entry's `application/cap+xml` link. Exercises, tests, drafts and system messages are left
out here as well as by the caller, so a drill can never leak into the public index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote
from xml.etree.ElementTree import Element, SubElement, tostring

from warning.cap.emit import COLOUR_ZH, xml_text
from warning.model import Alert, AlertState, AlertStatus

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
CAP_MIME_TYPE = "application/cap+xml"
SUMMARY_CHARS = 280
# Cancelled and expired alerts stay listed so aggregators see the end of what they showed.
_PUBLIC_STATES = frozenset({AlertState.ISSUED, AlertState.CANCELLED, AlertState.EXPIRED})


def _atom_time(moment: datetime) -> str:
    # RFC 3339 as Atom requires; naive datetimes are taken as UTC, the service's convention.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.replace(microsecond=0).isoformat()


def _add(parent: Element, name: str, text: str | None = None, **attributes: str) -> Element:
    child = SubElement(parent, name, attributes)
    child.text = xml_text(text)
    return child


def is_public(alert: Alert) -> bool:
    """Whether the alert belongs in the public index: a real (Actual) alert that has been issued."""
    return alert.status is AlertStatus.ACTUAL and alert.state in _PUBLIC_STATES


def atom_feed(alerts: Sequence[Alert], *, base_url: str, title: str, updated: datetime) -> bytes:
    """The Atom 1.0 feed (UTF-8, with an XML declaration) of the public ones among `alerts`.

    Each entry's id is the alert's URL, its alternate link the CAP document at
    `{base_url}/api/v1/alerts/{id}/cap`; entries keep the order given.
    """
    base = base_url.rstrip("/")
    # The namespace is declared as a plain attribute: ElementTree's default_namespace option refuses
    # unprefixed attributes (rel, href), and register_namespace would change global state.
    feed = Element("feed", {"xmlns": ATOM_NAMESPACE})
    _add(feed, "id", f"{base}/feeds/alerts.atom")
    _add(feed, "title", title)
    _add(feed, "updated", _atom_time(updated))
    _add(_add(feed, "author"), "name", title)
    _add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feeds/alerts.atom")
    for alert in alerts:
        if not is_public(alert):
            continue
        alert_url = f"{base}/api/v1/alerts/{quote(alert.id, safe='')}"
        entry = _add(feed, "entry")
        _add(entry, "id", alert_url)
        _add(entry, "title", alert.headline or f"{alert.event}{COLOUR_ZH[alert.level]}预警")
        _add(entry, "updated", _atom_time(alert.sent))
        if alert.msg_type == "Cancel" or alert.state is AlertState.CANCELLED:
            _add(entry, "category", term="cancelled")
        _add(entry, "category", term=alert.level.value)
        summary = alert.description or alert.headline or alert.event
        _add(entry, "summary", summary[:SUMMARY_CHARS])
        _add(entry, "link", rel="alternate", type=CAP_MIME_TYPE, href=f"{alert_url}/cap")
    document: bytes = tostring(feed, encoding="utf-8", xml_declaration=True)
    return document
