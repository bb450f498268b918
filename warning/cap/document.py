"""The typed, immutable CAP 1.2 document: what `parse_cap` returns, one frozen class per CAP structure.

Field names follow CAP 1.2 in snake case (`msgType` → `msg_type`). Optional text that is absent reads
as `""`; optional datetimes and numbers as `None`. Repeated elements are tuples in document order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from warning.model import AlertStatus

CAP12_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
DEFAULT_LANGUAGE = "en-US"  # CAP 1.2 §3.2.2: `<language>` absent or empty means en-US


class MsgType(enum.StrEnum):
    """CAP `msgType`: what this message does to earlier ones."""

    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(enum.StrEnum):
    """CAP `scope`: who may see the message."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(enum.StrEnum):
    """CAP `category` of the subject event."""

    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class ResponseType(enum.StrEnum):
    """CAP `responseType`: the action recommended to the audience."""

    SHELTER = "Shelter"
    EVACUATE = "Evacuate"
    PREPARE = "Prepare"
    EXECUTE = "Execute"
    AVOID = "Avoid"
    MONITOR = "Monitor"
    ASSESS = "Assess"
    ALL_CLEAR = "AllClear"
    NONE = "None"


class Urgency(enum.StrEnum):
    """CAP `urgency`."""

    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(enum.StrEnum):
    """CAP `severity` (China: blue Minor, yellow Moderate, orange Severe, red Extreme)."""

    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(enum.StrEnum):
    """CAP `certainty`."""

    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


class ValueName(NamedTuple):
    """A `valueName`/`value` pair, as in `<geocode>`, `<eventCode>` and `<parameter>`."""

    name: str
    value: str


Geocode = ValueName


@dataclass(frozen=True, slots=True)
class Reference:
    """One `sender,identifier,sent` triplet of `<references>`: an earlier message this one refers to."""

    sender: str
    identifier: str
    sent: datetime
    text: str = field(default="", compare=False)  # the triplet as written, `sent` included verbatim

    def __str__(self) -> str:
        return self.text or f"{self.sender},{self.identifier},{self.sent.isoformat()}"


@dataclass(frozen=True, slots=True)
class Polygon:
    """A closed ring of WGS 84 `(lat, lon)` points; the first point equals the last."""

    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Circle:
    """A circle: centre `(lat, lon)` and radius in kilometres (0 means the point itself)."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class CapArea:
    """An `<area>`: its description and any polygons, circles and geocodes."""

    area_desc: str
    polygons: tuple[Polygon, ...] = ()
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[ValueName, ...] = ()
    altitude: float | None = None
    ceiling: float | None = None


@dataclass(frozen=True, slots=True)
class CapResource:
    """A `<resource>`: a file or link that goes with the alert (image, audio, map)."""

    resource_desc: str
    mime_type: str
    size: int | None = None
    uri: str = ""
    deref_uri: str = ""
    digest: str = ""


@dataclass(frozen=True, slots=True)
class CapInfo:
    """An `<info>` block: the event in one language, with its areas."""

    categories: tuple[Category, ...]
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    language: str = DEFAULT_LANGUAGE
    response_types: tuple[ResponseType, ...] = ()
    audience: str = ""
    event_codes: tuple[ValueName, ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    web: str = ""
    contact: str = ""
    parameters: tuple[ValueName, ...] = ()
    resources: tuple[CapResource, ...] = ()
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True, slots=True)
class CapAlert:
    """A CAP 1.2 `<alert>`; `raw` keeps the bytes it was parsed from (excluded from equality)."""

    identifier: str
    sender: str
    sent: datetime
    status: AlertStatus
    msg_type: MsgType
    scope: Scope
    source: str = ""
    restriction: str = ""
    addresses: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    note: str = ""
    references: tuple[Reference, ...] = ()
    incidents: tuple[str, ...] = ()
    infos: tuple[CapInfo, ...] = ()
    signed: bool = field(default=False, compare=False)  # an XML-DSig `<Signature>` is present (not verified)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def reference(self) -> Reference:
        """This message as a reference triplet: the key later Updates and Cancels point at."""
        return Reference(self.sender, self.identifier, self.sent)


def choose_info(alert: CapAlert, preferred: Sequence[str] = ("zh-CN", "zh")) -> CapInfo | None:
    """The `<info>` block to show: the first matching a preferred language tag, else the first block.

    Tags match case-insensitively, on the whole tag or as a prefix followed by `-` (`zh` matches
    `zh-TW`); earlier preferences win over later ones. `None` when the alert has no `<info>`.
    """
    for wanted in preferred:
        tag = wanted.lower()
        for info in alert.infos:
            language = info.language.lower()
            if language == tag or language.startswith(tag + "-"):
                return info
    return alert.infos[0] if alert.infos else None
