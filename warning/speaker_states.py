"""Loudspeakers as the reach view, the live page and the fleet page count them: per device its liveness
and (for an alert) the state of that alert's command to it.

A village's loudspeakers fall in exactly one of: played (reported played), offline (liveness lost and
not played), silent (online, but reported failed, or no report within `escalation.speaker_play_within`
of issue: `overdue`), waiting (online, still within that time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warning.channels.liveness import speaker_status
from warning.deliveries import STATES as DELIVERY_STATES
from warning.model import Alert
from warning.readmodel import ReadModel


@dataclass(frozen=True, slots=True)
class SpeakerState:
    """One loudspeaker: where, whether it is online, when it last reported, and the alert's command."""

    device_id: str
    village: str
    online: bool
    seen: str | None  # ISO time of its last status report, None if it never reported
    delivery: str  # the delivery state of this alert's command ("" without an alert or a command)


async def speaker_states(
    service: ReadModel, codes: Sequence[str], alert: Alert | None = None
) -> dict[str, list[SpeakerState]]:
    """The loudspeakers of villages `codes` with their liveness (and, given `alert`, the state of its
    command to each), in three round trips whatever the number of villages."""
    by_village = await service.directory.speaker_ids(codes)
    devices = [d for ids in by_village.values() for d in ids]
    status = await speaker_status(service.store, devices)
    states: dict[str, str] = {}
    if devices and alert is not None:
        key = service.deliveries.states_key(alert.id, alert.version, "speaker")
        codes_of = await service.deliveries.redis.hmget(key, [f"s:{d}" for d in devices])
        states = {d: DELIVERY_STATES.get(str(c), "") for d, c in zip(devices, codes_of, strict=True)}
    return {
        code: [
            SpeakerState(
                device_id=d,
                village=code,
                online=bool(status.get(d, {}).get("online")),
                seen=status.get(d, {}).get("seen"),
                delivery=states.get(d, ""),
            )
            for d in ids
        ]
        for code, ids in by_village.items()
    }


def speaker_counts(speakers: Sequence[SpeakerState], *, overdue: bool) -> dict[str, int]:
    """total, online and failed (its command failed or dead-lettered), and the partition played /
    silent / offline / waiting, for one village's loudspeakers. `overdue`: the time for a playback
    report is over, so an online one without it is silent."""
    out = {"total": len(speakers), "online": 0, "failed": 0}
    out |= {"played": 0, "silent": 0, "offline": 0, "waiting": 0}
    for s in speakers:
        out["online"] += s.online
        out["failed"] += s.delivery in ("failed", "dead")
        if s.delivery == "delivered":
            out["played"] += 1
        elif not s.online:
            out["offline"] += 1
        elif overdue or s.delivery in ("failed", "dead"):
            out["silent"] += 1
        else:
            out["waiting"] += 1
    return out
