"""The loudspeaker fleet (村村响) as the console shows it: per township, then per village and device,
online or offline, last seen, and the last time it reported a warning played (and which warning).

    fleet_view(read_model, township="", offline_only=False) -> dict

A page is one township (a large county has thousands of devices): the township summary costs one
pipelined round trip per kind of fact, the page's devices a few more. "Last played" looks at the
`RECENT_ALERTS` most recent alerts only (an older playback is not what a duty officer checks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from warning.channels.speaker import acks_key, command_id
from warning.labels import beijing
from warning.model import Alert
from warning.readmodel import ReadModel
from warning.speaker_states import SpeakerState, speaker_states

RECENT_ALERTS = 20


async def last_played(service: ReadModel, devices: Sequence[str]) -> dict[str, dict[str, str]]:
    """Device → {alert_id, event, at} of the most recent of the recent alerts it reported played."""
    alerts: list[Alert] = [a for a in await service.alerts.recent(limit=RECENT_ALERTS) if a.version]
    if not devices or not alerts:
        return {}
    redis = service.deliveries.redis
    async with redis.pipeline(transaction=False) as pipe:
        for alert in alerts:
            pipe.hmget(
                service.deliveries.states_key(alert.id, alert.version, "speaker"), [f"s:{d}" for d in devices]
            )
        states = await pipe.execute()
    found: dict[str, Alert] = {}
    for alert, codes in zip(alerts, states, strict=True):  # newest first: the first played one wins
        for device, code in zip(devices, codes, strict=True):
            if str(code) == "D" and device not in found:
                found[device] = alert
    if not found:
        return {}
    cmd_ids = [command_id(f"{a.id}:{a.version}:speaker:s:{d}") for d, a in found.items()]
    acks = await redis.hmget(acks_key(service.store), cmd_ids)
    out = {}
    for (device, alert), ack in zip(found.items(), acks, strict=True):
        doc = json.loads(ack) if ack else {}
        out[device] = {
            "alert_id": alert.id,
            "event": alert.event,
            "exercise": "1" if alert.exercise else "",
            "at": beijing(doc.get("ts") or doc.get("seen")) if doc else "",
        }
    return out


async def fleet_view(service: ReadModel, township: str = "", *, offline_only: bool = False) -> dict[str, Any]:
    """Townships with their loudspeaker counts, and one township's villages and devices (the first
    township when `township` is "" or unknown); `offline_only` keeps the offline devices of the page."""
    codes = await service.directory.village_codes()
    states = await speaker_states(service, codes)  # every device's liveness: two round trips in all
    first_of: dict[str, str] = {}
    for code in codes:
        first_of.setdefault(code[:9], code)
    names = {v.code[:9]: v.township for v in await service.directory.villages(list(first_of.values()))}
    per_township: dict[str, list[SpeakerState]] = {}
    for code in codes:
        per_township.setdefault(code[:9], []).extend(states[code])
    townships: list[dict[str, Any]] = []
    for prefix in sorted(first_of):
        ids = per_township[prefix]
        up = sum(1 for d in ids if d.online)
        townships.append(
            {
                "code": prefix,
                "name": names.get(prefix, prefix),
                "total": len(ids),
                "online": up,
                "offline": len(ids) - up,
            }
        )
    chosen = township if township in first_of else (str(townships[0]["code"]) if townships else "")
    page_codes = [c for c in codes if c.startswith(chosen)] if chosen else []
    villages = {v.code: v.name for v in await service.directory.villages(page_codes)}
    devices = [s.device_id for code in page_codes for s in states[code]]
    speaker_names = {d: sp.name for d, sp in (await service.directory.speakers(devices)).items()}
    played = await last_played(service, devices)
    rows = []
    for code in page_codes:
        speakers = [s for s in states.get(code, []) if not (offline_only and s.online)]
        if offline_only and not speakers:
            continue
        rows.append(
            {
                "code": code,
                "name": villages.get(code, code),
                "total": len(states.get(code, [])),
                "online": sum(1 for s in states.get(code, []) if s.online),
                "speakers": [
                    {
                        "device_id": s.device_id,
                        "name": speaker_names.get(s.device_id, ""),
                        "online": s.online,
                        "seen": beijing(s.seen) if s.seen else "",
                        "last_played": played.get(s.device_id),
                    }
                    for s in speakers
                ],
            }
        )
    return {
        "townships": townships,
        "township": chosen,
        "villages": rows,
        "offline_only": offline_only,
        "totals": {
            "total": sum(t["total"] for t in townships),
            "online": sum(t["online"] for t in townships),
            "offline": sum(t["offline"] for t in townships),
        },
    }
