"""Loudspeaker text for text-to-speech: Chinese number spelling and removal of unreadable marks."""

from __future__ import annotations

import pytest

from warning.render.speech import cardinal, speakable


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (12, "十二"),
        (20, "二十"),
        (35, "三十五"),
        (100, "一百"),
        (105, "一百零五"),
        (110, "一百一十"),
        (1005, "一千零五"),
        (10010, "一万零一十"),
        (105000, "十万五千"),
        (100000000, "一亿"),
        (123456789, "一亿二千三百四十五万六千七百八十九"),
    ],
)
def test_cardinal(n: int, spoken: str) -> None:
    """Quantities are read the Chinese way, with 零 for gaps and a bare 十 for 10-19."""
    assert cardinal(n) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("阵风12级", "阵风十二级"),
        ("风速35米/秒", "风速三十五米每秒"),
        ("风速35m/s", "风速三十五米每秒"),
        ("2026年汛期", "二零二六年汛期"),
        ("14:30起", "十四点三十分起"),
        ("08:05前", "八点零五分前"),
        ("11月30日 08:00", "十一月三十日 八点"),
        ("2026-07-01发布", "二零二六年七月一日发布"),
        ("2026年11月30日14:30", "二零二六年十一月三十日十四点三十分"),
        ("降雨8.5毫米", "降雨八点五毫米"),
        ("概率100%", "概率百分之一百"),
        ("湿度90％", "湿度百分之九十"),
        ("风力10-12级", "风力十到十二级"),
        ("雨量50～80毫米", "雨量五十到八十毫米"),
        ("气温-5℃", "气温零下五摄氏度"),
        ("Ⅱ级应急响应", "二级应急响应"),
        ("请拨打12345或110", "请拨打幺二三四五或幺幺零"),
        ("值班电话：0580-1234567", "值班电话：零五八零幺二三四五六七"),
    ],
)
def test_numbers_are_spelled_out_in_chinese(text: str, spoken: str) -> None:
    """Digits become the words a duty officer would say: years and phones digit by digit, times as clock."""
    assert speakable(text, "zh-CN") == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("【海屿县应急管理局】台风橙色预警", "海屿县应急管理局，台风橙色预警"),
        ("详见 https://yj.example.gov.cn/a?b=1 。", "详见。"),
        ("⚠️台风来了🌀，请转移", "台风来了，请转移"),
        ("预警（橙色）。", "预警，橙色。"),
    ],
)
def test_marks_tts_reads_badly_are_removed(text: str, spoken: str) -> None:
    """Brackets, URLs and emoji are removed, leaving no stray or doubled pauses."""
    assert speakable(text, "zh-CN") == spoken


def test_english_keeps_digits() -> None:
    """English loudspeaker text keeps its digits; only marks are removed and units spelled out."""
    spoken = speakable("[Haiyu] Winds 35 m/s at 14:30 🌀, 8.5mm rain, see https://x.example", "en")
    assert spoken == "Haiyu Winds 35 metres per second at 14:30, 8.5 millimetres rain, see"


def test_text_without_numbers_or_marks_is_unchanged() -> None:
    """Plain spoken Chinese passes through untouched."""
    text = "各位村民请注意，请立即转移到安全地带。"
    assert speakable(text, "zh-CN") == text
