"""The renderer: one jinja2 template per audience × channel × language, run in a budgeted sandbox.

Templates are looked up as `{audience}/{channel}.{lang}.j2`, falling back to zh-CN and then to the
`default` audience; at each step an operator's template (`templates.dir`) wins over the bundled one.
The renderer, not the template, adds the drill mark (so no template can drop it), rewrites
loudspeaker text for text-to-speech and counts SMS segments. Templates see `alert`, `level_name`,
`area_names`, `expires_text`, `sender_name` and, only when they ask for it, `recipient`; a template
without `recipient` is rendered once per (alert, audience, channel, language) by the fan-out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, Template, meta
from jinja2.exceptions import SecurityError, TemplatesNotFound, TemplateSyntaxError, UndefinedError

from warning.config import TemplatesSettings
from warning.errors import RenderError
from warning.i18n import t
from warning.model import DEFAULT_LANGUAGE, Alert
from warning.render.sandbox import BudgetedEnvironment, BudgetExceeded
from warning.render.sms import Segments, capacity, sms_segments
from warning.render.speech import speakable
from warning.render.words import (
    SPOKEN_CHANNELS,
    exercise_mark,
    expires_text,
    level_name,
    normalise_language,
    sentence,
    update_mark,
    what_changed,
)

__all__ = [
    "BUNDLED_TEMPLATES",
    "Rendered",
    "Renderer",
    "Segments",
    "exercise_mark",
    "expires_text",
    "sms_segments",
    "speakable",
    "template_names",
]

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_AUDIENCE = "default"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message; `segments` and `encoding` are meaningful for SMS only (1 and "" otherwise)."""

    text: str
    segments: int = 1
    encoding: str = ""


def template_names(audience: str, channel: str, language: str) -> list[str]:
    """Template names in lookup order; the loader tries the operator directory before the bundled one.

    Raises:
        RenderError: the audience, channel or language is not a plain name (no paths).
    """
    for kind, value in (("audience", audience), ("channel", channel)):
        if not _NAME.match(value):
            raise RenderError(
                t("{kind} 名称无效：{value}", "invalid {kind} name: {value}", kind=kind, value=value)
            )
    language = normalise_language(language)
    names = []
    for who in (audience, DEFAULT_AUDIENCE):
        for lang in (language, DEFAULT_LANGUAGE):
            name = f"{who}/{channel}.{lang}.j2"
            if name not in names:
                names.append(name)
    return names


