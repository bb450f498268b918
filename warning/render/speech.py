"""Loudspeaker text for text-to-speech: numbers spelled out in Chinese, marks that TTS misreads removed.

Village loudspeakers read text with cheap TTS engines that stumble on digits (2026 as a quantity, 14:30
as a ratio), brackets, URLs and emoji. `speakable` rewrites a rendered text the way a duty officer
would read it aloud: 2026年 → 二零二六年, 14:30 → 十四点三十分, 12级 → 十二级, 8.5 → 八点五,
100% → 百分之一百, 10-12 → 十到十二, 35米/秒 → 三十五米每秒, hotlines digit by digit (12345 →
幺二三四五). English text keeps its digits; only the marks are removed and units spelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
_GROUP_UNITS = ("", "万", "亿", "万亿")

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U0001fc00-\U0001ffff\u2190-\u21ff\u2300-\u23ff\u2460-\u24ff\u25a0-\u27bf"
    "\u2900-\u297f\u2b00-\u2bff\ufe00-\ufe0f\u200d\u20e3\U000e0000-\U000e007f]"
)
_NUMBER = r"\d+(?:\.\d+)?"


def cardinal(n: int) -> str:
    """`n` as a Chinese numeral read as a quantity: 12 → 十二, 105 → 一百零五, 20000 → 二万."""
    if n == 0:
        return _DIGITS[0]
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out = ""
    gap = False  # a zero group or leading zeros since the last written digit
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            gap = bool(out)
            continue
        if out and (gap or group < 1000):
            out += _DIGITS[0]
        out += _group(group) + _GROUP_UNITS[index]
        gap = False
    return out[1:] if out.startswith("一十") else out


def _group(n: int) -> str:
    out, zero = "", False
    for value, unit in _SMALL_UNITS:
        digit = n // value % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += _DIGITS[0]
            zero = False
        out += _DIGITS[digit] + unit
    return out


def digit_by_digit(digits: str, *, one: str = "一") -> str:
    """Each digit on its own, as years and phone numbers are read: 2026 → 二零二六."""
    return "".join(one if d == "1" else _DIGITS[int(d)] for d in digits if d.isdigit())


def number(text: str) -> str:
    """A decimal number read aloud: 8.5 → 八点五, 35 → 三十五."""
    whole, _, fraction = text.partition(".")
    spoken = cardinal(int(whole))
    return f"{spoken}点{digit_by_digit(fraction)}" if fraction else spoken


def _clock(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    spoken = f"{cardinal(hours)}点"
    if minutes:
        spoken += f"{'零' if minutes < 10 else ''}{cardinal(minutes)}分"
    return spoken


def _phone_numbers(text: str) -> str:
    # "12345或110": each number digit by digit, 1 as 幺 as Chinese read phone numbers; "或"/"、" kept.
    return re.sub(r"[\d\s-]+", lambda m: digit_by_digit(m.group(0), one="幺"), text).replace("/", "或")


def _date(m: re.Match[str]) -> str:
    return f"{digit_by_digit(m.group(1))}年{cardinal(int(m.group(2)))}月{cardinal(int(m.group(3)))}日"


_ROMAN = {"Ⅰ": "一", "Ⅱ": "二", "Ⅲ": "三", "Ⅳ": "四", "I": "一", "II": "二", "III": "三", "IV": "四"}

# Order matters: each rule consumes the digits it reads, so later, more general rules never see them.
_ZH_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_URL, ""),
    (_EMOJI, ""),
    (re.compile(r"(?<!\d)(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})(?:日|(?!\d))"), _date),
    (re.compile(r"(\d{4})(?=\s*年)"), lambda m: digit_by_digit(m.group(1))),
    (re.compile(r"(?<!\d)([01]?\d|2[0-3])[:：]([0-5]\d)(?!\d)"), _clock),
    (
        re.compile(r"(拨打|电话|热线|致电|手机|号码)([:：\s]*)(\d[\d\s\-或、和/]*\d)"),
        lambda m: m.group(1) + m.group(2) + _phone_numbers(m.group(3)),
    ),
    (re.compile(r"(?<![\d.])\d{7,}(?![\d.])"), lambda m: digit_by_digit(m.group(0), one="幺")),
    (re.compile(r"(Ⅳ|Ⅲ|Ⅱ|Ⅰ|IV|III|II|I)(?=\s*级)"), lambda m: _ROMAN[m.group(1)]),
    (re.compile(rf"({_NUMBER})\s*[%％]"), lambda m: f"百分之{number(m.group(1))}"),
    (re.compile(rf"(?<![\d.])-\s*({_NUMBER})(?=\s*(?:℃|°C|度))"), lambda m: f"零下{number(m.group(1))}"),
    (
        re.compile(rf"({_NUMBER})\s*(?:-|~|～|—|–|至|到)\s*({_NUMBER})"),
        lambda m: f"{number(m.group(1))}到{number(m.group(2))}",
    ),
    (re.compile(_NUMBER), lambda m: number(m.group(0))),
    (re.compile(r"℃|°C"), "摄氏度"),
    (re.compile(r"(?:米|m)\s*/\s*(?:秒|s)\b"), "米每秒"),
    (re.compile(r"(?:公里|千米|km)\s*/\s*(?:小时|h)\b"), "公里每小时"),
    (re.compile(r"(毫米|厘米|米|公里)\s*/\s*(小时|秒|天|分钟)"), r"\1每\2"),
    (re.compile(r"(?<=[零一二三四五六七八九十百千万])\s*mm\b"), "毫米"),
    (re.compile(r"[【〔\[]"), ""),
    (re.compile(r"[】〕\]（）()]"), "，"),
    (re.compile(r"[#*|~^_<>《》「」『』\"“”]"), ""),
    (re.compile(r"/"), "、"),
)

_EN_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_URL, ""),
    (_EMOJI, ""),
    (re.compile(r"\s*(?:m/s)\b"), " metres per second"),
    (re.compile(r"\s*(?:km/h)\b"), " kilometres per hour"),
    (re.compile(r"(?<=\d)\s*mm\b"), " millimetres"),
    (re.compile(r"\s*(?:℃|°C)"), " degrees Celsius"),
    (re.compile(r"[【】\[\]〔〕#*|~^_<>\"“”]"), " "),
)


def speakable(text: str, language: str) -> str:
    """`text` rewritten for text-to-speech in `language` (zh-CN: numbers spelled out; en: digits kept)."""
    english = language.lower().startswith("en")
    for pattern, replacement in _EN_RULES if english else _ZH_RULES:
        text = pattern.sub(replacement, text)
    return _tidy(text, english=english)


def _tidy(text: str, *, english: bool) -> str:
    text = re.sub(r"[ \t\u3000]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text)
    if not english:
        # Pauses left by removed marks: keep the strongest of a run, never start a sentence with one.
        text = re.sub(r"[，,、 ]*([。！？!?；;])[，,、 ]*", r"\1", text)
        text = re.sub(r"[，,、]+\s*[，,、]+", "，", text)
        text = re.sub(r"(?m)^[，,、。\s]+", "", text)
    else:
        text = re.sub(r" +([,.;:!?])", r"\1", text)
    return text.strip(" \n，,、")
