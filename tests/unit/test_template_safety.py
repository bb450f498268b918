"""Life-safety text: every bundled template carries the operator's headline and instruction, unchanged
but for the channel's own rewriting, and no fixed text of a template contradicts the instruction.

Templates are found by walking `warning/templates/`, so a template added later is covered without
editing this file; the built-in audiences' lookups (which fall back to `default/`) are added on top.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import NamedTuple

import pytest

from warning.audiences import BUILTINS
from warning.config import SmsSettings, TemplatesSettings
from warning.errors import RenderError
from warning.i18n import LANGUAGES
from warning.model import Alert, Level
from warning.render.renderer import BUNDLED_TEMPLATES, Renderer, speakable
from warning.render.words import SPOKEN_CHANNELS

# All-clear templates announce a cancellation: they carry no instruction by design (issue 9 item 3),
# so their own tests cover them, not this file.
EXCLUDED = frozenset({"allclear"})
TEMPLATE_NAME = re.compile(r"(?P<channel>[a-z][a-z0-9_]*)\.(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)?)\.j2\Z")

# Fixed text telling people to stay put: deadly during an evacuation order.
STAY_PHRASES = (
    "待在家",
    "不要外出",
    "不要出门",
    "留在家",
    "stay at home",
    "stay indoors",
    "do not go out",
    "don't go out",
)
# Fixed text telling people to leave: dangerous when the order is to shelter in place.
LEAVE_PHRASES = ("立即转移", "转移", "撤离", "evacuate", "evacuation")

VILLAGES = ["东岙村", "西岙村", "南山村", "北塘村", "沙头村", "渔港社区"]
CADRE = {"id": "C1", "name": "欧阳某某", "village": "东岙村"}


class Order(NamedTuple):
    """What the operator tells people, and the fixed phrases that would contradict it."""

    name: str
    event: str
    headline: str
    instruction: str
    contradictions: tuple[str, ...]


# No digits in headlines and instructions, so spoken channels keep them as written.
EVACUATE_ZH = Order(
    "evacuate-zh",
    "台风",
    "台风“海燕”今夜登陆",
    "请立即撤离到村委会避灾安置点，带好身份证和常用药。",
    STAY_PHRASES,
)
EVACUATE_EN = Order(
    "evacuate-en",
    "Typhoon",
    "Typhoon Haiyan makes landfall tonight",
    "Leave now for the shelter at the village committee and bring your ID card and medicines.",
    STAY_PHRASES,
)
SHELTER_ZH = Order("shelter-zh", "暴雨", "今夜有特大暴雨和雷暴大风", "请留在室内，关好门窗。", LEAVE_PHRASES)
SHELTER_EN = Order(
    "shelter-en",
    "Rainstorm",
    "Torrential rain and thunderstorms tonight",
    "Stay inside and keep doors and windows shut.",
    LEAVE_PHRASES,
)
ORDERS = (EVACUATE_ZH, EVACUATE_EN, SHELTER_ZH, SHELTER_EN)


def discovered() -> list[tuple[str, str, str]]:
    """(audience, channel, language) of every bundled template file, outside the excluded folders."""
    found = []
    for path in sorted(BUNDLED_TEMPLATES.rglob("*.j2")):
        relative = path.relative_to(BUNDLED_TEMPLATES)
        match = TEMPLATE_NAME.match(path.name)
        # Files deeper than {audience}/ are includes: the templates that include them are rendered.
        if relative.parts[0] in EXCLUDED or len(relative.parts) != 2 or match is None:
            continue
        found.append((relative.parts[0], match["channel"], match["lang"]))
    return found


def served() -> list[tuple[str, str, str]]:
    """Every template file plus what each built-in audience receives on each of its channels."""
    lookups = [(a.name, ch, lang) for a in BUILTINS.values() for ch in a.channels for lang in LANGUAGES]
    return sorted(set(discovered()) | set(lookups))


def make_alert(order: Order, **changes: object) -> Alert:
    alert = Alert(
        id="A1",
        sender="hy@example.gov.cn",
        sent=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        event=order.event,
        level=Level.RED,
        areas=("330100001001",),
        headline=order.headline,
        instruction=order.instruction,
        expires=datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
    )
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TemplatesSettings(), sender_name="海屿县应急管理局")


def render(renderer: Renderer, alert: Alert, audience: str, channel: str, language: str) -> str:
    personal = renderer.needs_recipient(audience, channel, language)
    return renderer.render(
        alert, audience, channel, language, area_names=VILLAGES, recipient=CADRE if personal else None
    ).text


def squash(text: str, channel: str, language: str) -> str:
    """`text` as the channel sends it (spoken: rewritten for speech), without spaces and quotes, lowercased."""
    if channel in SPOKEN_CHANNELS:
        text = speakable(text, language)
    return re.sub(r"[\s\"“”'‘’]", "", text).lower()


def fixed_text(text: str, order: Order, channel: str, language: str) -> str:
    """What is left of a rendered text once the alert's own words are taken out: the template's words."""
    left = squash(text, channel, language)
    for own in (order.instruction, order.headline, order.event):
        left = left.replace(squash(own, channel, language), "")
    return left


TEMPLATES = served()


def test_discovery_finds_the_templates_people_receive() -> None:
    """The walk finds every audience's templates, including the vulnerable voice call, and skips all-clear."""
    found = discovered()
    for key in [
        ("vulnerable", "sms", "zh-CN"),
        ("vulnerable", "voice", "zh-CN"),
        ("vulnerable", "voice", "en"),
        ("cadres", "wecom", "zh-CN"),
        ("speakers", "speaker", "zh-CN"),
    ]:
        assert key in found
    assert not any(audience in EXCLUDED for audience, _, _ in found)
    assert len(TEMPLATES) >= 30


