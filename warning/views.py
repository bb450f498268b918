"""What the bureau sees: the live reach view of an alert and its after-action (复盘) report.

Both are built from counters and the small sets (open must-reach residents, task lists, the escalation
log), never by scanning a million deliveries. The same data feeds the API (JSON and CSV), `warning
status` and `warning report` (CSV, XLSX, JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from warning.broadcast import Broadcaster
from warning.channels.speaker import speaker_status
from warning.deliveries import STATES as DELIVERY_STATES
from warning.escalation import escalation_json
from warning.model import Alert, Contact

UNREACHED_LIMIT = 1000  # rows of unreached residents in one view (the counts are always complete)
_LEDGER_PURPOSES = ("", ".task", ".spk", ".esc0", ".esc1", ".esc2", ".esc3", ".esc4", ".esc5")


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


async def _contacts(service: Broadcaster, ids: Sequence[str]) -> dict[str, Contact]:
    return await service.directory.contacts(list(dict.fromkeys(i for i in ids if i)))


async def channel_counts(service: Broadcaster, alert: Alert) -> dict[str, dict[str, int]]:
    """Deliveries per ledger of the current version: warnings per channel, then task links and escalations."""
    ledgers = [
        f"{channel}{purpose}"
        for channel in ("sms", "voice", "wechat", "wecom", "speaker")
        for purpose in (*_LEDGER_PURPOSES, ".stop")
    ]
    counts = await service.deliveries.counts(alert.id, alert.version, ledgers)
    out: dict[str, dict[str, int]] = {}
    for ledger, c in counts.items():
        if c.counts:
            out[ledger] = {name: c.get(name) for name in ("queued", "sent", "delivered", "failed")} | {
                k: v for k, v in c.counts.items() if v
            }
    return out


async def _speakers(service: Broadcaster, alert: Alert, village: str) -> dict[str, int]:
    devices = [s.device_id async for batch in service.directory.stream_speakers([village]) for s in batch]
    if not devices:
        return {"total": 0, "online": 0, "played": 0, "failed": 0}
    status = await speaker_status(service.store, devices)
    key = service.deliveries.states_key(alert.id, alert.version, "speaker")
    codes = await service.deliveries.redis.hmget(key, [f"s:{d}" for d in devices])
    states = [DELIVERY_STATES.get(str(c), "") for c in codes]
    return {
        "total": len(devices),
        "online": sum(1 for d in devices if status.get(d, {}).get("online")),
        "played": states.count("delivered"),
        "failed": states.count("failed") + states.count("dead"),
    }


async def reach_view(service: Broadcaster, alert_id: str, *, limit: int = UNREACHED_LIMIT) -> dict[str, Any]:
    """The reach of an alert (DESIGN §5.2 shape, plus audiences, outcomes, milestones, escalations).

    Raises:
        AlertNotFound: unknown id.
    """
    alert = await service.alerts.get(alert_id)
    reach = service.reach
    counts = await reach.counts(alert.id)
    must = counts.scope("must")
    responsible = await service.escalation.responsible(alert.id)
    heard = await reach.heard(alert.id)
    village_codes = sorted(set(counts.names("v:")) | set(await service.directory.village_codes(alert.areas)))
    names = {v.code: v.name for v in await service.directory.villages(village_codes)}
    villages = []
    for code in village_codes:
        mv, everyone = counts.scope(f"mv:{code}"), counts.scope(f"v:{code}")
        villages.append(
            {
                "code": code,
                "name": names.get(code, ""),
                "must_reach_total": mv["total"],
                "confirmed": mv["confirmed"],
                "acknowledged": mv["acknowledged"],
                "notified": mv["notified"],
                "pending": mv["pending"],
                "residents": everyone,
                "speakers": await _speakers(service, alert, code),
                "heard_at": _iso(heard.get(code)),
                "responsible": _responsible_json(responsible.get(code)),
            }
        )
    unreached: list[dict[str, Any]] = []
    async for entries in reach.open_residents(alert.id):
        for entry in entries:
            if len(unreached) >= limit:
                break
            unreached.append({"entry": entry})
    entries_out = [row["entry"] for row in unreached]
    escalated = await service.escalation.is_escalated(alert.id, [e.resident for e in entries_out])
    owners = [responsible.get(e.village, (e.cadre, ""))[0] for e in entries_out]
    contacts = await _contacts(service, owners)
    people = await service.directory.residents([e.resident for e in entries_out])
    unreached_json = []
    for entry, owner, flag in zip(entries_out, owners, escalated, strict=True):
        contact = contacts.get(owner)
        person = people.get(entry.resident)
        unreached_json.append(
            {
                "resident_id": entry.resident,
                "name": person.name if person else "",
                "village": entry.village,
                "village_name": names.get(entry.village, ""),
                "state": entry.state,
                "escalated": flag,
                "responsible": {
                    "contact_id": owner,
                    "role": contact.role.value if contact else "",
                    "name": contact.name if contact else "",
                },
            }
        )
    return {
        "alert_id": alert.id,
        "version": alert.version,
        "state": alert.state.value,
        "must_reach": {
            "total": must["total"],
            "confirmed": must["confirmed"],
            "acknowledged": must["acknowledged"],
            "notified": must["notified"],
            "pending": must["pending"],
            "escalated": await service.escalation.escalated_open(alert.id),
            "late": counts.raw.get("late", 0),
            "outcomes": counts.outcomes(),
        },
        "residents": counts.scope("all"),
        "audiences": {name: counts.scope(f"au:{name}") for name in counts.names("au:")},
        "villages": villages,
        "unreached": unreached_json,
        "unreached_total": await reach.open_count(alert.id),
        "channels": await channel_counts(service, alert),
        "milestones": {k: _iso(v) for k, v in (await reach.milestones(alert.id)).items() if ":" not in k},
        "escalations": [escalation_json(e) for e in await service.escalation.log(alert.id)],
    }


def _responsible_json(found: tuple[str, str] | None) -> dict[str, str] | None:
    return {"contact_id": found[0], "role": found[1]} if found else None


def reach_csv(view: dict[str, Any]) -> str:
    """The reach view as one CSV: a `section` column says what each row is (village, audience, unreached)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "section",
            "id",
            "name",
            "village",
            "state",
            "total",
            "confirmed",
            "acknowledged",
            "notified",
            "pending",
            "responsible_id",
            "responsible_role",
        ]
    )
    for v in view["villages"]:
        resp = v["responsible"] or {}
        w.writerow(
            [
                "village",
                v["code"],
                v["name"],
                v["code"],
                "",
                v["must_reach_total"],
                v["confirmed"],
                v["acknowledged"],
                v["notified"],
                v["pending"],
                resp.get("contact_id", ""),
                resp.get("role", ""),
            ]
        )
    for name, c in view["audiences"].items():
        w.writerow(
            [
                "audience",
                name,
                name,
                "",
                "",
                c["total"],
                c["confirmed"],
                c["acknowledged"],
                c["notified"],
                c["pending"],
                "",
                "",
            ]
        )
    for u in view["unreached"]:
        w.writerow(
            [
                "unreached",
                u["resident_id"],
                u["name"],
                u["village"],
                u["state"],
                "",
                "",
                "",
                "",
                "",
                u["responsible"]["contact_id"],
                u["responsible"]["role"],
            ]
        )
    return out.getvalue()


