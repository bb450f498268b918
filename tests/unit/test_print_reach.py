"""`warning status`'s reach part names villages, people, states and roles in Chinese (English on request)."""

from __future__ import annotations

from typing import Any

import pytest

from warning.cli_reach import print_reach
from warning.i18n import set_language


def _view() -> dict[str, Any]:
    return {
        "must_reach": {
            "total": 2,
            "confirmed": 0,
            "acknowledged": 0,
            "notified": 1,
            "pending": 1,
            "escalated": 1,
            "late": 0,
            "outcomes": {"needs_help": 0},
        },
        "villages": [
            {
                "code": "331099101201",
                "name": "东岙村",
                "must_reach_total": 2,
                "confirmed": 0,
                "acknowledged": 0,
                "notified": 1,
                "pending": 1,
                "residents": {"total": 2, "pending": 1},
                "speakers": {"played": 0, "total": 1},
                "responsible": {"contact_id": "k9", "role": "village_head"},
            }
        ],
        "unreached": [
            {
                "resident_id": "r1",
                "name": "王阿婆",
                "village": "331099101201",
                "village_name": "东岙村",
                "state": "notified",
                "escalated": True,
                "responsible": {"contact_id": "k9", "role": "village_head", "name": "李村长"},
            }
        ],
    }


def test_reach_in_chinese(capsys: pytest.CaptureFixture[str]) -> None:
    """States, roles and names read 已通知待确认/村主任/李村长, not notified/village_head/k9."""
    print_reach(_view())
    out = capsys.readouterr().out
    assert "东岙村" in out and "王阿婆" in out and "已通知待确认（已上报）" in out
    assert "村主任 李村长" in out and "village_head" not in out and "notified" not in out


def test_reach_in_english(capsys: pytest.CaptureFixture[str]) -> None:
    """With --lang en the same table reads in English."""
    set_language("en")
    try:
        print_reach(_view())
    finally:
        set_language("zh-CN")
    out = capsys.readouterr().out
    assert "notified, not confirmed (escalated)" in out and "village head 李村长" in out
