"""Cadre task lists: every must-reach resident is on one named contact's list, with a signed link to it.

The list itself is the reach ledger's `task:{contact}` set, filled by the fan-out. Here: who answers
for a resident (their cadre, or — without one — the village head, then the township and county duty
officers), the signed page link, the deadline, and the message that brings the link to the cadre.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warning.config import EscalationSettings
from warning.deliveries import Deliveries
from warning.directory.store import Directory
from warning.links import Links, link_expiry
from warning.model import Alert, Contact, Role
from warning.notify import Note, send_notes
from warning.reach import Reach
from warning.render.words import CHINA_TIME, level_name

# Who answers for a must-reach resident without a (known) cadre, in this order.
FALLBACK_ROLES = (Role.VILLAGE_HEAD, Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY)
TASK_PURPOSE = "task"


@dataclass(frozen=True, slots=True)
class TaskList:
    contact_id: str
    name: str
    role: str
    link: str
    total: int
    confirmed: int  # acknowledged by the resident or confirmed by the cadre
    deadline: float


class Responsible:
    """Resolves, with a cache, the contact who answers for a resident of a village."""

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._known: dict[str, bool] = {}
        self._fallback: dict[str, str] = {}

    async def for_resident(self, cadre: str, village: str) -> str:
        if cadre:
            if cadre not in self._known:
                self._known[cadre] = await self._directory.contact(cadre) is not None
            if self._known[cadre]:
                return cadre
        if village not in self._fallback:
            self._fallback[village] = await first_contact(self._directory, village, FALLBACK_ROLES)
        return self._fallback[village]


async def first_contact(directory: Directory, village: str, roles: tuple[Role, ...]) -> str:
    """The id of the first contact covering `village` with the first role that has one; "" if none."""
    for role in roles:
        found = await directory.contacts_for(village, role)
        if found:
            return found[0].id
    return ""


def task_text(alert: Alert, contact: Contact, count: int, link: str, deadline: float) -> str:
    due = datetime.fromtimestamp(deadline, CHINA_TIME).strftime("%H:%M")
    mark = "【演练】" if alert.exercise else ""
    return (
        f"{mark}{contact.name}同志：{alert.event}{level_name(alert.level, 'zh-CN')}预警，"
        f"请在{due}前逐户确认您负责的{count}位重点人员（独居老人、残疾人等）并逐一回报：{link}"
    )


class Tasks:
    def __init__(
        self,
        reach: Reach,
        directory: Directory,
        deliveries: Deliveries,
        links: Links,
        settings: EscalationSettings,
    ) -> None:
        self.reach = reach
        self.directory = directory
        self.deliveries = deliveries
        self.links = links
        self.settings = settings

    async def link(self, alert: Alert, contact_id: str) -> str:
        return await self.links.cadre_url(alert.id, contact_id, link_expiry(alert.sent, alert.expires))

    async def deadline(self, alert: Alert) -> float:
        issued = (await self.reach.milestones(alert.id)).get("issued", alert.sent.timestamp())
        return issued + self.settings.confirm_within

    async def send_links(self, alert: Alert) -> int:
        """Queue each responsible contact's task link on the task channels; returns how many contacts."""
        deadline = await self.deadline(alert)
        notes = []
        cadres = await self.reach.cadres(alert.id)
        contacts = await self.directory.contacts([c for c in cadres if c])
        for contact_id, count in sorted(cadres.items()):
            contact = contacts.get(contact_id)
            if contact is None or count <= 0:
                continue
            link = await self.link(alert, contact.id)
            notes.append(Note(contact, task_text(alert, contact, count, link, deadline)))
        if notes:
            await send_notes(self.deliveries, alert, TASK_PURPOSE, self.settings.task_channel_names, notes)
        return len(notes)

    async def lists(self, alert: Alert) -> list[TaskList]:
        """Every contact's list for the alert (DESIGN §5.2 `GET /api/v1/alerts/{id}/tasks`)."""
        counts = await self.reach.counts(alert.id)
        deadline = await self.deadline(alert)
        out = []
        cadres = await self.reach.cadres(alert.id)
        contacts = await self.directory.contacts([c for c in cadres if c])
        for contact_id, total in sorted(cadres.items()):
            contact = contacts.get(contact_id)
            scope = counts.scope(f"k:{contact_id}")
            out.append(
                TaskList(
                    contact_id=contact_id,
                    name=contact.name if contact else "",
                    role=contact.role.value if contact else "",
                    link=await self.link(alert, contact_id) if contact else "",
                    total=total,
                    confirmed=scope["acknowledged"] + scope["confirmed"],
                    deadline=deadline,
                )
            )
        return out
