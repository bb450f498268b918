"""Property: any alert we can hold emits as CAP 1.2 that reads back to the same alert.

tests/unit/test_cap_fuzz.py fuzzes the parser with arbitrary and mutated bytes; this file generates
*alerts* (any text, level, status, message type, areas, times, references) and checks that
`map_cap(parse_cap(emit_cap(alert)))` gives back what was emitted, or that emitting refuses with
CapError. `WARNING_FUZZ_EXAMPLES` raises the number of examples (`make test-faults`).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_cap_mapping import VILLAGES, FakeVillages
from warning.cap import CapError, parse_cap
from warning.cap.emit import emit_cap
from warning.cap.mapping import map_cap
from warning.model import Alert, AlertState, AlertStatus, Level

EXAMPLES = int(os.environ.get("WARNING_FUZZ_EXAMPLES", "0")) or 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SENDER = "331099-qxj"

# Any Unicode text but the surrogates (no UTF-8 encoding exists for them); control characters included.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
TOKEN = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], exclude_characters=",<&"),
    min_size=1,
    max_size=30,
).filter(lambda s: not any(c.isspace() for c in s))
# Whole seconds in China's offset or UTC: CAP carries seconds, and its parser gives back the offset sent.
MOMENT = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
AREAS = st.lists(
    st.sampled_from([v.code for v in VILLAGES] + ["331099", "331099101", "130602"]),
    min_size=1,
    max_size=4,
    unique=True,
)
REFERENCE = st.tuples(TOKEN, TOKEN, MOMENT).map(lambda r: f"{r[0]},{r[1]},{r[2].isoformat()}")


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    msg_type = draw(st.sampled_from(["Alert", "Update", "Cancel"]))
    # effective ≤ onset ≤ expires, each maybe absent (CAP refuses an alert that expires before it starts).
    effective, onset, expires = sorted(draw(st.lists(MOMENT, min_size=3, max_size=3)))
    return Alert(
        id=draw(TOKEN),
        sender=SENDER,
        sent=draw(MOMENT),
        event=draw(st.sampled_from(["台风", "暴雨", "大雾", "化工泄漏", "Typhoon"]) | TEXT.filter(str.strip)),
        level=draw(st.sampled_from(list(Level))),
        areas=tuple(draw(AREAS)),
        headline=draw(TEXT),
        description=draw(TEXT),
        instruction=draw(TEXT),
        event_code=draw(st.sampled_from(["", "11B01", "11B03", "11B17"])),
        status=draw(st.sampled_from(list(AlertStatus))),
        msg_type=msg_type,
        # An Update or Cancel names what it updates (CAP's rule; emit_cap does not add one of its own).
        references=tuple(draw(st.lists(REFERENCE, min_size=1, max_size=3))) if msg_type != "Alert" else (),
        urgency=draw(st.sampled_from(["Immediate", "Expected", "Future", "Past", "Unknown"])),
        certainty=draw(st.sampled_from(["Observed", "Likely", "Possible", "Unlikely", "Unknown"])),
        effective=effective if draw(st.booleans()) else None,
        onset=onset if draw(st.booleans()) else None,
        expires=expires if draw(st.booleans()) else None,
        state=AlertState.ISSUED,
    )


def _same_moment(a: datetime | None, b: datetime | None) -> bool:
    return a == b  # aware datetimes compare by instant, whatever the offset


@FUZZ
@given(alerts())
def test_emitted_alerts_read_back_the_same(alert: Alert) -> None:
    """parse_cap(emit_cap(a)) maps back to a's identity, level, areas, times and texts (XML-safe text)."""
    try:
        document = emit_cap(alert, sender=SENDER, sender_name="测试县气象台", villages=VILLAGES)
    except CapError as exc:
        assert exc.element and exc.rule
        return
    parsed = parse_cap(document)  # what we emit must always parse: a feed reader gets exactly this
    result = asyncio.run(map_cap(parsed, FakeVillages()))
    assert (result.identifier, result.sender, result.status, result.msg_type) == (
        alert.id,
        alert.sender,
        alert.status,
        alert.msg_type,
    )
    assert (result.level, result.event_code) == (alert.level, alert.event_code)
    # Areas are a set of prefixes: one inside another is covered by it already.
    covering = sorted(a for a in alert.areas if not any(a != b and a.startswith(b) for b in alert.areas))
    assert sorted(result.areas) == covering and result.unmatched == ()
    for mine, theirs in (
        (alert.effective, result.effective),
        (alert.onset, result.onset),
        (alert.expires, result.expires),
        (alert.sent, result.sent),
    ):
        assert _same_moment(mine, theirs), (mine, theirs)
    assert result.references == alert.references
    assert (result.urgency, result.certainty) == (alert.urgency, alert.certainty)
    # Texts: what XML 1.0 can carry comes back (XML reads a CR as a line end; edges may be trimmed).
    assert (result.description.strip(), result.instruction.strip()) == (
        _xml_text(alert.description),
        _xml_text(alert.instruction),
    )


def _xml_text(text: str) -> str:
    kept = "".join(c for c in text if (c in "\t\n\r" or c >= " ") and c not in "\ufffe\uffff")
    return kept.replace("\r\n", "\n").replace("\r", "\n").strip()


CHINA = timezone(timedelta(hours=8))


def test_a_control_character_in_a_headline_still_emits_parseable_cap() -> None:
    """The JSON API accepts any string; a stray control character must not make our own CAP unreadable."""
    alert = Alert(
        "331099-20261203-0001",
        SENDER,
        datetime(2026, 12, 3, 8, tzinfo=CHINA),
        "台风",
        Level.RED,
        ("331099101001",),
        headline="台风\x0b红色预警\x00",
        instruction="立即转移\x1f",
        state=AlertState.ISSUED,
    )
    parsed = parse_cap(emit_cap(alert, sender=SENDER, sender_name="测试县气象台", villages=VILLAGES))
    assert parsed.infos[0].headline == "台风红色预警"
