"""The live page's loudspeaker partition and tag names, without Redis."""

from __future__ import annotations

from warning.live import signature, tag_names
from warning.speaker_states import SpeakerState, speaker_counts


def speaker(online: bool, delivery: str) -> SpeakerState:
    return SpeakerState(device_id="d", village="331099101201", online=online, seen=None, delivery=delivery)


def test_every_loudspeaker_is_in_exactly_one_of_played_silent_offline_waiting() -> None:
    """Played wins over liveness; offline is not-played without liveness; an online one without a report
    is waiting until the report is overdue, then silent; a failed play is silent at once."""
    fleet = [
        speaker(True, "delivered"),
        speaker(False, "delivered"),
        speaker(False, "sent"),
        speaker(False, ""),
        speaker(True, "sent"),
        speaker(True, "failed"),
    ]
    early = speaker_counts(fleet, overdue=False)
    assert early == {
        "total": 6,
        "online": 3,
        "failed": 1,
        "played": 2,
        "silent": 1,
        "offline": 2,
        "waiting": 1,
    }
    late = speaker_counts(fleet, overdue=True)
    assert late["silent"] == 2 and late["waiting"] == 0
    for counts in (early, late):
        assert counts["played"] + counts["silent"] + counts["offline"] + counts["waiting"] == counts["total"]


def test_tags_read_as_people_say_them_most_telling_first() -> None:
    """独居 before 老人; a bureau's own tag is kept as written; English on request."""
    assert tag_names(["elderly", "lives_alone", "渔民"], english=False) == ["独居", "老人", "渔民"]
    assert tag_names(["no_smartphone", "disabled"], english=True) == ["disabled", "no smartphone"]


def test_the_signature_ignores_what_changes_every_second() -> None:
    """Two snapshots a second apart with nothing new have one signature; a new count changes it."""
    first = {"generated_at": 1.0, "generated_beijing": "10:00:00", "next_step_countdown": 60, "n": 1}
    later = first | {"generated_at": 2.0, "generated_beijing": "10:00:01", "next_step_countdown": 59}
    assert signature(first) == signature(later)
    assert signature(first) != signature(later | {"n": 2})
