"""The WeChat field builders: OA template values within WeChat's 2023 rules, WeCom texts cut by UTF-8 bytes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warning.channels.wechat import (
    CONTENT_BYTES,
    DESCRIPTION_BYTES,
    TITLE_BYTES,
    client_msg_id,
    cut,
    cut_bytes,
    headline,
    template_data,
    wecom_body,
)
from warning.model import Level


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("台风橙色预警", 20, "台风橙色预警"),
        ("一二三四五六七八九十一二三四五六七八九十", 20, "一二三四五六七八九十一二三四五六七八九十"),
        ("一二三四五六七八九十一二三四五六七八九十一", 20, "一二三四五六七八九十一二三四五六七八九…"),
    ],
)
def test_cut_keeps_short_text_and_ends_long_text_with_ellipsis(text: str, limit: int, expected: str) -> None:
    """Text within the limit is kept whole; longer text is cut to exactly the limit, the last character "…"."""
    assert cut(text, limit) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("预" * 42 + "ab", "预" * 42 + "ab"),  # exactly 128 bytes: kept
        ("预" * 43, "预" * 41 + "…"),  # the 42nd character would straddle the cut
        ("a" + "🌀" * 40, "a" + "🌀" * 31 + "…"),  # 4-byte emoji: 1 + 124 bytes + "…" = 128
        ("ab" + "🌀" * 40, "ab" + "🌀" * 30 + "…"),  # a 4-byte character over the boundary is dropped whole
    ],
)
def test_cut_bytes_never_splits_a_character(text: str, expected: str) -> None:
    """Chinese (3 bytes) and emoji (4 bytes) at the 128-byte boundary are kept whole or dropped whole."""
    cut_text = cut_bytes(text, TITLE_BYTES)
    assert cut_text == expected
    assert len(cut_text.encode()) <= TITLE_BYTES


@given(st.text(), st.sampled_from([TITLE_BYTES, DESCRIPTION_BYTES, CONTENT_BYTES]))
def test_cut_bytes_fits_and_is_a_prefix(text: str, limit: int) -> None:
    """Any text, cut to any WeCom limit, fits in the limit and is the text itself or a prefix plus "…"."""
    cut_text = cut_bytes(text, limit)
    assert len(cut_text.encode()) <= limit
    assert cut_text == text or (cut_text.endswith("…") and text.startswith(cut_text[:-1]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("台风橙色预警。请立即转移。", ("台风橙色预警", "请立即转移。")),
        ("台风橙色预警\n请立即\n转移", ("台风橙色预警", "请立即 转移")),
        ("注意！山洪来了", ("注意！", "山洪来了")),
        ("没有句号的一句话", ("没有句号的一句话", "")),
        ("。开头就是句号", ("。开头就是句号", "")),
    ],
)
def test_headline_is_the_first_line_or_sentence(text: str, expected: tuple[str, str]) -> None:
    """The title is the first line or sentence, without a closing "。"; the rest follows on one line."""
    assert headline(text) == expected


def test_template_data_has_the_documented_keys_in_china_time() -> None:
    """The four documented keys; the level in Chinese; the time in China time, minutes precision."""
    data = template_data("台风红色预警。请立即转移。", Level.RED, datetime(2024, 7, 1, 0, 30, 59, tzinfo=UTC))
    assert data == {
        "thing1": {"value": "台风红色预警"},
        "phrase2": {"value": "红色"},
        "time3": {"value": "2024-07-01 08:30"},
        "thing4": {"value": "请立即转移。"},
    }


@given(st.text(), st.sampled_from(list(Level)))
def test_template_values_obey_the_2023_rules(text: str, level: Level) -> None:
    """Whatever the text: things are 1–20 characters on one line, the phrase ≤ 5, the time a date-time."""
    data = template_data(text, level, datetime.now(UTC))
    for key in ("thing1", "thing4"):
        value = data[key]["value"]
        assert 0 < len(value) <= 20
        assert "\n" not in value
    assert len(data["phrase2"]["value"]) <= 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", data["time3"]["value"])


def test_empty_rest_is_never_an_empty_thing() -> None:
    """A one-sentence text still fills thing4, which the platform refuses empty."""
    assert template_data("台风蓝色预警", Level.BLUE, datetime.now(UTC))["thing4"]["value"] == "无"


def test_wecom_body_is_a_textcard_with_a_link_and_text_without() -> None:
    """With a link: a textcard (title, description, url, 详情); without: text with the whole message."""
    card = wecom_body("台风橙色预警。请立即转移。", "https://x.example/c/1")
    assert card == {
        "msgtype": "textcard",
        "textcard": {
            "title": "台风橙色预警",
            "description": "请立即转移。",
            "url": "https://x.example/c/1",
            "btntxt": "详情",
        },
    }
    assert wecom_body(" 台风橙色预警。\n请立即转移。 ", "") == {
        "msgtype": "text",
        "text": {"content": "台风橙色预警。\n请立即转移。"},
    }


def test_client_msg_id_is_stable_per_delivery() -> None:
    """The same delivery key always gives the same 32-character id; another key another id."""
    assert client_msg_id("a1:1:wechat:r:1") == client_msg_id("a1:1:wechat:r:1")
    assert client_msg_id("a1:1:wechat:r:1") != client_msg_id("a1:1:wechat:r:2")
    assert re.fullmatch(r"[0-9a-f]{32}", client_msg_id("a1:1:wechat:r:1"))
