"""Phone numbers: E.164 normalisation (default region CN) and masking in logs."""

from __future__ import annotations

import logging

import pytest

from warning.config import LogSettings
from warning.logs import JsonFormatter, configure_logging
from warning.phone import InvalidPhone, mask, mask_text, normalize


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("0571-88880000", "+8657188880000"),
        ("+1 415 555 2671", "+14155552671"),
        ("17400000001", "+8617400000001"),
    ],
)
def test_normalize_to_e164(raw: str, e164: str) -> None:
    """National, spaced, dashed and international forms all become E.164."""
    assert normalize(raw) == e164


@pytest.mark.parametrize("raw", ["12345", "1380013800", "abc", "", "+86 100 0000 0000", "99999999999"])
def test_invalid_numbers_are_rejected(raw: str) -> None:
    """Too short, non-numeric or unallocated numbers raise InvalidPhone."""
    with pytest.raises(InvalidPhone):
        normalize(raw)


def test_region_changes_how_national_numbers_read() -> None:
    """A national number is read in the configured region."""
    assert normalize("020 7946 0018", "GB") == "+442079460018"


def test_mask_keeps_prefix_and_last_four() -> None:
    """Masked numbers can be told apart but not dialled."""
    assert mask("+8613800138000") == "+86138****8000"
    assert mask("13800138000") == "138****8000"


def test_mask_text_hides_numbers_but_not_village_codes() -> None:
    """Phone numbers in free text are masked; 12-digit village codes and timestamps stay readable."""
    text = mask_text("call +8613800138000 / 13800138000 / 0571-88880000 about 330110101201 at 20261129")
    assert "13800138000" not in text and "88880000" not in text
    assert "330110101201" in text and "20261129" in text


def test_json_logs_mask_phone_numbers(caplog: pytest.LogCaptureFixture) -> None:
    """A phone number in a log message or an extra field never reaches the log line."""
    record = logging.LogRecord(
        "warning.test", logging.INFO, __file__, 1, "sent to %s", ("+8613800138000",), None
    )
    record.recipient = "13900139000"
    line = JsonFormatter().format(record)
    assert "13800138000" not in line and "13900139000" not in line
    assert '"recipient": "139****9000"' in line


def test_configure_logging_installs_one_handler() -> None:
    """Configuring twice leaves exactly one root handler (no duplicated lines)."""
    configure_logging(LogSettings(level="info", format="text"))
    configure_logging(LogSettings(level="info", format="json"))
    assert len(logging.getLogger().handlers) == 1
