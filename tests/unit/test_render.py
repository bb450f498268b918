"""Message rendering: sandbox, budgets, template lookup, drill mark, SMS segments, check()."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from warning.config import TemplatesSettings
from warning.errors import RenderError, UsageError
from warning.model import Alert, AlertStatus, Level
from warning.render.renderer import (
    BUNDLED_TEMPLATES,
    Renderer,
    exercise_mark,
    expires_text,
    sms_segments,
    template_names,
)

HEADLINE = "受今年第12号台风“海燕”影响，预计29日夜里到30日我县将出现10-12级大风和暴雨"
INSTRUCTION = "请立即停止户外作业，危险区域人员尽快转移到安全地带，船只回港避风"
VILLAGES = ["东岙村", "西岙村", "南山村", "北塘村", "沙头村", "渔港社区"]
BUNDLED_PAIRS = [
    ("public", "sms"),
    ("vulnerable", "sms"),
    ("cadres", "sms"),
    ("officials", "sms"),
    ("rescue_teams", "sms"),
    ("speakers", "speaker"),
    ("default", "sms"),
    ("default", "speaker"),
]


def make_alert(**changes: object) -> Alert:
    alert = Alert(
        id="A1",
        sender="hy@example.gov.cn",
        sent=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        event="台风",
        level=Level.ORANGE,
        areas=("330100001001",),
        headline=HEADLINE,
        instruction=INSTRUCTION,
        expires=datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
    )
    return dataclasses.replace(alert, **changes)  # type: ignore[arg-type]


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(TemplatesSettings(), sender_name="海屿县应急管理局")


def operator_renderer(root: Path, **settings: object) -> Renderer:
    return Renderer(TemplatesSettings(dir=str(root), **settings), sender_name="海屿县应急管理局")  # type: ignore[arg-type]


def render_source(tmp_path: Path, source: str, **settings: object) -> str:
    write(tmp_path, "public/wechat.zh-CN.j2", source)
    return operator_renderer(tmp_path, **settings).render(make_alert(), "public", "wechat", "zh-CN").text


# --- sandbox ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ alert.__class__ }}",
        "{{ alert.level.__class__.__base__ }}",
        "{{ '{0.__class__}'.format(alert) }}",
        "{{ alert.sent._private }}",
        "{% set xs = [] %}{{ xs.append(1) }}",
        "{{ area_names.clear() }}",
    ],
)
def test_sandbox_refuses_private_attributes_and_mutation(tmp_path: Path, source: str) -> None:
    """Private attributes, format-string escapes and mutation of data are refused with a RenderError."""
    with pytest.raises(RenderError, match=r"public/wechat\.zh-CN\.j2"):
        render_source(tmp_path, source)


def test_render_error_is_a_usage_error() -> None:
    """A RenderError exits with the usage code: the operator must fix a template or the alert."""
    assert issubclass(RenderError, UsageError)
    assert RenderError.exit_code == 2


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}",
        # No call, attribute or output inside the loops: only the per-item loop check sees the clock.
        "{% set xs = range(99999)|list %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(1) }}",
    ],
)
def test_time_budget_stops_runaway_templates(tmp_path: Path, source: str) -> None:
    """A template that would run for hours stops with RenderError within about the time budget."""
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"0\.2|time|预算|失败|failed"):
        render_source(tmp_path, source, render_timeout=0.2)
    assert time.monotonic() - started < 3.0  # hours without the budget; generous for a loaded machine


def test_time_budget_message_names_template_and_budget(tmp_path: Path) -> None:
    """Running out of time says which template, which language and what the budget was."""
    source = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
    with pytest.raises(RenderError) as caught:
        render_source(tmp_path, source, render_timeout=0.1)
    message = str(caught.value)
    assert "public/wechat.zh-CN.j2" in message
    assert "zh-CN" in message
    assert "0.1" in message


def test_output_budget_stops_long_output(tmp_path: Path) -> None:
    """A template producing more than max_output characters fails instead of returning them."""
    with pytest.raises(RenderError, match="150"):
        render_source(tmp_path, "{% for a in range(1000) %}0123456789{% endfor %}", max_output=150)


def test_output_budget_allows_output_up_to_the_limit(tmp_path: Path) -> None:
    """Exactly max_output characters is still fine."""
    assert (
        len(render_source(tmp_path, "{% for a in range(15) %}0123456789{% endfor %}", max_output=150)) == 150
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ '%1000000000s' % 'x' }}",
        "{{ '{:>1000000000}'.format('x') }}",
        "{{ 9 ** 100000000 }}",
        "{% set s = 'x' * 4000 %}{{ s.replace('x', s)|length }}",
    ],
)
def test_size_bombs_are_refused_before_they_allocate(tmp_path: Path, source: str) -> None:
    """Repeats, widths and powers that would build huge values are refused quickly, not computed."""
    started = time.monotonic()
    with pytest.raises(RenderError):
        render_source(tmp_path, source, render_timeout=5.0)
    assert time.monotonic() - started < 3.0  # under the 5 s budget: refused, not computed


def test_ordinary_numbers_and_filters_still_work(tmp_path: Path) -> None:
    """The size checks leave normal template arithmetic, formatting and filters alone."""
    source = "{{ '%05d'|format(123456) }} {{ 2 ** 10 }} {{ area_names|join('、') }} {{ 'ab' * 3 }}"
    assert render_source(tmp_path, source) == "123456 1024  ababab"


def test_undefined_variable_error_names_the_variable(tmp_path: Path) -> None:
    """StrictUndefined: an unknown name fails, and the message names it and the template."""
    with pytest.raises(RenderError, match="no_such_thing") as caught:
        render_source(tmp_path, "{{ alert.event }}{{ no_such_thing }}")
    assert "public/wechat.zh-CN.j2" in str(caught.value)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    """A syntax error is reported with the template's path and the line number."""
    with pytest.raises(RenderError, match=r"wechat\.zh-CN\.j2.*2") as caught:
        render_source(tmp_path, "ok\n{% if %}\n")
    assert str(tmp_path) in str(caught.value)


