"""The cadre's task message carries what residents were told: the headline and the instruction, whole."""

from __future__ import annotations

from datetime import UTC, datetime

from warning.i18n import set_language
from warning.model import Alert, AlertState, Contact, Level, Role
from warning.tasks import task_text

ALERT = Alert(
    id="W1",
    sender="s@example",
    sent=datetime(2026, 12, 3, 2, 0, tzinfo=UTC),
    event="台风",
    level=Level.ORANGE,
    areas=("331099101",),
    headline="台风今夜登陆",
    instruction="请立即撤离到村委会避灾安置点",
    state=AlertState.ISSUED,
)
CADRE = Contact(id="C1", name="林立群", role=Role.CADRE, phone="+8613800000000")
DEADLINE = datetime(2026, 12, 3, 3, 0, tzinfo=UTC).timestamp()


def test_task_text_with_a_link_carries_headline_and_instruction() -> None:
    """With a link, the cadre reads the headline and the operator's instruction before the task."""
    set_language("zh-CN")
    text = task_text(ALERT, CADRE, 12, "https://w.example/c/tok", DEADLINE)
    assert "台风今夜登陆。请立即撤离到村委会避灾安置点。请在11:00前" in text
    assert text.endswith("https://w.example/c/tok")


def test_task_text_without_a_link_carries_them_too() -> None:
    """Links withheld: the door-to-door text still says what residents must do, and whom to phone."""
    set_language("zh-CN")
    duty = Contact(id="D1", name="徐杰", role=Role.TOWNSHIP_DUTY, phone="+8617403490708")
    text = task_text(ALERT, CADRE, 12, "", DEADLINE, duty)
    assert "请立即撤离到村委会避灾安置点。" in text and "徐杰（+8617403490708）" in text


def test_task_text_in_english_separates_sentences() -> None:
    """In English the headline and instruction are separate sentences before the task."""
    set_language("en")
    try:
        text = task_text(ALERT, CADRE, 3, "https://w.example/c/tok", DEADLINE)
    finally:
        set_language("zh-CN")
    assert "warning. 台风今夜登陆。 请立即撤离到村委会避灾安置点。 By 11:00" in text