class Renderer:
    """Renders alerts with bundled and operator templates inside the sandbox; caches compiled templates."""

    def __init__(self, settings: TemplatesSettings, *, sender_name: str = "应急管理局") -> None:
        """Set up the lookup (operator directory first) and the budgets from `settings`.

        Raises:
            RenderError: `settings.dir` is set but is not a directory.
        """
        loaders = []
        self._operator_dir = Path(settings.dir).resolve() if settings.dir else None
        if self._operator_dir is not None:
            if not self._operator_dir.is_dir():
                raise RenderError(
                    t(
                        "模板目录 {dir} 不存在；请检查 templates.dir",
                        "template directory {dir} does not exist; check templates.dir",
                        dir=settings.dir,
                    )
                )
            loaders.append(FileSystemLoader(self._operator_dir))
        loaders.append(FileSystemLoader(BUNDLED_TEMPLATES))
        self._env = BudgetedEnvironment(ChoiceLoader(loaders), max_output=settings.max_output)
        self._env.filters["sentence"] = sentence
        self._timeout = settings.render_timeout
        self._max_output = settings.max_output
        self._sender_name = sender_name
        self._templates: dict[tuple[str, str, str], Template] = {}
        self._personal: dict[tuple[str, str, str], bool] = {}
        self._alert_view: tuple[Alert, dict[str, Any]] | None = None

    def render(
        self,
        alert: Alert,
        audience: str,
        channel: str,
        language: str,
        *,
        area_names: Sequence[str] = (),
        recipient: Mapping[str, str] | None = None,
        previous: Alert | None = None,
    ) -> Rendered:
        """The message for `audience` on `channel` in `language`; personal only when `recipient` is given.

        `recipient` carries `name`, `village` (its name) and `id`; missing ones read as "".
        For an update (`alert.msg_type == "Update"`) the message starts with an update mark and, given
        the `previous` version, a sentence saying what changed.

        Raises:
            RenderError: no template, a syntax error, an undefined variable (including `recipient` when
                the template needs one and none is given), a refused access, or a budget exceeded.
        """
        language = normalise_language(language)
        template = self.template(audience, channel, language)
        context: dict[str, Any] = {
            "alert": self._view(alert),
            "level_name": level_name(alert.level, language),
            "area_names": list(area_names),
            "expires_text": expires_text(alert.expires, language),
            "sender_name": self._sender_name,
        }
        if recipient is not None:
            context["recipient"] = {"id": "", "name": "", "village": "", **recipient}
        text = self._run(template, context, language).strip()
        if alert.msg_type == "Update":
            changed = what_changed(previous, alert, language) if previous is not None else ""
            if channel in SPOKEN_CHANNELS:
                changed = speakable(changed, language)
            text = update_mark(language, channel) + changed + text
        if channel in SPOKEN_CHANNELS:
            text = speakable(text, language)
        if alert.exercise:
            mark = exercise_mark(language, channel)
            if not text.startswith(mark):
                text = mark + text
        if channel == "sms":
            segments = sms_segments(text)
            return Rendered(text, segments.count, segments.encoding)
        return Rendered(text)

    def needs_recipient(self, audience: str, channel: str, language: str) -> bool:
        """Whether the template (or one it includes) uses `recipient`, so it must be rendered per person.

        Raises:
            RenderError: no template, or a syntax error in it.
        """
        key = (audience, channel, normalise_language(language))
        if key not in self._personal:
            self._personal[key] = self._uses_recipient(self.template(*key).name or "", set())
        return self._personal[key]

    def check(
        self,
        alert: Alert,
        pairs: Iterable[tuple[str, str]],
        languages: Iterable[str],
        *,
        area_names: Sequence[str] = (),
        max_segments: int,
        previous: Alert | None = None,
    ) -> list[tuple[str, str, str, Rendered]]:
        """Render every (audience, channel) × language once, as issuing the alert would.

        Personal templates are rendered for a sample recipient with a long name, in the longest village.

        Raises:
            RenderError: naming the template and language: a template error or budget exceeded, or an
                SMS that needs more than `max_segments` segments (with its size and how much to cut).
        """
        languages = tuple(dict.fromkeys(languages))
        sample = {"id": "R000000", "name": "欧阳某某", "village": max(area_names, key=len, default="某某村")}
        out = []
        for audience, channel in dict.fromkeys(pairs):
            for language in languages:
                personal = self.needs_recipient(audience, channel, language)
                rendered = self.render(
                    alert,
                    audience,
                    channel,
                    language,
                    area_names=area_names,
                    recipient=sample if personal else None,
                    previous=previous,
                )
                if channel == "sms" and rendered.segments > max_segments:
                    raise self._too_long(audience, channel, language, rendered, max_segments)
                out.append((audience, channel, language, rendered))
        return out

    def template(self, audience: str, channel: str, language: str) -> Template:
        """The compiled template that serves (audience, channel, language), after fallbacks.

        Raises:
            RenderError: no template at any step of the lookup, or a syntax error in the one found.
        """
        key = (audience, channel, normalise_language(language))
        cached = self._templates.get(key)
        if cached is not None:
            return cached
        names = template_names(*key)
        try:
            template = self._env.select_template(names)
        except TemplatesNotFound:
            raise RenderError(
                t(
                    "没有受众 {audience}、渠道 {channel}、语言 {language} 可用的模板（已查找：{names}）",
                    "no template for audience {audience}, channel {channel}, language {language} (looked for: {names})",
                    audience=audience,
                    channel=channel,
                    language=key[2],
                    names=", ".join(names),
                )
            ) from None
        except TemplateSyntaxError as exc:
            raise RenderError(
                t(
                    "模板 {template} 第 {line} 行语法错误：{problem}",
                    "syntax error in template {template}, line {line}: {problem}",
                    template=self._label(exc.name, exc.filename),
                    line=exc.lineno,
                    problem=exc.message,
                )
            ) from None
        self._templates[key] = template
        return template

    def _run(self, template: Template, context: Mapping[str, Any], language: str) -> str:
        label = self._label(template.name, template.filename)
        try:
            return self._env.render(template, context, timeout=self._timeout)
        except BudgetExceeded as exc:
            if exc.kind == "time":
                problem = t(
                    "渲染超过 {seconds} 秒的时间预算",
                    "took longer than its {seconds} s budget",
                    seconds=self._timeout,
                )
            else:
                problem = t(
                    "输出或中间结果超过 {chars} 个字符的上限",
                    "output or an intermediate value exceeds the {chars}-character limit",
                    chars=self._max_output,
                )
            error = problem
        except SecurityError as exc:
            error = t(
                "访问了模板中不允许的内容（{problem}）",
                "accesses something not allowed ({problem})",
                problem=exc,
            )
        except UndefinedError as exc:
            error = t("使用了未定义的变量：{problem}", "uses an undefined variable: {problem}", problem=exc)
        except Exception as exc:  # operator templates may raise anything Python can (TypeError, …)
            error = t("渲染失败：{problem}", "failed: {problem}", problem=f"{type(exc).__name__}: {exc}")
        raise RenderError(
            t(
                "模板 {template}（{language}）{error}",
                "template {template} ({language}) {error}",
                template=label,
                language=language,
                error=error,
            )
        )

    def _uses_recipient(self, name: str, seen: set[str]) -> bool:
        seen.add(name)
        loader = self._env.loader
        assert loader is not None  # set in __init__
        source = loader.get_source(self._env, name)[0]
        tree = self._env.parse(source)
        if "recipient" in meta.find_undeclared_variables(tree):
            return True
        return any(
            self._uses_recipient(other, seen)
            for other in meta.find_referenced_templates(tree)
            if other is not None and other not in seen
        )

    def _view(self, alert: Alert) -> dict[str, Any]:
        # The fan-out renders the same alert many times: build its read-only view once.
        if self._alert_view is None or self._alert_view[0] is not alert:
            view = {f.name: getattr(alert, f.name) for f in dataclasses.fields(alert)}
            view["exercise"] = alert.exercise
            self._alert_view = (alert, view)
        return self._alert_view[1]

    def _label(self, name: str | None, filename: str | None) -> str:
        if (
            filename
            and self._operator_dir is not None
            and Path(filename).resolve().is_relative_to(self._operator_dir)
        ):
            return filename
        return name or "?"

    def _too_long(
        self, audience: str, channel: str, language: str, rendered: Rendered, limit: int
    ) -> RenderError:
        segments = sms_segments(rendered.text)
        over = segments.units - capacity(segments.encoding, limit)
        return RenderError(
            t(
                "模板 {template}（{language}）的短信有 {chars} 个字符，需要 {segments} 条（{encoding}），"
                "超过上限 {limit} 条；请把标题、说明或指引缩短至少 {over} 个字符（或调整模板、sms.max_segments）",
                "template {template} ({language}) renders an SMS of {chars} characters needing {segments} "
                "segments ({encoding}), more than the limit of {limit}; shorten the headline, description or "
                "instruction by at least {over} characters (or change the template or sms.max_segments)",
                template=self._label(*self._names(audience, channel, language)),
                language=language,
                chars=len(rendered.text),
                segments=segments.count,
                encoding=segments.encoding,
                limit=limit,
                over=over,
            )
        )

    def _names(self, audience: str, channel: str, language: str) -> tuple[str | None, str | None]:
        template = self.template(audience, channel, language)
        return template.name, template.filename