def test_template_runtime_error_becomes_render_error(tmp_path: Path) -> None:
    """Any Python error inside an operator template surfaces as RenderError, not as a crash."""
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        render_source(tmp_path, "{{ 1 / 0 }}")


# --- lookup ----------------------------------------------------------------------------------------


def test_template_names_follow_the_fallback_order() -> None:
    """Lookup order is audience+lang, audience+zh-CN, default+lang, default+zh-CN."""
    assert template_names("cadres", "sms", "en") == [
        "cadres/sms.en.j2",
        "cadres/sms.zh-CN.j2",
        "default/sms.en.j2",
        "default/sms.zh-CN.j2",
    ]
    assert template_names("cadres", "sms", "zh-CN") == ["cadres/sms.zh-CN.j2", "default/sms.zh-CN.j2"]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["fishers/pager.en.j2", "fishers/pager.zh-CN.j2", "default/pager.en.j2"], "fishers/pager.en.j2"),
        (
            ["fishers/pager.zh-CN.j2", "default/pager.en.j2", "default/pager.zh-CN.j2"],
            "fishers/pager.zh-CN.j2",
        ),
        (["default/pager.en.j2", "default/pager.zh-CN.j2"], "default/pager.en.j2"),
        (["default/pager.zh-CN.j2"], "default/pager.zh-CN.j2"),
    ],
)
def test_lookup_falls_back_in_order(tmp_path: Path, present: list[str], expected: str) -> None:
    """The first existing template of the fallback chain is used."""
    for name in present:
        write(tmp_path, name, name)
    assert operator_renderer(tmp_path).render(make_alert(), "fishers", "pager", "en").text == expected


def test_missing_template_lists_what_was_looked_for(tmp_path: Path) -> None:
    """With no template anywhere, the error lists every name tried."""
    with pytest.raises(RenderError, match=r"default/pager\.zh-CN\.j2"):
        operator_renderer(tmp_path).render(make_alert(), "fishers", "pager", "en")