# -- the after-action report ---------------------------------------------------------------------------


def _since(start: float | None, ts: float | None) -> float | None:
    return round(ts - start, 3) if start is not None and ts is not None else None


async def report(service: Broadcaster, alert_id: str) -> dict[str, Any]:
    """The after-action (复盘) report: how long each stage took, per village and per cadre, every escalation.

    Raises:
        AlertNotFound: unknown id.
    """
    view = await reach_view(service, alert_id, limit=100_000)
    alert = await service.alerts.get(alert_id)
    counts = await service.reach.counts(alert.id)
    milestones = await service.reach.milestones(alert.id)
    start = milestones.get("issued")
    villages = []
    for v in view["villages"]:
        villages.append(
            {
                "code": v["code"],
                "name": v["name"],
                "must_reach_total": v["must_reach_total"],
                "confirmed": v["confirmed"],
                "acknowledged": v["acknowledged"],
                "unreached": v["pending"] + v["notified"],
                "seconds_to_all_confirmed": _since(start, milestones.get(f"v:{v['code']}:must_100")),
                "residents_notified_or_better": v["residents"]["total"] - v["residents"]["pending"],
                "residents_total": v["residents"]["total"],
                "speakers_total": v["speakers"]["total"],
                "speakers_played": v["speakers"]["played"],
                "speakers_failed": v["speakers"]["failed"],
            }
        )
    cadres = []
    task_counts = await service.reach.cadres(alert.id)
    contacts = await _contacts(service, list(task_counts))
    for contact_id, total in sorted(task_counts.items()):
        scope = counts.scope(f"k:{contact_id}")
        contact = contacts.get(contact_id)
        cadres.append(
            {
                "contact_id": contact_id,
                "name": contact.name if contact else "",
                "role": contact.role.value if contact else "",
                "total": total,
                "confirmed": scope["confirmed"],
                "acknowledged": scope["acknowledged"],
                "unreached": scope["pending"] + scope["notified"],
                "seconds_to_all_confirmed": _since(start, milestones.get(f"k:{contact_id}:must_100")),
            }
        )
    return {
        "alert": {
            "id": alert.id,
            "event": alert.event,
            "level": alert.level.value,
            "areas": list(alert.areas),
            "state": alert.state.value,
            "exercise": alert.exercise,
            "version": alert.version,
            "issued_at": _iso(start),
        },
        "timings": {
            "seconds_to_first_message": _since(start, milestones.get("first_sent")),
            "seconds_to_90pct_machine_reach": _since(start, milestones.get("machine_90")),
            "seconds_to_all_must_reach_confirmed": _since(start, milestones.get("must_100")),
        },
        "must_reach": view["must_reach"],
        "residents": view["residents"],
        "channels": view["channels"],
        "villages": villages,
        "cadres": cadres,
        "escalations": view["escalations"],
        "unreached": view["unreached"],
    }


