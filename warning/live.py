"""The live snapshot of an issued alert: what the duty officer watches, once a second, on the live page.

    live_view(read_model, alert_id) -> dict

Built on the reach view (warning/views.py `reach_view`: counters and bounded pages) plus what a person
on duty acts on: per village the loudspeakers played / silent / offline, the next escalation step with
when it fires and whom it will call, the dead letters per channel, and the unreached residents with
their tags and their responsible person's phone. Phones are in the snapshot because operators must
call them; nothing here logs it.

Loudspeakers are counted per village as warning/speaker_states.py says (played, silent, offline,
waiting), by the reach view itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from warning.i18n import current_language, t
from warning.labels import BEIJING, label
from warning.model import Alert, Contact, Role
from warning.readmodel import ReadModel
from warning.views import VILLAGES_MAX_PAGE, ledger_name, reach_view

UNREACHED_LIMIT = 200  # unreached residents listed on the live page (the count is always complete)
CADRES_SHOWN = 200  # cadres' task lists on the live page
CALLEES_SHOWN = 12  # contacts named under "next step" (the step may call more)
STEP_VILLAGES = 20  # villages looked at to say whom a step above the cadre will call
_ROLE_CHAIN = (Role.CADRE, Role.VILLAGE_HEAD, Role.TOWNSHIP_DUTY, Role.COUNTY_DUTY)
_TAG_ORDER = ("lives_alone", "elderly", "disabled", "no_smartphone")
_TAGS = {
    "elderly": ("老人", "elderly"),
    "lives_alone": ("独居", "lives alone"),
    "no_smartphone": ("无智能手机", "no smartphone"),
    "disabled": ("残疾", "disabled"),
}
VOLATILE = (
    "generated_at",
    "generated_beijing",
    "next_step_countdown",
)  # fields that change every second by themselves


def tag_names(tags: Sequence[str], english: bool) -> list[str]:
    """独居、老人…: a resident's tags as people read them, the most telling first."""
    ordered = [t for t in _TAG_ORDER if t in tags] + sorted(t for t in tags if t not in _TAG_ORDER)
    return [_TAGS[t][1 if english else 0] if t in _TAGS else t for t in ordered]


def _contact_json(contact: Contact | None, contact_id: str = "") -> dict[str, str]:
    if contact is None:
        return {"contact_id": contact_id, "name": "", "role": "", "role_name": "", "phone": ""}
    return {
        "contact_id": contact.id,
        "name": contact.name,
        "role": contact.role.value,
        "role_name": label("role", contact.role.value),
        "phone": contact.phone,
    }


async def _first_contact(service: ReadModel, village: str, roles: Sequence[Role]) -> Contact | None:
    for role in roles:
        found = await service.directory.contacts_for(village, role)
        if found:
            return found[0]
    return None


async def next_step(
    service: ReadModel, alert: Alert, view: dict[str, Any], now: float
) -> dict[str, Any] | None:
    """The first escalation step still on the clock: its number, role, due time, countdown and whom it
    will call (the cadres of the open residents, or per village below the coverage target the contact
    with the step's role or the next one up). None when no step is left."""
    steps = service.settings.escalation.steps
    if not steps:
        return None
    members = [f"{alert.id}|step|{i}" for i in range(len(steps))]
    scores = await service.deliveries.redis.zmscore(service.escalation.due_key, members)
    pending = [(i, float(s)) for i, s in enumerate(scores) if s is not None]
    if not pending:
        return None
    index, due = pending[0]
    step = steps[index]
    callees: dict[str, dict[str, Any]] = {}
    villages_open = [v for v in view["villages"] if v["pending"] + v["notified"] > 0]
    if step.notify == Role.CADRE.value:
        owners = [u["responsible"]["contact_id"] for u in view["unreached"] if u["responsible"]["contact_id"]]
        contacts = await service.directory.contacts(list(dict.fromkeys(owners))[:CALLEES_SHOWN])
        for contact in contacts.values():
            callees[contact.id] = _contact_json(contact)
    else:
        roles = _ROLE_CHAIN[_ROLE_CHAIN.index(Role(step.notify)) :]
        target = service.settings.escalation.coverage_target
        for village in villages_open[:STEP_VILLAGES]:
            total = village["must_reach_total"]
            done = village["confirmed"] + village["acknowledged"]
            if total and done / total < target:
                found = await _first_contact(service, village["code"], roles)
                if found is not None and (found.id in callees or len(callees) < CALLEES_SHOWN):
                    callees.setdefault(found.id, _contact_json(found) | {"villages": []})
                    callees[found.id]["villages"].append(village["name"] or village["code"])
    return {
        "step": index + 1,
        "of": len(steps),
        "role": step.notify,
        "role_name": label("role", step.notify),
        "channels": [label("channel", c) for c in step.channels],
        "due_at": due,
        "due_beijing": _clock(due),
        "callees": list(callees.values()),
        "open_villages": len(villages_open),
    }


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%H:%M:%S")


async def _dead_letters(service: ReadModel, channels: Sequence[str]) -> dict[str, int]:
    async with service.deliveries.redis.pipeline(transaction=False) as pipe:
        for channel in channels:
            pipe.xlen(service.deliveries.dead_key(channel))
        counts = await pipe.execute() if channels else []
    return {c: int(n) for c, n in zip(channels, counts, strict=True) if n}


