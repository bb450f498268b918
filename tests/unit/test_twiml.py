"""TwiML for warning calls: well-formed, escaped, repeated slowly, and pointing the key press where asked."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from warning.channels import twiml

ACTION = "https://warn.example.cn/hooks/twilio/voice/gather?d=a1%3A1%3Avoice%3Ar%3A7&r=1"
TEXT = "【演练】台风橙色预警：请立即转移到安置点。"


def gather_call(text: str = TEXT, *, repeat: int = 2, language: str = "cmn-CN") -> ET.Element:
    document = twiml.say_and_gather(
        text,
        language=language,
        voice="Polly.Zhiyu",
        repeat=repeat,
        action_url=ACTION,
        prompt=twiml.prompt(language),
    )
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(document)


def test_say_and_gather_is_a_response_with_one_single_key_gather() -> None:
    """The document is a <Response> whose <Gather> waits 8 s for one key and POSTs it."""
    root = gather_call()
    assert root.tag == "Response"
    [gather] = root.findall("Gather")
    assert gather.attrib == {"numDigits": "1", "action": ACTION, "method": "POST", "timeout": "8"}


@pytest.mark.parametrize("repeat", [1, 2, 5])
def test_text_is_said_slowly_repeat_times_with_pauses_then_the_prompt(repeat: int) -> None:
    """The warning is said `repeat` times at slow prosody, each followed by a 1 s pause, then "收到请按1。"."""
    gather = gather_call(repeat=repeat).find("Gather")
    assert gather is not None
    verbs = list(gather)
    assert [v.tag for v in verbs] == ["Say", "Pause"] * repeat + ["Say"]
    for say in verbs[: 2 * repeat : 2]:
        assert say.attrib == {"language": "cmn-CN", "voice": "Polly.Zhiyu"}
        [prosody] = list(say)
        assert (prosody.tag, prosody.attrib, prosody.text) == ("prosody", {"rate": "slow"}, TEXT)
    assert all(p.attrib == {"length": "1"} for p in verbs[1 : 2 * repeat : 2])
    assert verbs[-1].text == "收到请按1。"


def test_no_key_pressed_ends_with_a_closing_line_outside_the_gather() -> None:
    """After the <Gather> comes one <Say>: what a callee who pressed nothing hears before the call ends."""
    root = gather_call()
    assert [v.tag for v in root] == ["Gather", "Say"]
    assert root[1].text and "再见" in root[1].text


def test_markup_in_the_warning_is_spoken_not_obeyed() -> None:
    """`<`, `&`, `>` and quotes in the text are escaped: it round-trips exactly and adds no verbs."""
    hostile = "A&B <Hangup/> \"quoted\" 'single' </Say><Dial>+1</Dial> ]]> &amp;"
    document = twiml.say_and_gather(
        hostile, language="en-US", voice="Polly.Joanna", repeat=1, action_url=ACTION, prompt="<press> 1"
    )
    assert "<Hangup/>" not in document and "<Dial>" not in document
    root = ET.fromstring(document)
    assert [e.tag for e in root.iter()] == ["Response", "Gather", "Say", "prosody", "Pause", "Say", "Say"]
    assert root.findtext("Gather/Say/prosody") == hostile
    assert root.findall("Gather/Say")[-1].text == "<press> 1"


def test_characters_xml_cannot_carry_are_dropped() -> None:
    """Control characters (e.g. from a pasted text) are removed rather than making the document unreadable."""
    root = gather_call("台风\x00预警\x07\x1b：转移")
    assert root.findtext("Gather/Say/prosody") == "台风预警：转移"


def test_action_url_is_preserved_exactly() -> None:
    """The gather action — query with `&` and percent-escapes — parses back to the very same URL."""
    document = twiml.say_and_gather(
        TEXT, language="cmn-CN", voice="Polly.Zhiyu", repeat=1, action_url=ACTION, prompt="p"
    )
    assert "&amp;r=1" in document  # escaped in the document, not altered
    gather = ET.fromstring(document).find("Gather")
    assert gather is not None and gather.get("action") == ACTION


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (twiml.thanks, "已确认，谢谢。注意安全。"),
        (twiml.goodbye, "未收到确认。请注意安全，再见。"),
        (twiml.unavailable, "抱歉，这条预警已失效。再见。"),
    ],
)
def test_endings_say_one_line_then_hang_up(build: Callable[[str, str], str], said: str) -> None:
    """Thanks, goodbye and the apology each say one Chinese line in the call's voice, then hang up."""
    root = ET.fromstring(build("cmn-CN", "Polly.Zhiyu"))
    assert [v.tag for v in root] == ["Say", "Hangup"]
    assert root[0].attrib == {"language": "cmn-CN", "voice": "Polly.Zhiyu"}
    assert root[0].text == said


def test_english_calls_get_english_phrases() -> None:
    """A call in en-US is prompted and thanked in English."""
    assert "press 1" in twiml.prompt("en-US")
    assert ET.fromstring(twiml.thanks("en-US", "Polly.Joanna"))[0].text == "Confirmed, thank you. Stay safe."
    assert twiml.prompt("zh-CN") == twiml.prompt("cmn-CN") == "收到请按1。"


def test_hangup_is_a_bare_hangup() -> None:
    """`hangup()` ends the call and says nothing."""
    root = ET.fromstring(twiml.hangup())
    assert [v.tag for v in root] == ["Hangup"]


def test_an_all_clear_call_says_its_text_and_hangs_up_without_asking() -> None:
    """An all-clear has nothing to confirm: no Gather, no press-1 prompt, no "no confirmation" line."""
    root = ET.fromstring(
        twiml.say_only("台风橙色预警已经解除。", language="cmn-CN", voice="Polly.Zhiyu", repeat=2)
    )
    said = ["".join(say.itertext()) for say in root.iter("Say")]
    assert said == ["台风橙色预警已经解除。", "台风橙色预警已经解除。"]
    assert root.find("Gather") is None and root[-1].tag == "Hangup"
    assert not any("按1" in text or "未收到确认" in text for text in said)