def test_operator_override_wins_over_bundled(tmp_path: Path, renderer: Renderer) -> None:
    """An operator template at the same step replaces the bundled one."""
    write(tmp_path, "public/sms.zh-CN.j2", "本县通知：{{ alert.event }}{{ level_name }}预警")
    assert renderer.render(make_alert(), "public", "sms", "zh-CN").text.startswith("【海屿县应急管理局】")
    assert (
        operator_renderer(tmp_path).render(make_alert(), "public", "sms", "zh-CN").text
        == "本县通知：台风橙色预警"
    )


def test_bundled_template_at_an_earlier_step_beats_operator_fallback(tmp_path: Path) -> None:
    """Overrides win per step: an operator default/ template does not shadow a bundled public/ one."""
    write(tmp_path, "default/sms.en.j2", "OPERATOR DEFAULT")
    rendered = operator_renderer(tmp_path).render(make_alert(), "public", "sms", "en")
    assert rendered.text != "OPERATOR DEFAULT"
    assert "call 110" in rendered.text
    assert operator_renderer(tmp_path).render(make_alert(), "fishers", "sms", "en").text == "OPERATOR DEFAULT"


@pytest.mark.parametrize(
    ("audience", "channel"), [("../public", "sms"), ("public", "sms/../../x"), ("Pub lic", "sms")]
)
def test_names_that_are_paths_are_refused(renderer: Renderer, audience: str, channel: str) -> None:
    """Audience and channel names cannot walk out of the template directories."""
    with pytest.raises(RenderError):
        renderer.render(make_alert(), audience, channel, "zh-CN")


def test_missing_operator_directory_is_reported(tmp_path: Path) -> None:
    """A configured templates.dir that does not exist fails at start with the path in the message."""
    with pytest.raises(RenderError, match="nowhere"):
        operator_renderer(tmp_path / "nowhere")


# --- context and drill mark ------------------------------------------------------------------------


def test_context_variables_reach_the_template(tmp_path: Path) -> None:
    """Templates see alert fields, level_name, area_names, expires_text and sender_name."""
    write(
        tmp_path,
        "public/wechat.zh-CN.j2",
        "{{ alert.id }}/{{ alert.version }}/{{ alert.level }}/{{ alert.exercise }}|{{ level_name }}|"
        "{{ area_names|join(',') }}|{{ expires_text }}|{{ sender_name }}",
    )
    text = (
        operator_renderer(tmp_path)
        .render(make_alert(), "public", "wechat", "zh-CN", area_names=["东岙村", "西岙村"])
        .text
    )
    assert text == "A1/1/orange/False|橙色|东岙村,西岙村|11月30日 08:00|海屿县应急管理局"


def test_expires_text_is_china_time_in_each_language() -> None:
    """Expiry is shown in Asia/Shanghai local time, written the zh-CN or English way."""
    when = datetime(2026, 11, 29, 16, 5, tzinfo=UTC)
    assert expires_text(when, "zh-CN") == "11月30日 00:05"
    assert expires_text(when, "en") == "30 Nov 00:05"
    assert expires_text(None, "zh-CN") == ""


def bundled_templates() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(BUNDLED_TEMPLATES.rglob("*.j2")):
        channel, language, _ = path.name.split(".", 2)
        found.append((path.parent.name, channel, language))
    return found


def test_bundled_templates_cover_every_audience_and_language() -> None:
    """Every built-in audience has an SMS template and loudspeakers a speaker one, in zh-CN and en."""
    found = set(bundled_templates())
    for audience, channel in BUNDLED_PAIRS:
        for language in ("zh-CN", "en"):
            assert (audience, channel, language) in found


@pytest.mark.parametrize(("audience", "channel", "language"), bundled_templates())
def test_every_bundled_template_marks_drills(
    renderer: Renderer, audience: str, channel: str, language: str
) -> None:
    """Every bundled template × language × channel starts a drill's message with the drill mark."""
    recipient = {"id": "C1", "name": "王建国", "village": "东岙村"}
    drill = renderer.render(
        make_alert(status=AlertStatus.EXERCISE),
        audience,
        channel,
        language,
        area_names=VILLAGES,
        recipient=recipient,
    ).text
    real = renderer.render(
        make_alert(), audience, channel, language, area_names=VILLAGES, recipient=recipient
    ).text
    mark = exercise_mark(language, channel)
    assert drill.startswith(mark)
    assert not real.startswith(mark)
    assert drill == mark + real