REPORT_SECTIONS = ("villages", "cadres", "escalations", "unreached")


def report_rows(data: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The report as tables (sheet/section name → header row + rows), for CSV and XLSX."""
    t = data["timings"]
    m = data["must_reach"]
    summary = [
        ["item", "value"],
        ["alert_id", data["alert"]["id"]],
        ["event", data["alert"]["event"]],
        ["level", data["alert"]["level"]],
        ["issued_at", data["alert"]["issued_at"]],
        ["seconds_to_first_message", t["seconds_to_first_message"]],
        ["seconds_to_90pct_machine_reach", t["seconds_to_90pct_machine_reach"]],
        ["seconds_to_all_must_reach_confirmed", t["seconds_to_all_must_reach_confirmed"]],
        *[[f"must_reach_{k}", v] for k, v in m.items() if not isinstance(v, dict)],
        *[[f"outcome_{k}", v] for k, v in m["outcomes"].items()],
        *[[f"{ledger}_{state}", n] for ledger, c in data["channels"].items() for state, n in c.items()],
    ]
    tables: dict[str, list[list[Any]]] = {"summary": summary}
    for section in REPORT_SECTIONS:
        rows = data[section]
        if section == "unreached":
            rows = [
                {
                    **{k: v for k, v in r.items() if k != "responsible"},
                    "responsible_id": r["responsible"]["contact_id"],
                    "responsible_role": r["responsible"]["role"],
                    "responsible_name": r["responsible"]["name"],
                }
                for r in rows
            ]
        header = list(rows[0]) if rows else ["-"]
        tables[section] = [header, *[[r.get(h) for h in header] for r in rows]]
    return tables


def report_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    for name, rows in report_rows(data).items():
        w.writerow([f"# {name}"])
        w.writerows(rows)
        w.writerow([])
    return out.getvalue()


def report_xlsx(data: dict[str, Any]) -> bytes:
    from openpyxl import Workbook  # imported here: only report writing needs it

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type,unused-ignore]
    for name, rows in report_rows(data).items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append([v if isinstance(v, int | float | str) or v is None else str(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
