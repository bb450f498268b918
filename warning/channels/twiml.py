"""TwiML for warning calls: say the warning slowly, repeated, and ask for press-1; pure functions.

Documents are built with `xml.etree`, never by string formatting, so whatever the warning text holds
(`<`, `&`, quotes) is spoken as text and cannot change the call's instructions. The phrases a caller
hears are chosen by the call's `<Say>` language (Chinese for `cmn-*`/`zh-*`/`yue-*`, English
otherwise), not by the operator's interface language.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

GATHER_TIMEOUT = 8  # seconds Twilio waits for a key after the last prompt
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# Characters XML 1.0 cannot carry at all; ElementTree would write them and produce a broken document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class _Phrases:
    prompt: str  # after the warning: how to confirm
    closing: str  # no (right) key pressed: the call ends
    thanks: str  # confirmed
    unavailable: str  # the warning is no longer there to be said (expired or unknown)


_CHINESE = _Phrases(
    prompt="收到请按1。",
    closing="未收到确认。请注意安全，再见。",
    thanks="已确认，谢谢。注意安全。",
    unavailable="抱歉，这条预警已失效。再见。",
)
_ENGLISH = _Phrases(
    prompt="If you heard this warning, press 1.",
    closing="No confirmation received. Stay safe. Goodbye.",
    thanks="Confirmed, thank you. Stay safe.",
    unavailable="Sorry, this warning is no longer available. Goodbye.",
)


def _phrases(language: str) -> _Phrases:
    return _CHINESE if language.lower().startswith(("cmn", "zh", "yue")) else _ENGLISH


def prompt(language: str) -> str:
    """The press-1 prompt in the call's language, e.g. "收到请按1。" for `cmn-CN`."""
    return _phrases(language).prompt


def _say(parent: ET.Element, text: str, *, language: str, voice: str, slow: bool = False) -> None:
    say = ET.SubElement(parent, "Say", {"language": language, "voice": voice})
    clean = _NOT_XML.sub("", text)
    if slow:
        ET.SubElement(say, "prosody", {"rate": "slow"}).text = clean
    else:
        say.text = clean


def _document(root: ET.Element) -> str:
    return _DECLARATION + ET.tostring(root, encoding="unicode")


def say_and_gather(text: str, *, language: str, voice: str, repeat: int, action_url: str, prompt: str) -> str:
    """The call: `text` said slowly `repeat` times with a pause after each, then `prompt`, waiting for one key.

    The key goes to `action_url` (POST). With no key Twilio carries on after the `<Gather>`: a closing
    line, then the document ends and Twilio hangs up.
    """
    root = ET.Element("Response")
    gather = ET.SubElement(
        root,
        "Gather",
        {"numDigits": "1", "action": action_url, "method": "POST", "timeout": str(GATHER_TIMEOUT)},
    )
    for _ in range(max(1, repeat)):
        _say(gather, text, language=language, voice=voice, slow=True)
        ET.SubElement(gather, "Pause", {"length": "1"})
    _say(gather, prompt, language=language, voice=voice)
    _say(root, _phrases(language).closing, language=language, voice=voice)
    return _document(root)


def say_only(text: str, *, language: str, voice: str, repeat: int) -> str:
    """A call that asks nothing (an all-clear): `text` said slowly `repeat` times, then hang up."""
    root = ET.Element("Response")
    for _ in range(max(1, repeat)):
        _say(root, text, language=language, voice=voice, slow=True)
        ET.SubElement(root, "Pause", {"length": "1"})
    ET.SubElement(root, "Hangup")
    return _document(root)


def _say_then_hang_up(text: str, language: str, voice: str) -> str:
    root = ET.Element("Response")
    _say(root, text, language=language, voice=voice)
    ET.SubElement(root, "Hangup")
    return _document(root)


def thanks(language: str, voice: str) -> str:
    """The answer to press-1: a thank-you ("已确认，谢谢。注意安全。"), then hang up."""
    return _say_then_hang_up(_phrases(language).thanks, language, voice)


def goodbye(language: str, voice: str) -> str:
    """The end of a call that was not confirmed: the closing line, then hang up."""
    return _say_then_hang_up(_phrases(language).closing, language, voice)


def unavailable(language: str, voice: str) -> str:
    """A short apology for a warning that can no longer be said (expired or unknown), then hang up."""
    return _say_then_hang_up(_phrases(language).unavailable, language, voice)


def hangup() -> str:
    """End the call at once."""
    root = ET.Element("Response")
    ET.SubElement(root, "Hangup")
    return _document(root)
