"""Report cells a spreadsheet would run as formulas are escaped; numbers and Beijing time are kept."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import load_workbook

from warning.labels import beijing, label
from warning.views import reach_csv, report_csv, report_xlsx, safe_cell

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+1", "@SUM(A1)", "-2+3", "\tcmd", "\r=1"]
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _live(cells: list[str]) -> list[str]:
    # A CSV cell that is a plain number (-1.5) is a number, not a formula.
    def number(c: str) -> bool:
        try:
            float(c)
        except ValueError:
            return False
        return True

    return [c for c in cells if c.startswith(FORMULA) and not number(c)]


def _report() -> dict[str, Any]:
    person = {
        "resident_id": HOSTILE[2],
        "name": HOSTILE[0],
        "village": "331099101201",
        "village_name": HOSTILE[1],
        "state": "pending",
        "escalated": True,
        "responsible": {"contact_id": "k1", "role": "cadre", "name": HOSTILE[3]},
    }
    return {
        "alert": {
            "id": "W1",
            "event": HOSTILE[0],
            "level": "orange",
            "areas": ["331099101201"],
            "area_names": [HOSTILE[1]],
            "state": "issued",
            "exercise": False,
            "version": 1,
            "issued_at": "2026-12-03T06:05:09+00:00",
            "headline": HOSTILE[4],
            "instruction": HOSTILE[5],
        },
        "timings": {
            "seconds_to_first_message": -1.5,
            "seconds_to_90pct_machine_reach": None,
            "seconds_to_all_must_reach_confirmed": None,
        },
        "must_reach": {
            "total": 1,
            "confirmed": 0,
            "acknowledged": 0,
            "notified": 0,
            "pending": 1,
            "escalated": 1,
            "late": 0,
            "outcomes": {"needs_help": 0},
        },
        "residents": {},
        "channels": {"sms": {"queued": 0, "delivered": 1}},
        "villages": [
            {
                "code": "331099101201",
                "name": HOSTILE[1],
                "must_reach_total": 1,
                "confirmed": 0,
                "acknowledged": 0,
                "unreached": 1,
                "seconds_to_all_confirmed": None,
                "residents_notified_or_better": 0,
                "residents_total": 1,
                "speakers_total": 0,
                "speakers_played": 0,
                "speakers_failed": 0,
            }
        ],
        "cadres": [
            {
                "contact_id": "k1",
                "name": HOSTILE[3],
                "role": "cadre",
                "total": 1,
                "confirmed": 0,
                "acknowledged": 0,
                "unreached": 1,
                "seconds_to_all_confirmed": None,
            }
        ],
        "escalations": [
            {
                "step": "0",
                "role": "cadre",
                "contact": "k1",
                "name": HOSTILE[2],
                "villages": ["331099101201"],
                "village_names": [HOSTILE[3]],
                "residents": 1,
                "at": 1796277909.0,
                "detail": HOSTILE[0],
            }
        ],
        "unreached": [person],
        "texts": [
            {
                "version": 1,
                "audience": "vulnerable",
                "channel": "sms",
                "language": "zh-CN",
                "text": HOSTILE[0],
            }
        ],
    }


def test_no_csv_or_xlsx_cell_starts_with_a_formula_character() -> None:
    """Names like =HYPERLINK(…), +1+1, @SUM(A1), -2+3 come out as text in CSV and in the workbook."""
    data = _report()
    cells = [c for row in csv.reader(io.StringIO(report_csv(data))) for c in row]
    assert "'" + HOSTILE[0] in cells
    assert not _live(cells) and "-1.5" in cells
    book = load_workbook(io.BytesIO(report_xlsx(data)))
    values = [c for sheet in book for row in sheet.iter_rows(values_only=True) for c in row]
    strings = [v for v in values if isinstance(v, str)]
    assert "'-2+3" in strings and not [v for v in strings if v.startswith(FORMULA)]
    assert -1.5 in values  # a negative number stays a number


def test_reach_csv_escapes_names() -> None:
    """`GET /reach?format=csv` escapes a resident's and a village's formula-like names."""
    view = {
        "villages": [
            {
                "code": "1",
                "name": HOSTILE[1],
                "must_reach_total": 1,
                "confirmed": 0,
                "acknowledged": 0,
                "notified": 0,
                "pending": 1,
                "responsible": None,
            }
        ],
        "audiences": {
            HOSTILE[2]: {"total": 1, "confirmed": 0, "acknowledged": 0, "notified": 0, "pending": 1}
        },
        "unreached": _report()["unreached"],
    }
    cells = [c for row in csv.reader(io.StringIO(reach_csv(view))) for c in row]
    assert "'" + HOSTILE[0] in cells and not _live(cells)


def test_safe_cell_keeps_numbers() -> None:
    """Only strings are prefixed: -3 and None pass unchanged."""
    assert safe_cell(-3) == -3 and safe_cell(None) is None and safe_cell("-3") == "'-3"


def test_labels_and_beijing_time() -> None:
    """Domain values read as 橙色/已发布/村干部, and times are Beijing time, not UTC."""
    assert [label("level", "orange"), label("state", "issued"), label("role", "cadre")] == [
        "橙色",
        "已发布",
        "村干部",
    ]
    assert label("level", "orange", "en") == "Orange" and label("channel", "x") == "x"
    assert beijing("2026-12-03T06:05:09Z") == "12月3日 14:05"
    assert beijing(1796277909.0, full=True) == "2026-12-03 14:05:09"
    assert beijing(None) == ""
