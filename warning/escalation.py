"""The escalation ladder (预警叫应): who is told, when, that must-reach residents are still unconfirmed.

    esc:due          ZSET "{alert}|step|{i}" and "{alert}|spk|{delivery key}|{village}" → due time
    esc:{alert}:log  STREAM every escalation: step, role, contact, village(s), residents, time
    esc:{alert}:resp HASH village → "{step}|{contact}|{role}": who answers for the village now
    esc:{alert}:fired HASH "{step}" / "spk|{device}" → time it fired (each fires once)
    esc:{alert}:listed:{contact} SET residents read out to a contact (press 1 on the call confirms them)

A step at index 0 with `notify = "cadre"` reminds every cadre with unconfirmed residents; steps for
higher roles fire per village whose must-reach coverage is below `coverage_target`, and make that
contact responsible for the village's unconfirmed residents. A step with nothing left to escalate
records that and sends nothing; the ladder is dropped the moment every must-reach resident is
confirmed, and when the alert is cancelled or expires. A loudspeaker not reported played within
`speaker_play_within` (or reported failed) sends its village's cadre door to door.

Deadlines live in the sorted set; `sweep` takes what is due, in bounded chunks, under the scheduler's
Redis lock, so one process acts; every step's messages are idempotent (see notify.py), so a sweep
that dies half-way is simply done again. The clock is injectable for tests.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from warning.alerts import AlertStore
from warning.config import EscalationSettings, EscalationStep
from warning.deliveries import Deliveries
from warning.directory.store import Directory
from warning.model import Alert, AlertState, Contact, Role
from warning.notify import Note, names_text, send_notes
from warning.reach import Counts, Entry, Reach
from warning.render.words import level_name
from warning.tasks import Tasks, first_contact, report_by

log = logging.getLogger(__name__)

_ROLE_CHAIN = (Role.CADRE, Role.VILLAGE_HEAD, Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY)
ROLE_ZH = {"cadre": "村干部", "village_head": "村主任", "township_duty": "乡镇值班", "county_duty": "县值班"}
SPEAKER_PURPOSE = "spk"


@dataclass(frozen=True, slots=True)
class Escalated:
    """One recorded escalation: a contact told about residents (or a silent loudspeaker)."""

    step: str  # "0", "1", … or "spk"
    role: str
    contact_id: str
    contact_name: str
    villages: tuple[str, ...]
    residents: int
    at: float
    detail: str = ""

    def to_fields(self) -> dict[str, str]:
        return {
            "step": self.step,
            "role": self.role,
            "contact": self.contact_id,
            "name": self.contact_name,
            "villages": ",".join(self.villages),
            "residents": str(self.residents),
            "at": f"{self.at:.3f}",
            "detail": self.detail,
        }

    @classmethod
    def from_fields(cls, d: dict[Any, Any]) -> Escalated:
        g = {str(k): str(v) for k, v in d.items()}
        return cls(
            g["step"],
            g["role"],
            g["contact"],
            g.get("name", ""),
            tuple(v for v in g.get("villages", "").split(",") if v),
            int(g.get("residents", "0")),
            float(g["at"]),
            g.get("detail", ""),
        )


# KEYS: the escalated set. ARGV: listed-set key prefix, then resident, contact, … → "1"/"0" per pair:
# whether the resident was new on that contact's list.
_LIST = """
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = tostring(redis.call('SADD', ARGV[1] .. ARGV[i + 1], ARGV[i]))
  redis.call('SADD', KEYS[1], ARGV[i])
end
return table.concat(out)
"""


@dataclass
class _Group:
    """What one contact is told about: how many residents, a few names, which villages."""

    count: int = 0
    sample: list[str] = field(default_factory=list)
    villages: set[str] = field(default_factory=set)

    def add(self, entries: list[Entry], new: int, keep: int = 8) -> None:
        self.count += new
        self.villages.update(e.village for e in entries)
        self.sample += [e.resident for e in entries[: max(0, keep - len(self.sample))]]


class _Owners:
    """Who a step escalates each open resident to: their cadre (step `cadre`), or the contact with the
    step's role (or the next role up) over a village below the coverage target; None for a village at it."""

    def __init__(self, escalation: Escalation, alert_id: str, role: str) -> None:
        self._escalation = escalation
        self._alert_id = alert_id
        self._roles = _ROLE_CHAIN[_ROLE_CHAIN.index(Role(role)) :]
        self._village: dict[str, str | None] = {}
        self._counts: Counts | None = None

    async def of(self, entry: Entry) -> str | None:
        if self._roles[0] is Role.CADRE:
            return entry.cadre
        if entry.village not in self._village:
            if self._counts is None:
                self._counts = await self._escalation.reach.counts(self._alert_id)
            scope = self._counts.scope(f"mv:{entry.village}")
            done = scope["acknowledged"] + scope["confirmed"]
            below = scope["total"] > 0 and done / scope["total"] < self._escalation.settings.coverage_target
            self._village[entry.village] = (
                await first_contact(self._escalation.directory, entry.village, self._roles) if below else None
            )
        return self._village[entry.village]


