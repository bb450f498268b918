"""Cadre task lists: every must-reach resident is on one named contact's list, with a signed link to it.

The list itself is the reach ledger's `task:{contact}` set, filled by the fan-out. Here: who answers
for a resident (their cadre, or — without one — the village head, then the township and county duty
officers), the signed page link, the deadline, and the message that brings the link to the cadre.

When phones cannot open our public URL (links.in_messages), an Actual alert's task messages carry no
link: the cadre is told to go door to door and report to the duty officer by phone (with the officer's
number when the directory has one). The operator still sees every link in the task lists, to print;
the omission is logged and audited once per alert. A drill keeps its links.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from warning.alerts import AlertStore
from warning.config import EscalationSettings
from warning.deliveries import Deliveries
from warning.directory.store import Directory
from warning.errors import AlertError, FieldError
from warning.i18n import current_language, t
from warning.links import Links, link_expiry
from warning.model import Alert, AlertState, Contact, Role
from warning.notify import Note, send_notes
from warning.phone import mask
from warning.reach import Reach
from warning.render.words import CHINA_TIME, level_name, sentence

log = logging.getLogger(__name__)

# Who answers for a must-reach resident without a (known) cadre, in this order.
FALLBACK_ROLES = (Role.VILLAGE_HEAD, Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY)
# Whom a cadre without a link reports to by phone, in this order.
DUTY_ROLES = (Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY)
TASK_PURPOSE = "task"
RESEND_PURPOSE = "resend"  # ledger `{channel}.resend{click}`: one per operator's press of "resend"
_CLICK = re.compile(r"[0-9a-f]{8,32}")
WITHHELD = "links_withheld"  # reach milestone: links first left out of this alert's messages
_LOGGED_PHONES = 20  # masked phones named in the one log line of a withheld alert


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


def task_text(
    alert: Alert, contact: Contact, count: int, link: str, deadline: float, duty: Contact | None = None
) -> str:
    """The message bringing a cadre their task: with the page link, or — `link` "" — door to door and
    report by phone to the duty officer (`duty`, when known)."""
    params = {
        "m": t("【演练】", "[DRILL] ") if alert.exercise else "",
        "n": contact.name,
        "e": alert.event,
        "l": level_name(alert.level, current_language()),
        "d": datetime.fromtimestamp(deadline, CHINA_TIME).strftime("%H:%M"),
        "c": count,
        # The cadre acts on the same words the residents got: the headline and the instruction, whole.
        "w": "".join(
            part + (" " if current_language() == "en" else "")
            for part in (sentence(alert.headline), sentence(alert.instruction))
            if part
        ),
    }
    if link:
        return t(
            "{m}{n}同志：{e}{l}预警。{w}请在{d}前逐户确认您负责的{c}位重点人员（独居老人、残疾人等）并逐一回报：{k}",
            "{m}{n}: {l} {e} warning. {w}By {d}, check on each of the {c} vulnerable residents you are "
            "responsible for (elderly living alone, disabled…) and report each one: {k}",
            k=link,
            **params,
        )
    return t(
        "{m}{n}同志：{e}{l}预警。{w}请在{d}前逐户上门确认您负责的{c}位重点人员（独居老人、残疾人等），"
        "并逐一电话报告值班员{o}。",
        "{m}{n}: {l} {e} warning. {w}By {d}, go door to door to each of the {c} vulnerable residents you are "
        "responsible for (elderly living alone, disabled…) and report each one by phone to the duty "
        "officer{o}.",
        o=_officer(duty),
        **params,
    )


def _officer(duty: Contact | None) -> str:
    if duty is None or not duty.phone:
        return ""
    return t("{n}（{p}）", " {n} ({p})", n=duty.name, p=duty.phone)


def report_by(link: str, duty: Contact | None = None) -> str:
    """How a reminded contact reports back: on the task page, or by phone when links are withheld."""
    if link:
        return t("任务清单：{k}", "Task list: {k}", k=link)
    return t("请电话报告值班员{o}。", "Report by phone to the duty officer{o}.", o=_officer(duty))


class Tasks:
    def __init__(
        self,
        reach: Reach,
        directory: Directory,
        deliveries: Deliveries,
        links: Links,
        settings: EscalationSettings,
        alerts: AlertStore,
    ) -> None:
        self.reach = reach
        self.directory = directory
        self.deliveries = deliveries
        self.links = links
        self.settings = settings
        self.alerts = alerts

    async def link(self, alert: Alert, contact_id: str) -> str:
        """The contact's signed page link, always (operators print it; drills open it)."""
        return await self.links.cadre_url(alert.id, contact_id, link_expiry(alert.sent, alert.expires))

    async def message_link(self, alert: Alert, contact_id: str) -> str:
        """The link to put in a message to the contact: "" when links stay out of this alert's messages."""
        return await self.link(alert, contact_id) if self.links.in_messages(alert.exercise) else ""

    async def duty_officer(self, contact: Contact) -> Contact | None:
        """The first township, then county, duty officer (other than the contact) covering their areas."""
        for role in DUTY_ROLES:
            for area in contact.areas:
                found = [c for c in await self.directory.contacts_for(area, role) if c.id != contact.id]
                if found:
                    return found[0]
        return None

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
            notes.append(await self._note(alert, contact, count, deadline))
        if not self.links.in_messages(alert.exercise):
            await self._withheld(alert, [note.contact for note in notes])
        if notes:
            await send_notes(self.deliveries, alert, TASK_PURPOSE, self.settings.task_channel_names, notes)
        return len(notes)

    async def _note(self, alert: Alert, contact: Contact, count: int, deadline: float) -> Note:
        link = await self.message_link(alert, contact.id)
        duty = None if link else await self.duty_officer(contact)
        return Note(contact, task_text(alert, contact, count, link, deadline, duty))

    async def resend_link(
        self, alert: Alert, contact_id: str, *, click: str, actor: str, role: str, ip: str | None = None
    ) -> dict[str, int]:
        """Send one contact's task message again, on the channels it went out on (all task channels if
        it went out on none), once per `click` (an operator's press of "resend": the same click twice
        sends once). Audited with who asked. Returns the messages queued per ledger ({} for a repeat).

        Raises:
            AlertError: the alert is not issued.
            FieldError: `click` is malformed, or the contact has no task list for this alert.
        """
        if alert.state is not AlertState.ISSUED:
            raise AlertError(
                t("预警不在发布状态，不能补发链接", "the alert is not issued: no link to resend")
            )
        if not _CLICK.fullmatch(click):
            raise FieldError(
                t("补发请求无效，请刷新页面再试", "invalid resend request: reload the page"), field="click"
            )
        count = (await self.reach.cadres(alert.id)).get(contact_id, 0)
        contact = await self.directory.contact(contact_id) if contact_id else None
        if contact is None or count <= 0:
            raise FieldError(
                t("{c} 在此预警下没有任务清单", "{c} has no task list for this alert", c=contact_id or "-"),
                field="contact_id",
            )
        channels = self.settings.task_channel_names
        recipient = f"c:{contact.id}"
        sent_on = [
            c
            for c in channels
            if await self.deliveries.state(alert.id, alert.version, f"{c}.{TASK_PURPOSE}", recipient)
            not in (None, "no_address")
        ]
        note = await self._note(alert, contact, count, await self.deadline(alert))
        queued = await send_notes(
            self.deliveries, alert, f"{RESEND_PURPOSE}{click}", sent_on or channels, [note]
        )
        queued = {ledger: n for ledger, n in queued.items() if n}
        if queued:
            await self.alerts.audit(
                actor=actor,
                role=role,
                action="resend_link",
                obj=alert.id,
                result="ok",
                detail=f"{contact.id} via {','.join(sorted(queued))}",
                ip=ip,
            )
        return queued

    async def _withheld(self, alert: Alert, contacts: list[Contact]) -> None:
        """Log and audit, once per alert, that its messages go out without links."""
        if not await self.reach.milestone(alert.id, WITHHELD):
            return  # a resumed fan-out: said already
        log.warning(
            "links left out of an actual alert's messages: phones cannot open the public URL; cadres "
            "were told to go door to door and report by phone",
            extra={
                "alert": alert.id,
                "public_url": self.links.base_url,
                "contacts": len(contacts),
                "phones": [mask(c.phone) for c in contacts[:_LOGGED_PHONES] if c.phone],
            },
        )
        await self.alerts.audit(
            actor="system",
            role="system",
            action="withhold_links",
            obj=alert.id,
            result="ok",
            detail=f"{self.links.base_url} cannot be opened from phones; "
            f"{len(contacts)} cadre task messages and every resident message sent without links",
        )

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
