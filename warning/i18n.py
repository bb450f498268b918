"""User-facing text in zh-CN (first) and English.

Every message is written at its call site in both languages, `t("村代码无效：{code}", "invalid village
code: {code}", code=c)`, so text and meaning never drift apart in a distant catalogue. The language is
chosen once at start (`ui.language`, default zh-CN); a web request may choose its own for the time it
runs (`use_language`, e.g. the console's English switch), without touching any other request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

_default: Language = "zh-CN"
_request: ContextVar[Language | None] = ContextVar("language", default=None)


def parse_language(language: str) -> Language:
    """Anything English-like is `en`, the rest zh-CN."""
    return "en" if language.lower().startswith("en") else "zh-CN"


def set_language(language: str) -> None:
    """Choose the process's language of user-facing text (at start, from `ui.language`)."""
    global _default
    _default = parse_language(language)


@contextmanager
def use_language(language: str) -> Iterator[Language]:
    """Within this block (this task and what it awaits) text is in `language`; the default elsewhere."""
    chosen = parse_language(language)
    token = _request.set(chosen)
    try:
        yield chosen
    finally:
        _request.reset(token)


def current_language() -> Language:
    return _request.get() or _default


def t(zh: str, en: str, /, **params: object) -> str:
    """The message in the current language, with `{name}` placeholders filled from `params`."""
    template = en if current_language() == "en" else zh
    return template.format(**params) if params else template