class Escalation:
    def __init__(
        self,
        *,
        alerts: AlertStore,
        reach: Reach,
        directory: Directory,
        deliveries: Deliveries,
        tasks: Tasks,
        settings: EscalationSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alerts = alerts
        self.reach = reach
        self.directory = directory
        self.deliveries = deliveries
        self.tasks = tasks
        self.settings = settings
        self.clock = clock
        self.redis = reach.redis
        self.keys = reach.keys
        self.due_key = self.keys.key("esc", "due")
        self._names: dict[str, str] = {}  # village code → name (a county has thousands)
        self._list = self.redis.register_script(_LIST)
        self._intersection = self.redis.register_script("return #redis.call('SINTER', KEYS[1], KEYS[2])")

    def _key(self, alert_id: str, part: str) -> str:
        return self.keys.key("esc", alert_id, part)

    # -- scheduling ---------------------------------------------------------------------------------

    async def schedule(self, alert: Alert) -> int:
        """Put the alert's ladder on the clock (from its issue time); idempotent. Returns steps scheduled."""
        if not await self.reach.open_count(alert.id):
            return 0
        start = (await self.reach.milestones(alert.id)).get("issued", self.clock())
        members = {f"{alert.id}|step|{i}": start + step.after for i, step in enumerate(self.settings.steps)}
        await self.redis.zadd(self.due_key, dict(members), nx=True)
        return len(members)

    async def watch_speaker(
        self, alert_id: str, delivery_key: str, village: str, *, now: bool = False
    ) -> None:
        """A loudspeaker command went out (or failed): if it is not played in time, its village's cadre goes."""
        due = self.clock() + (0.0 if now else self.settings.speaker_play_within)
        member = f"{alert_id}|spk|{delivery_key}|{village}"
        await self.redis.zadd(self.due_key, {member: due}, nx=not now, lt=now)

    async def watch_speakers(self, alert: Alert, speakers: Sequence[tuple[str, str]]) -> None:
        """Every loudspeaker (device, village) commanded for the alert must report `played` within
        `speaker_play_within` of now, whatever happens on the way (broker down, device offline, lost ack)."""
        due = self.clock() + self.settings.speaker_play_within
        members = {
            f"{alert.id}|spk|{alert.id}:{alert.version}:speaker:s:{device}|{village}": due
            for device, village in speakers
        }
        if members:
            await self.redis.zadd(self.due_key, dict(members), nx=True)

    async def stop(self, alert_id: str) -> int:
        """Drop the alert's remaining steps (everyone confirmed, or the alert ended); returns how many."""
        members = [f"{alert_id}|step|{i}" for i in range(len(self.settings.steps))]
        return int(await self.redis.zrem(self.due_key, *members))

    # -- sweeping -----------------------------------------------------------------------------------

    async def sweep(self, limit: int = 200) -> list[Escalated]:
        """Fire everything due now, `limit` at a time, until nothing is due; returns what was escalated."""
        fired: list[Escalated] = []
        while True:
            due = await self.redis.zrangebyscore(self.due_key, "-inf", self.clock(), start=0, num=limit)
            if not due:
                return fired
            for member in map(str, due):
                fired += await self._fire(member)
                await self.redis.zrem(self.due_key, member)

    async def _fire(self, member: str) -> list[Escalated]:
        alert_id, kind, rest = member.split("|", 2)
        alert = await self.alerts.find(alert_id)
        if alert is None or alert.state is not AlertState.ISSUED:
            return []  # cancelled or expired: nobody is escalated any more
        if kind == "step":
            index = int(rest)
            if index >= len(self.settings.steps):
                return []
            return await self._step(alert, index, self.settings.steps[index])
        delivery_key, village = rest.rsplit("|", 1)
        return await self._silent_speaker(alert, delivery_key, village)

    async def _fired(self, alert_id: str, name: str) -> bool:
        return bool(await self.redis.hexists(self._key(alert_id, "fired"), name))

    async def _mark_fired(self, alert_id: str, name: str) -> None:
        # Marked once everything is queued: a sweep that dies half-way is done again (its messages are
        # idempotent), instead of a step lost. The scheduler's lock keeps two sweeps from overlapping.
        await self.redis.hsetnx(self._key(alert_id, "fired"), name, f"{self.clock():.3f}")

    async def _step(self, alert: Alert, index: int, step: EscalationStep) -> list[Escalated]:
        """Fire one step: stream the open residents (memory grows with contacts and villages, not with
        residents), list each on the contact now responsible, then tell each contact once."""
        if await self._fired(alert.id, str(index)):
            return []
        groups: dict[str, _Group] = defaultdict(_Group)
        owner = _Owners(self, alert.id, step.notify)
        async for entries in self.reach.open_residents(alert.id, dedupe=False):
            listed: dict[str, list[Entry]] = defaultdict(list)
            for entry in entries:
                contact_id = await owner.of(entry)
                if contact_id is not None:  # None: the village is at its coverage target
                    listed[contact_id].append(entry)
            # One script per batch lists every resident on its contact, server side: grouping a random
            # SSCAN order by contact client side would cost a command per (batch, contact).
            pairs = [
                (e.resident, contact_id or "-") for contact_id, members in listed.items() for e in members
            ]
            added = str(
                await self._list(
                    keys=[self._key(alert.id, "escalated")],
                    args=[self._key(alert.id, "listed:"), *(x for pair in pairs for x in pair)],
                )
            )
            # Counted by what the sets took in, so a resident SSCAN returned twice counts once.
            flags = iter(added)
            for contact_id, members in listed.items():
                new = sum(1 for _ in members if next(flags) == "1")
                groups[contact_id].add(members, new)
        if not groups:
            if not await self.reach.open_count(alert.id):
                await self.stop(alert.id)
            await self._record(
                alert.id, [Escalated(str(index), step.notify, "", "", (), 0, self.clock(), "resolved")]
            )
            await self._mark_fired(alert.id, str(index))
            return []
        contacts = await self.directory.contacts([c for c in groups if c])
        records: list[Escalated] = []
        notes: list[Note] = []
        responsible: dict[Any, str] = {}
        for contact_id, group in sorted(groups.items()):
            contact = contacts.get(contact_id)
            villages = tuple(sorted(group.villages))
            records.append(
                Escalated(
                    str(index),
                    contact.role.value if contact else step.notify,
                    contact_id,
                    contact.name if contact else "",
                    villages,
                    group.count,
                    self.clock(),
                    "" if contact else "no contact with this role covers these villages",
                )
            )
            if contact is None:
                log.error(
                    "escalation found nobody to notify",
                    extra={"alert": alert.id, "step": index, "role": step.notify, "villages": villages},
                )
                continue
            if step.notify != Role.CADRE.value:
                responsible.update(dict.fromkeys(villages, f"{index}|{contact.id}|{contact.role.value}"))
            text = await self._text(alert, contact, group)
            notes.append(Note(contact, text, villages[0] if len(villages) == 1 else ""))
        await self._record(alert.id, records)
        if responsible:
            await self.redis.hset(self._key(alert.id, "resp"), mapping=responsible)
        await send_notes(self.deliveries, alert, f"esc{index}", step.channels, notes)
        await self._mark_fired(alert.id, str(index))
        log.warning(
            "escalation step fired",
            extra={"alert": alert.id, "step": index, "role": step.notify, "contacts": len(notes)},
        )
        return records

    async def _text(self, alert: Alert, contact: Contact, group: _Group) -> str:
        people = await self.directory.residents(group.sample)
        names = names_text([people[r].name for r in group.sample if r in people], total=group.count)
        villages = await self._village_names(group.villages)
        where = "、".join(villages[:5]) + ("等村" if len(villages) > 5 else "")
        mark = "【演练】" if alert.exercise else ""
        confirm = "全部已上门确认请按1。" if self.settings.voice_confirm else ""
        link = await self.tasks.message_link(alert, contact.id)
        duty = None if link else await self.tasks.duty_officer(contact)
        return (
            f"{mark}{contact.name}同志：{alert.event}{level_name(alert.level, 'zh-CN')}预警，"
            f"{where}仍有重点人员未确认安全：{names}。请立即上门或电话确认并回报。{confirm}{report_by(link, duty)}"
        )

    async def _village_names(self, codes: set[str]) -> list[str]:
        missing = sorted(c for c in codes if c not in self._names)
        for village in await self.directory.villages(missing):
            self._names[village.code] = village.name
        return [self._names.get(c, c) for c in sorted(codes)]

    async def _silent_speaker(self, alert: Alert, delivery_key: str, village: str) -> list[Escalated]:
        alert_id, version, ledger, recipient = delivery_key.split(":", 3)
        state = await self.deliveries.state(alert_id, int(version), ledger, recipient)
        if state == "delivered":
            return []  # it played
        device = recipient.removeprefix("s:")
        if await self._fired(alert.id, f"spk|{device}"):
            return []
        cadres = await self.directory.contacts_for(village, Role.CADRE)
        cadre_id = cadres[0].id if cadres else await first_contact(self.directory, village, _ROLE_CHAIN[1:])
        contact = await self.directory.contact(cadre_id) if cadre_id else None
        speaker = await self.directory.speaker(device)
        places = await self.directory.villages([village])
        where = f"{places[0].name if places else village}{speaker.name if speaker else device}"
        record = Escalated(
            SPEAKER_PURPOSE,
            contact.role.value if contact else "",
            contact.id if contact else "",
            contact.name if contact else "",
            (village,),
            0,
            self.clock(),
            f"loudspeaker {device} {state or 'silent'}",
        )
        await self._record(alert.id, [record])
        if contact is not None:
            mark = "【演练】" if alert.exercise else ""
            text = (
                f"{mark}{contact.name}同志：{where}的大喇叭未能播放{alert.event}预警（{state or '无回应'}），"
                "请立即上门逐户通知，并检查设备。"
            )
            await send_notes(
                self.deliveries,
                alert,
                f"{SPEAKER_PURPOSE}",
                self.settings.task_channel_names,
                [Note(contact, text, village)],
            )
        await self._mark_fired(alert.id, f"spk|{device}")
        return [record]

    async def _record(self, alert_id: str, records: Sequence[Escalated]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.xadd(self._key(alert_id, "log"), record.to_fields())  # type: ignore[arg-type]
            await pipe.execute()
        for record in records:  # every escalation fired is in the audit log too, with whom it called
            await self.alerts.audit(
                actor="escalation",
                role="system",
                action="escalate",
                obj=alert_id,
                result=record.detail or "ok",
                detail=f"step {record.step} {record.role} {record.contact_id} {record.contact_name} "
                f"villages={','.join(record.villages)} residents={record.residents}",
                ip="",
            )

    # -- reading ------------------------------------------------------------------------------------

    async def log(self, alert_id: str) -> list[Escalated]:
        entries: Any = await self.redis.xrange(self._key(alert_id, "log"))
        return [Escalated.from_fields(fields) for _, fields in entries or []]

    async def responsible(self, alert_id: str) -> dict[str, tuple[str, str]]:
        """Village → (contact id, role) of the highest step that fired for it."""
        raw = await self.redis.hgetall(self._key(alert_id, "resp"))
        out = {}
        for village, value in raw.items():
            _, contact, role = str(value).split("|", 2)
            out[str(village)] = (contact, role)
        return out

    async def listed(self, alert_id: str, contact_id: str) -> list[str]:
        """Residents read out to a contact by escalation messages (what press 1 on their call confirms)."""
        return sorted(map(str, await self.redis.smembers(self._key(alert_id, f"listed:{contact_id}"))))

    async def escalated_open(self, alert_id: str) -> int:
        """Must-reach residents still unconfirmed who sit on a named contact's escalation list."""
        keys = [self._key(alert_id, "escalated"), self.reach.key(alert_id, "open")]
        return int(await self._intersection(keys=keys))  # SINTERCARD needs Redis 7; the embedded one is 6

    async def is_escalated(self, alert_id: str, residents: list[str]) -> list[bool]:
        if not residents:
            return []
        flags = await self.redis.smismember(self._key(alert_id, "escalated"), residents)
        return [bool(f) for f in flags]

    async def pending(self, alert_id: str) -> list[tuple[str, float]]:
        """The alert's steps still on the clock: (member, due time)."""
        raw: Any = await self.redis.zrange(self.due_key, 0, -1, withscores=True)
        return [(str(m), float(s)) for m, s in raw if str(m).startswith(f"{alert_id}|")]


def escalation_json(record: Escalated) -> dict[str, Any]:
    fields: dict[str, Any] = dict(record.to_fields())
    return fields | {"at": record.at, "residents": record.residents, "villages": list(record.villages)}
