"""Structured logs on stderr: one JSON object per line (or readable text), phone numbers always masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from warning.config import LogSettings
from warning.phone import mask_text

# Attributes every LogRecord has; anything else was passed with `extra=` and becomes a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", …extra fields, "exc"?}` with phone numbers masked everywhere."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return mask_text(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value …` for people watching a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (
            f" {extra}" if extra else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask_text(line)


def configure_logging(settings: LogSettings, *, quiet: bool = False) -> None:
    """Send every log record to stderr in the configured format and level (called once at start).

    `quiet` (short commands such as `directory stats`) keeps INFO chatter off the user's screen unless
    `log.level` asks for debug.
    """
    handler = logging.StreamHandler(sys.stderr)
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = logging.getLevelName(settings.level.upper())
    root.setLevel(max(level, logging.WARNING) if quiet and level > logging.DEBUG else level)
    # Chatty libraries: their INFO is our DEBUG.
    for name in ("transitions", "aiohttp.access", "twilio"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # A periodic job still running at its next turn is skipped (max_instances=1, by design) and apscheduler
    # warns each time; our job wrapper logs real failures itself.
    logging.getLogger("apscheduler").setLevel(max(logging.ERROR, root.level))
    # amqtt warns about its own shutdown ("messages not broadcasted"); only its errors matter to us.
    logging.getLogger("amqtt").setLevel(max(logging.ERROR, root.level))