@pytest.mark.parametrize("order", ORDERS, ids=[o.name for o in ORDERS])
@pytest.mark.parametrize(("audience", "channel", "language"), TEMPLATES)
def test_every_template_carries_the_headline_and_the_instruction(
    renderer: Renderer, order: Order, audience: str, channel: str, language: str
) -> None:
    """Whatever the audience, channel and language, the message contains the alert's headline and its
    instruction word for word (after the channel's own rewriting)."""
    text = render(renderer, make_alert(order), audience, channel, language)
    squashed = squash(text, channel, language)
    assert squash(order.headline, channel, language) in squashed, text
    assert squash(order.instruction, channel, language).rstrip("。.") in squashed, text


@pytest.mark.parametrize("order", ORDERS, ids=[o.name for o in ORDERS])
@pytest.mark.parametrize(("audience", "channel", "language"), TEMPLATES)
def test_no_template_contradicts_the_instruction(
    renderer: Renderer, order: Order, audience: str, channel: str, language: str
) -> None:
    """An evacuation order is never told "stay at home", a shelter-in-place order never "evacuate", and
    a template's own words take no side at all: protective action is the operator's instruction alone."""
    text = render(renderer, make_alert(order), audience, channel, language)
    outside = squash(text, channel, language)
    for phrase in order.contradictions:
        # The instruction itself may use the phrase ("stay inside" is fine; the check is on the rest).
        if squash(phrase, channel, language) not in squash(order.instruction, channel, language):
            assert squash(phrase, channel, language) not in outside, text
    own = fixed_text(text, order, channel, language)
    for phrase in STAY_PHRASES + LEAVE_PHRASES:
        assert squash(phrase, channel, language) not in own, f"{phrase!r} in fixed text: {text}"


@pytest.mark.parametrize(("audience", "channel", "language"), TEMPLATES)
def test_template_without_instruction_renders_cleanly(
    renderer: Renderer, audience: str, channel: str, language: str
) -> None:
    """An alert without instruction (a test or system message) renders without "None" or a dangling label."""
    text = render(renderer, make_alert(EVACUATE_ZH, instruction=""), audience, channel, language)
    assert squash(EVACUATE_ZH.headline, channel, language) in squash(text, channel, language), text
    assert "None" not in text
    assert not re.search(r"[：:]\s*[。.]|。。|\.\.", text), text


# A realistic long-ish warning: a county's typhoon headline and a full protective instruction.
LONG_ZH = Order(
    "long-zh",
    "台风",
    "受今年第12号台风“海燕”影响，预计今夜到明天我县将出现10-12级大风和暴雨",
    "请立即撤离到村委会避灾安置点，带好身份证、常用药和手机充电器；行动不便的请告诉村干部，"
    "由村里安排车辆接送。船只回港避风，不要返回危险区域。",
    STAY_PHRASES,
)
LONG_EN = Order(
    "long-en",
    "Typhoon",
    "Typhoon Haiyan brings force 10-12 winds and heavy rain tonight",
    "Leave now for the shelter at the village committee. Bring your ID card and medicines. "
    "If you cannot walk, tell your village cadre.",
    STAY_PHRASES,
)
SMS_PAIRS = sorted({(audience, channel) for audience, channel, _ in TEMPLATES if channel == "sms"})


@pytest.mark.parametrize("order", (LONG_ZH, LONG_EN), ids=["zh", "en"])
def test_sms_of_a_long_warning_fit_the_configured_segments(renderer: Renderer, order: Order) -> None:
    """A realistic long headline and instruction fit every SMS template within sms.max_segments, in full."""
    limit = SmsSettings().max_segments
    rendered = renderer.check(
        make_alert(order), SMS_PAIRS, LANGUAGES, area_names=VILLAGES, max_segments=limit
    )
    assert len(rendered) == len(SMS_PAIRS) * len(LANGUAGES)
    for audience, _, language, message in rendered:
        assert message.segments <= limit, (audience, language, message.segments)
        assert order.instruction in message.text


@pytest.mark.parametrize(("audience", "channel"), SMS_PAIRS)
def test_sms_too_long_for_the_limit_fails_instead_of_dropping_the_instruction(
    renderer: Renderer, audience: str, channel: str
) -> None:
    """An instruction too long for sms.max_segments stops the issue with a message naming the template,
    rather than being cut or left out."""
    alert = make_alert(EVACUATE_ZH, instruction="请立即撤离到村委会避灾安置点，带好身份证和常用药。" * 20)
    with pytest.raises(RenderError) as caught:
        renderer.check(
            alert,
            [(audience, channel)],
            ["zh-CN"],
            area_names=VILLAGES,
            max_segments=SmsSettings().max_segments,
        )
    message = str(caught.value)
    assert f"{audience}/sms.zh-CN.j2" in message or "default/sms.zh-CN.j2" in message
    assert "instruction" in message or "指引" in message
