"""The words the renderer supplies per language: level names, expiry time, drill marks, sentence ends.

zh-CN comes first and is what any language without its own words here gets (an operator may add
templates in another language; its level names and dates are then written the Chinese way).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from warning.errors import RenderError
from warning.i18n import t
from warning.model import DEFAULT_LANGUAGE, Alert, Level

# Channels whose text is read aloud by a machine; `voice` shares the rewrite should it get templates.
SPOKEN_CHANNELS = frozenset({"speaker", "voice"})
# China has kept no daylight saving time since 1991: a fixed offset needs no tz database in the image.
CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")

_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})?\Z")
_LEVEL_NAMES = {
    "zh-CN": {Level.BLUE: "蓝色", Level.YELLOW: "黄色", Level.ORANGE: "橙色", Level.RED: "红色"},
    "en": {Level.BLUE: "Blue", Level.YELLOW: "Yellow", Level.ORANGE: "Orange", Level.RED: "Red"},
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Spoken channels get the mark without brackets, which text-to-speech reads badly.
_EXERCISE_MARKS = {
    ("zh-CN", False): "【演练】",
    ("en", False): "[DRILL] ",
    ("zh-CN", True): "演练。",
    ("en", True): "Drill. ",
}


def sentence(text: object, stop: str | None = None) -> str:
    """A template filter: `text` stripped and ended as a sentence ("。" after Chinese, "." otherwise).

    Text already ending a sentence is kept as is, and "" stays "".
    """
    text = str(text).strip()
    if not text or text[-1] in "。！？；.!?;…":
        return text
    if stop is None:
        stop = "。" if ord(text[-1]) >= 0x2E80 else "."
    return text + stop


def normalise_language(language: str) -> str:
    """ "en-GB" → "en", "zh"/"zh-Hans" → "zh-CN"; another well-formed tag is kept for operator templates.

    Raises:
        RenderError: `language` is not a language tag.
    """
    lowered = language.lower()
    if lowered.startswith("en"):
        return "en"
    if lowered.startswith("zh"):
        return DEFAULT_LANGUAGE
    if not _LANGUAGE.match(language):
        raise RenderError(
            t("语言代码无效：{language}", "invalid language tag: {language}", language=language)
        )
    return language


def _text_language(language: str) -> str:
    # Languages without their own words here (an operator's extra language) get the zh-CN ones.
    return "en" if language == "en" else DEFAULT_LANGUAGE


def exercise_mark(language: str, channel: str) -> str:
    """The mark every message of a drill starts with: 【演练】 / "[DRILL] " (spoken: 演练。 / "Drill. ")."""
    return _EXERCISE_MARKS[(_text_language(normalise_language(language)), channel in SPOKEN_CHANNELS)]


def expires_text(when: datetime | None, language: str) -> str:
    """`when` in China time as people write it: "11月30日 08:00" / "30 Nov 08:00"; "" without expiry.

    A naive datetime is taken as China time already.
    """
    if when is None:
        return ""
    local = when.astimezone(CHINA_TIME) if when.tzinfo else when
    if _text_language(normalise_language(language)) == "en":
        return f"{local.day} {_MONTHS[local.month - 1]} {local:%H:%M}"
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def level_name(level: Level, language: str) -> str:
    """橙色 / Orange: the colour of `level` in `language`."""
    return _LEVEL_NAMES[_text_language(normalise_language(language))][level]


_UPDATE_MARKS = {
    ("zh-CN", False): "【更新】",
    ("en", False): "[UPDATE] ",
    ("zh-CN", True): "预警更新。",
    ("en", True): "Update. ",
}


def update_mark(language: str, channel: str) -> str:
    """What starts every message of an updated warning, after the drill mark."""
    return _UPDATE_MARKS[(_text_language(normalise_language(language)), channel in SPOKEN_CHANNELS)]


def what_changed(previous: Alert, alert: Alert, language: str) -> str:
    """One sentence telling people who got the previous version what is different now ("" if nothing)."""
    lang = _text_language(normalise_language(language))
    parts: list[str] = []
    if previous.level != alert.level:
        old, new = level_name(previous.level, language), level_name(alert.level, language)
        upgraded = alert.level.rank > previous.level.rank
        parts.append(
            f"预警级别由{old}{'升级' if upgraded else '调整'}为{new}"
            if lang == "zh-CN"
            else f"level {'raised' if upgraded else 'changed'} from {old} to {new}"
        )
    if previous.expires != alert.expires and alert.expires is not None:
        when = expires_text(alert.expires, language)
        parts.append(f"有效期改至{when}" if lang == "zh-CN" else f"now valid until {when}")
    if set(previous.areas) != set(alert.areas):
        parts.append("预警范围已调整" if lang == "zh-CN" else "the warned area changed")
    if previous.instruction != alert.instruction and alert.instruction:
        parts.append("防御指引已更新" if lang == "zh-CN" else "new instructions")
    if not parts:
        return ""
    return ("；".join(parts) + "。") if lang == "zh-CN" else ("; ".join(parts).capitalize() + ". ")