def test_drill_marks_per_language_and_channel() -> None:
    """Text channels get 【演练】/[DRILL]; loudspeakers a bracket-free spoken mark."""
    assert exercise_mark("zh-CN", "sms") == "【演练】"
    assert exercise_mark("en", "sms") == "[DRILL] "
    assert exercise_mark("zh-CN", "speaker") == "演练。"
    assert exercise_mark("en", "speaker") == "Drill. "


def test_operator_template_cannot_drop_the_drill_mark(tmp_path: Path) -> None:
    """The renderer adds the drill mark even to a template that never mentions drills."""
    write(tmp_path, "public/sms.zh-CN.j2", "{{ alert.event }}预警")
    rendered = operator_renderer(tmp_path).render(
        make_alert(status=AlertStatus.EXERCISE), "public", "sms", "zh-CN"
    )
    assert rendered.text == "【演练】台风预警"


def test_speaker_text_is_made_speakable(renderer: Renderer) -> None:
    """Loudspeaker text has levels and numbers spelled out and no 【】 or digits left."""
    text = renderer.render(make_alert(), "speakers", "speaker", "zh-CN").text
    assert "橙色预警" in text
    assert "十到十二级" in text
    assert "十一月三十日 八点" in text
    assert not any(c.isdigit() or c in "【】" for c in text)


def test_english_rendering(renderer: Renderer) -> None:
    """English templates use English level names and dates; an ASCII alert goes out as GSM-7."""
    alert = make_alert(
        event="Typhoon",
        headline="Typhoon Haiyan brings force 10-12 winds tonight",
        instruction="Stop outdoor work and move to shelters",
    )
    rendered = renderer.render(alert, "public", "sms", "en")
    assert rendered.text == (
        "[海屿县应急管理局] Orange Typhoon warning: Typhoon Haiyan brings force 10-12 winds tonight. "
        "Stop outdoor work and move to shelters. Valid until 30 Nov 08:00. In danger, call 110."
    )
    speaker = renderer.render(alert, "speakers", "speaker", "en").text
    assert "10-12" in speaker
    ascii_renderer = Renderer(TemplatesSettings(), sender_name="Haiyu County EMB")
    ascii_sms = ascii_renderer.render(alert, "public", "sms", "en")
    assert ascii_sms.encoding == "GSM-7"


def test_typical_typhoon_default_sms_fits_in_two_or_three_segments(renderer: Renderer) -> None:
    """The default zh-CN SMS for a typical typhoon headline and instruction costs 2-3 UCS-2 segments."""
    rendered = renderer.render(make_alert(status=AlertStatus.EXERCISE), "default", "sms", "zh-CN")
    assert rendered.encoding == "UCS-2"
    assert 2 <= rendered.segments <= 3


# --- personal fields -------------------------------------------------------------------------------


def test_needs_recipient(renderer: Renderer, tmp_path: Path) -> None:
    """Only templates using `recipient` (directly or through an include) need per-person rendering."""
    assert renderer.needs_recipient("cadres", "sms", "zh-CN") is True
    assert renderer.needs_recipient("public", "sms", "zh-CN") is False
    assert renderer.needs_recipient("speakers", "speaker", "en") is False
    write(tmp_path, "public/wechat.zh-CN.j2", "{{ alert.event }}{% include 'parts/greeting.j2' %}")
    write(tmp_path, "parts/greeting.j2", "{{ recipient.name }}您好")
    assert operator_renderer(tmp_path).needs_recipient("public", "wechat", "zh-CN") is True


def test_recipient_fields_are_rendered_per_person(renderer: Renderer) -> None:
    """A personal template shows the recipient's name; fields not given read as empty."""
    text = renderer.render(
        make_alert(), "cadres", "sms", "zh-CN", recipient={"id": "C1", "name": "王建国"}
    ).text
    assert "王建国同志" in text
    assert "逐户确认" in text


