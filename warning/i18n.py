"""User-facing text in zh-CN (first) and English.

Every message is written at its call site in both languages, `t("村代码无效：{code}", "invalid village
code: {code}", code=c)`, so text and meaning never drift apart in a distant catalogue. The language is
chosen once at start (`ui.language`, default zh-CN).
"""

from __future__ import annotations

from typing import Literal

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

_current: Language = "zh-CN"


def set_language(language: str) -> None:
    """Choose the language of user-facing text; anything English-like selects `en`, the rest zh-CN."""
    global _current
    _current = "en" if language.lower().startswith("en") else "zh-CN"


def current_language() -> Language:
    return _current


def t(zh: str, en: str, /, **params: object) -> str:
    """The message in the current language, with `{name}` placeholders filled from `params`."""
    template = en if _current == "en" else zh
    return template.format(**params) if params else template
