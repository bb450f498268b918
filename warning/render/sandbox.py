"""The jinja2 sandbox that runs operator-written templates within a time and a size budget.

Templates are plain text (no autoescape), undefined names are errors, nothing can be mutated, and
private attributes are refused. The budget is checked from inside the sandbox, on every attribute,
item, call, filter and loop step and on every output chunk, so a runaway template stops within about
the time budget without threads or processes. Sizes are bounded step by step: no intermediate string,
no width, repeat count or format width may exceed the output budget, and replace/join are sized before
they run (ranges are capped by jinja at `MAX_RANGE`). Memory is bounded on a best-effort basis; the
time and output budgets are hard.
"""

from __future__ import annotations

import contextlib
import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from jinja2 import BaseLoader, StrictUndefined, Template, nodes
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

# A filter only the sandbox inserts (around every `for` loop's iterable); the name cannot clash.
_LOOP_FILTER = "_budgeted_loop"
_PRINTF_SPEC = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class BudgetExceeded(Exception):
    """Raised inside the sandbox when a render runs out of time or builds something too large."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "time" or "size"


@dataclass
class Budget:
    """What one render may spend: a deadline on the monotonic clock and a size in characters."""

    deadline: float
    size: int

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded("time")


_budget: ContextVar[Budget | None] = ContextVar("warning_render_budget", default=None)


def _check_time() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.check_time()


def _size_limit(fallback: int) -> int:
    budget = _budget.get()
    return fallback if budget is None else budget.size


def _check_value(value: Any, limit: int) -> None:
    """Refuse a value too large to be a step towards an output of at most `limit` characters."""
    if isinstance(value, str):
        if len(value) > limit:
            raise BudgetExceeded("size")
    elif isinstance(value, list | tuple | dict | set | frozenset) and len(value) > max(limit, MAX_RANGE):
        raise BudgetExceeded("size")


# Callables whose integer arguments are widths or counts: larger than the whole output is never needed,
# and is how size bombs start. Other integer arguments (numbers to format) are data and stay free.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})


def _check_arguments(args: Iterable[Any], limit: int) -> None:
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
            raise BudgetExceeded("size")


def _check_format(fmt: str, limit: int) -> None:
    """Refuse `str.format` / `%` format strings whose widths or precisions exceed the budget."""
    specs: list[str] = []
    with contextlib.suppress(ValueError):  # not a str.format string: calling format on it fails by itself
        specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
    specs += [m.group(0) for m in _PRINTF_SPEC.finditer(fmt)]
    for spec in specs:
        if "*" in spec or any(int(n) > limit for n in re.findall(r"\d+", spec)):
            raise BudgetExceeded("size")


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """An immutable, strict, plain-text sandbox whose hooks enforce the active `Budget`."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, loader: BaseLoader, *, max_output: int) -> None:
        super().__init__(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=1000,
        )
        self.max_output = max_output
        self.filters = {name: _budgeted_filter(name, f, max_output) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _budgeted_loop
        self.tests = {
            name: _budgeted_filter(name, cast(Callable[..., Any], f), max_output)
            for name, f in self.tests.items()
        }

    def render(self, template: Template, context: Mapping[str, Any], *, timeout: float) -> str:
        """Render `template` with `context` within `timeout` seconds and `max_output` characters.

        Raises:
            BudgetExceeded: the render ran out of time or produced (or tried to build) too much.
            jinja2.TemplateError: the template failed (undefined name, refused attribute, …).
        """
        budget = Budget(time.monotonic() + timeout, self.max_output)
        token = _budget.set(budget)
        try:
            chunks: list[str] = []
            produced = 0
            for chunk in template.generate(context):
                produced += len(chunk)
                if produced > budget.size:
                    raise BudgetExceeded("size")
                budget.check_time()
                chunks.append(chunk)
            return "".join(chunks)
        finally:
            _budget.reset(token)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every loop's iterable goes through a budget check per item: a loop with an empty body makes no
        # call, attribute access or output, so nothing else would ever look at the clock.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
        return tree

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        limit = _size_limit(__self.max_output)
        receiver = getattr(__obj, "__self__", None)
        if isinstance(receiver, str):
            method = getattr(__obj, "__name__", "")
            if method in _WIDTH_METHODS:
                _check_arguments((*args, *kwargs.values()), limit)
            elif method == "replace" and len(args) >= 2:
                _check_replace(receiver, args[0], args[1], limit)
            elif method == "join" and args:
                _check_join(receiver, args[0], limit)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_value(result, limit)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_time()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj, _size_limit(self.max_output))
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: str | Any) -> Any:
        _check_time()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        limit = _size_limit(self.max_output)
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if hasattr(seq, "__len__") and isinstance(count, int) and len(seq) * count > limit:
                    raise BudgetExceeded("size")
        elif operator == "**":
            if isinstance(right, int) and abs(right) > 64 and not (isinstance(left, int) and abs(left) <= 1):
                raise BudgetExceeded("size")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, limit)
        result = super().call_binop(context, operator, left, right)
        _check_value(result, limit)
        return result


def _check_replace(text: Any, old: Any, new: Any, limit: int) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and old):
        return
    if len(text) + text.count(old) * (len(new) - len(old)) > limit:
        raise BudgetExceeded("size")


def _check_join(separator: Any, items: Any, limit: int) -> None:
    if isinstance(separator, str) and hasattr(items, "__len__") and len(separator) * (len(items) - 1) > limit:
        raise BudgetExceeded("size")


def _budgeted_filter(name: str, f: Callable[..., Any], limit: int) -> Callable[..., Any]:
    """`f` with the budget checked before (time, widths) and after (result size) each call."""
    # jinja passes the context, eval context or environment first to filters marked for it.
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(f)  # keeps jinja's pass_context/pass_environment marks
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        current = _size_limit(limit)
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        if name in _WIDTH_FILTERS:
            _check_arguments((*rest, *kwargs.values()), current)
        elif name == "replace" and len(rest) >= 2:
            _check_replace(str(value), rest[0], rest[1], current)
        elif name == "join":
            _check_join(rest[0] if rest else kwargs.get("d", ""), value, current)
        elif name == "format" and isinstance(value, str):
            _check_format(value, current)
        result = f(*args, **kwargs)
        _check_value(result, current)
        return result

    return budgeted


def _budgeted_loop(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _check_time()
        yield item