def test_personal_template_without_recipient_fails(renderer: Renderer) -> None:
    """Rendering a personal template without a recipient is an error naming `recipient`."""
    with pytest.raises(RenderError, match="recipient"):
        renderer.render(make_alert(), "cadres", "sms", "zh-CN")


# --- check -----------------------------------------------------------------------------------------


def test_check_renders_every_pair_and_language(renderer: Renderer) -> None:
    """check() returns one rendering per (audience, channel) × language, personal ones for a sample."""
    rendered = renderer.check(
        make_alert(), BUNDLED_PAIRS, ["zh-CN", "en"], area_names=VILLAGES, max_segments=6
    )
    assert [(a, c, lang) for a, c, lang, _ in rendered] == [
        (a, c, lang) for a, c in BUNDLED_PAIRS for lang in ("zh-CN", "en")
    ]
    by_key = {(a, c, lang): r for a, c, lang, r in rendered}
    assert "欧阳某某同志" in by_key[("cadres", "sms", "zh-CN")].text
    assert by_key[("speakers", "speaker", "zh-CN")].encoding == ""


def test_check_refuses_sms_with_too_many_segments(renderer: Renderer) -> None:
    """An SMS over max_segments fails naming the template, segments, characters and how much to cut."""
    alert = make_alert(instruction="请立即转移" * 40)
    text = renderer.render(alert, "public", "sms", "zh-CN").text
    segments = sms_segments(text)
    with pytest.raises(RenderError) as caught:
        renderer.check(alert, [("public", "sms")], ["zh-CN"], max_segments=2)
    message = str(caught.value)
    assert "public/sms.zh-CN.j2" in message
    assert f"{len(text)} " in message
    assert f"{segments.count} " in message
    assert f"{segments.units - 2 * 67} " in message


def test_check_reports_template_errors(tmp_path: Path) -> None:
    """check() surfaces a broken operator template before anything is sent."""
    write(tmp_path, "officials/sms.en.j2", "{{ alert.nope }}")
    with pytest.raises(RenderError, match=r"officials/sms\.en\.j2.*nope"):
        operator_renderer(tmp_path).check(
            make_alert(), [("officials", "sms")], ["zh-CN", "en"], max_segments=6
        )


# --- SMS segments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "encoding", "units"),
    [
        ("a" * 160, 1, "GSM-7", 160),
        ("a" * 161, 2, "GSM-7", 161),
        ("a" * 306, 2, "GSM-7", 306),
        ("a" * 307, 3, "GSM-7", 307),
        ("€" * 80, 1, "GSM-7", 160),
        ("€" * 81, 2, "GSM-7", 162),
        ("a" * 158 + "[", 1, "GSM-7", 160),
        ("a" * 159 + "]", 2, "GSM-7", 161),
        # An escape pair never straddles two parts: 152 + 2 does not fit in 153.
        ("a" * 152 + "{" + "a" * 152, 3, "GSM-7", 306),
        ("a" * 153 + "{" + "a" * 151, 2, "GSM-7", 306),
        ("中" * 70, 1, "UCS-2", 70),
        ("中" * 71, 2, "UCS-2", 71),
        ("中" * 134, 2, "UCS-2", 134),
        ("中" * 135, 3, "UCS-2", 135),
        ("😀" * 35, 1, "UCS-2", 70),
        ("😀" * 36, 2, "UCS-2", 72),
        ("a" * 159 + "中", 3, "UCS-2", 160),
        ("", 1, "GSM-7", 0),
    ],
)
def test_sms_segments(text: str, count: int, encoding: str, units: int) -> None:
    """Segments follow GSM-7 (160/153, extension chars 2 septets) and UCS-2 (70/67, emoji 2 units)."""
    segments = sms_segments(text)
    assert (segments.count, segments.encoding, segments.units) == (count, encoding, units)


def test_sms_segments_of_a_rendered_sms_are_reported(renderer: Renderer) -> None:
    """Rendered SMS carry their segment count and encoding."""
    rendered = renderer.render(make_alert(), "public", "sms", "zh-CN")
    assert (rendered.segments, rendered.encoding) == (
        sms_segments(rendered.text).count,
        sms_segments(rendered.text).encoding,
    )
