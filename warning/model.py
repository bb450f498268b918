"""Value objects of the domain (DESIGN §4): villages, residents, contacts, loudspeakers.

Imports nothing of ours. Records are frozen; their compact JSON form is what the directory stores.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DEFAULT_LANGUAGE = "zh-CN"

# Tags that built-in audiences rely on (DESIGN §4). Bureaus may use any other tag as well.
VULNERABLE_TAGS = frozenset({"elderly", "lives_alone", "no_smartphone", "disabled"})


class Role(enum.StrEnum):
    """What a contact does in the warning chain, from the village up."""

    CADRE = "cadre"
    VILLAGE_HEAD = "village_head"
    TOWNSHIP_DUTY = "township_duty"
    COUNTY_DUTY = "county_duty"
    RESCUE_TEAM = "rescue_team"


class Kind(enum.StrEnum):
    """The four kinds of directory file (DESIGN §7)."""

    VILLAGES = "villages"
    RESIDENTS = "residents"
    CONTACTS = "contacts"
    SPEAKERS = "speakers"


def _dumps(fields: dict[str, Any]) -> str:
    # Empty values are dropped: a million residents without a WeChat id should cost nothing for it.
    compact = {k: v for k, v in fields.items() if v not in (None, "", [], ())}
    return json.dumps(compact, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Village:
    """A village (村), identified by its 12-digit statistical division code (统计用区划代码)."""

    code: str
    name: str
    township: str
    county: str
    lat: float | None = None
    lon: float | None = None

    @property
    def township_code(self) -> str:
        return self.code[:9]

    @property
    def county_code(self) -> str:
        return self.code[:6]

    def to_json(self) -> str:
        return _dumps(
            {
                "code": self.code,
                "name": self.name,
                "township": self.township,
                "county": self.county,
                "lat": self.lat,
                "lon": self.lon,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Village:
        d = json.loads(raw)
        return cls(
            d["code"], d["name"], d.get("township", ""), d.get("county", ""), d.get("lat"), d.get("lon")
        )


@dataclass(frozen=True, slots=True)
class Resident:
    """A person who must receive warnings; `cadre` is the contact who confirms them door to door."""

    id: str
    name: str
    village: str
    phone: str = ""
    tags: frozenset[str] = frozenset()
    language: str = DEFAULT_LANGUAGE
    wechat_openid: str = ""
    cadre: str = ""

    @property
    def vulnerable(self) -> bool:
        return not self.tags.isdisjoint(VULNERABLE_TAGS)

    def to_json(self) -> str:
        return _dumps(
            {
                "id": self.id,
                "name": self.name,
                "village": self.village,
                "phone": self.phone,
                "tags": sorted(self.tags),
                "language": None if self.language == DEFAULT_LANGUAGE else self.language,
                "wechat_openid": self.wechat_openid,
                "cadre": self.cadre,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Resident:
        d = json.loads(raw)
        return cls(
            id=d["id"],
            name=d["name"],
            village=d["village"],
            phone=d.get("phone", ""),
            tags=frozenset(d.get("tags", ())),
            language=d.get("language", DEFAULT_LANGUAGE),
            wechat_openid=d.get("wechat_openid", ""),
            cadre=d.get("cadre", ""),
        )


@dataclass(frozen=True, slots=True)
class Contact:
    """A cadre or official; `areas` are 6-, 9- or 12-digit codes (county, township, village) they cover."""

    id: str
    name: str
    role: Role
    phone: str = ""
    areas: tuple[str, ...] = ()
    wechat_userid: str = ""

    def covers(self, village_code: str) -> bool:
        return any(village_code.startswith(area) for area in self.areas)

    def to_json(self) -> str:
        return _dumps(
            {
                "id": self.id,
                "name": self.name,
                "role": self.role.value,
                "phone": self.phone,
                "areas": list(self.areas),
                "wechat_userid": self.wechat_userid,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Contact:
        d = json.loads(raw)
        return cls(
            id=d["id"],
            name=d["name"],
            role=Role(d["role"]),
            phone=d.get("phone", ""),
            areas=tuple(d.get("areas", ())),
            wechat_userid=d.get("wechat_userid", ""),
        )


@dataclass(frozen=True, slots=True)
class Speaker:
    """An IP loudspeaker terminal (村村响); its device id is also its MQTT username and client id."""

    device_id: str
    village: str
    name: str = ""

    def to_json(self) -> str:
        return _dumps({"device_id": self.device_id, "village": self.village, "name": self.name})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Speaker:
        d = json.loads(raw)
        return cls(d["device_id"], d["village"], d.get("name", ""))


Record = Village | Resident | Contact | Speaker


class Level(enum.StrEnum):
    """Warning colour level (China) ↔ CAP severity: blue Minor, yellow Moderate, orange Severe, red Extreme."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def severity(self) -> str:
        return {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}[self.value]

    @property
    def urgent(self) -> bool:
        """Red and orange go to the head of every queue."""
        return self in (Level.RED, Level.ORANGE)

    @property
    def rank(self) -> int:
        return ("blue", "yellow", "orange", "red").index(self.value)