async def live_view(
    read_model: ReadModel, alert_id: str, *, unreached_limit: int = UNREACHED_LIMIT
) -> dict[str, Any]:
    """The live page's snapshot of an alert (see the module docstring), JSON-ready, in the current
    language. Bounded: up to VILLAGES_MAX_PAGE villages and `unreached_limit` unreached residents.

    Raises:
        AlertNotFound: unknown id.
    """
    english = current_language() == "en"
    now = time.time()
    view = await reach_view(read_model, alert_id, limit=unreached_limit, villages_limit=VILLAGES_MAX_PAGE)
    alert = await read_model.alerts.get(alert_id)
    issued = (await read_model.reach.milestones(alert.id)).get("issued", alert.sent.timestamp())
    villages = []
    for v in view["villages"]:
        counts = v["speakers"]  # played / silent / offline / waiting: warning.speaker_states
        total = v["must_reach_total"]
        done = v["confirmed"] + v["acknowledged"]
        villages.append(
            {
                "code": v["code"],
                "name": v["name"],
                "must_reach_total": total,
                "confirmed": v["confirmed"],
                "acknowledged": v["acknowledged"],
                "unreached": v["pending"] + v["notified"],
                "coverage": round(done / total, 4) if total else 1.0,
                "residents": v["residents"]["total"],
                "speakers_total": counts["total"],
                "speakers_played": counts["played"],
                "speakers_silent": counts["silent"],
                "speakers_offline": counts["offline"],
                "speakers_waiting": counts["waiting"],
                "pending": v["pending"],
                "notified": v["notified"],
            }
        )
    people = await read_model.directory.residents([u["resident_id"] for u in view["unreached"]])
    owners = await read_model.directory.contacts(
        list(
            dict.fromkeys(
                u["responsible"]["contact_id"] for u in view["unreached"] if u["responsible"]["contact_id"]
            )
        )
    )
    unreached = []
    for u in view["unreached"]:
        person = people.get(u["resident_id"])
        owner_id = u["responsible"]["contact_id"]
        unreached.append(
            {
                "resident_id": u["resident_id"],
                "name": u["name"],
                "phone": person.phone if person else "",
                "tags": tag_names(sorted(person.tags), english) if person else [],
                "village": u["village"],
                "village_name": u["village_name"],
                "state": u["state"],
                "state_name": u["state_name"],
                "escalated": u["escalated"],
                "responsible": _contact_json(owners.get(owner_id), owner_id),
            }
        )
    channels = read_model.channels(alert)
    step = await next_step(read_model, alert, view, now) if alert.state.value == "issued" else None
    return {
        "alert": {
            "id": alert.id,
            "event": alert.event,
            "level": alert.level.value,
            "level_name": label("level", alert.level.value),
            "state": alert.state.value,
            "state_name": label("state", alert.state.value),
            "exercise": alert.exercise,
            "headline": alert.headline,
            "instruction": alert.instruction,
            "areas": list(alert.areas),
            "area_names": list((await read_model.area_names(alert.areas)).values()),
            "version": alert.version,
            "issued": issued,
            "issued_beijing": _stamp(issued),
            "expires": alert.expires.timestamp() if alert.expires else None,
            "expires_beijing": _stamp(alert.expires.timestamp()) if alert.expires else "",
        },
        "must_reach": view["must_reach"],
        "residents": view["residents"],
        "villages": villages,
        "villages_total": view["villages_total"],
        "unreached": unreached,
        "unreached_total": view["unreached_total"],
        "channels": view["channels"],
        "channel_names": {ledger: _ledger_name(ledger) for ledger in view["channels"]},
        "dead_letters": await _dead_letters(read_model, channels),
        "cadres": await cadre_lists(read_model, alert),
        "next_step": step,
        "next_step_countdown": max(0, round(step["due_at"] - now)) if step else None,
        "generated_at": now,
        "generated_beijing": _clock(now),
    }


async def cadre_lists(service: ReadModel, alert: Alert) -> list[dict[str, Any]]:
    """The alert's task lists (the first CADRES_SHOWN by contact id): who, phone, on list, done."""
    counts = await service.reach.counts(alert.id)
    lists = sorted((await service.reach.cadres(alert.id)).items())[:CADRES_SHOWN]
    contacts = await service.directory.contacts([c for c, _ in lists if c])
    out = []
    for contact_id, total in lists:
        contact = contacts.get(contact_id)
        if contact is None:
            continue
        scope = counts.scope(f"k:{contact_id}")
        out.append(
            _contact_json(contact) | {"total": total, "done": scope["confirmed"] + scope["acknowledged"]}
        )
    return out


def _ledger_name(ledger: str) -> str:
    channel, _, purpose = ledger.partition(".")
    if purpose.startswith("resend"):
        return t("{c}（补发任务链接）", "{c} (task link resent)", c=label("channel", channel))
    return ledger_name(ledger)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%Y-%m-%d %H:%M")


def signature(view: dict[str, Any]) -> str:
    """The snapshot without what changes by itself every second: equal signatures, nothing new to send."""
    return json.dumps({k: v for k, v in view.items() if k not in VOLATILE}, sort_keys=True, default=str)