class AlertState(enum.StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    ISSUED = "issued"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class AlertStatus(enum.StrEnum):
    """CAP `status`: only Actual and Exercise ever reach the public."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


@dataclass(frozen=True, slots=True)
class Alert:
    """A warning, aligned with CAP 1.2 (DESIGN §4). `areas` are 6/9/12-digit area codes."""

    id: str
    sender: str
    sent: datetime
    event: str
    level: Level
    areas: tuple[str, ...]
    headline: str = ""
    description: str = ""
    instruction: str = ""
    event_code: str = ""
    status: AlertStatus = AlertStatus.ACTUAL
    msg_type: str = "Alert"
    references: tuple[str, ...] = ()
    urgency: str = "Immediate"
    certainty: str = "Likely"
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    audiences: tuple[str, ...] = ()
    languages: tuple[str, ...] = (DEFAULT_LANGUAGE,)
    state: AlertState = AlertState.DRAFT
    version: int = 1

    @property
    def exercise(self) -> bool:
        return self.status is AlertStatus.EXERCISE

    def expired_at(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> str:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return _dumps(
            {
                "id": self.id,
                "sender": self.sender,
                "sent": when(self.sent),
                "event": self.event,
                "level": self.level.value,
                "areas": list(self.areas),
                "headline": self.headline,
                "description": self.description,
                "instruction": self.instruction,
                "event_code": self.event_code,
                "status": self.status.value,
                "msg_type": self.msg_type,
                "references": list(self.references),
                "urgency": self.urgency,
                "certainty": self.certainty,
                "effective": when(self.effective),
                "onset": when(self.onset),
                "expires": when(self.expires),
                "audiences": list(self.audiences),
                "languages": list(self.languages),
                "state": self.state.value,
                "version": self.version,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        d = json.loads(raw)

        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(d[key]) if d.get(key) else None

        return cls(
            id=d["id"],
            sender=d["sender"],
            sent=datetime.fromisoformat(d["sent"]),
            event=d["event"],
            level=Level(d["level"]),
            areas=tuple(d["areas"]),
            headline=d.get("headline", ""),
            description=d.get("description", ""),
            instruction=d.get("instruction", ""),
            event_code=d.get("event_code", ""),
            status=AlertStatus(d.get("status", "Actual")),
            msg_type=d.get("msg_type", "Alert"),
            references=tuple(d.get("references", ())),
            urgency=d.get("urgency", "Immediate"),
            certainty=d.get("certainty", "Likely"),
            effective=when("effective"),
            onset=when("onset"),
            expires=when("expires"),
            audiences=tuple(d.get("audiences", ())),
            languages=tuple(d.get("languages", (DEFAULT_LANGUAGE,))),
            state=AlertState(d.get("state", "draft")),
            version=int(d.get("version", 1)),
        )
