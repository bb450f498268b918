"""Fault knobs of the Twilio sandbox: what goes wrong and how often, and its hard per-second cap.

`Faults` is frozen: the sandbox swaps the whole object (in process, or by `POST /_sandbox/faults`), so
a request always sees one consistent set of knobs. `SendCap` is the provider's hard limit on accepted
message requests per rolling second, which a well-behaved client never hits.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_RATES = ("error_rate", "rate_limit_rate", "hang_rate", "failure_rate")


@dataclass(frozen=True, slots=True)
class Faults:
    """How the sandbox misbehaves; every rate is a probability per request (or per message)."""

    error_rate: float = 0.0  # API requests answered 500/503 (codes 20500/20503)
    rate_limit_rate: float = 0.0  # API requests answered 429 (code 20429) with Retry-After
    retry_after: float = 1.0  # seconds announced in Retry-After (sent rounded up to whole seconds)
    latency: float = 0.0  # seconds before any API answer
    jitter: float = 0.0  # up to this many extra seconds of latency, uniformly drawn
    hang_rate: float = 0.0  # API requests processed but never answered until the client gives up
    max_per_second: int = 0  # hard cap on accepted message requests per rolling second; 0 = no cap
    failure_rate: float = 0.0  # messages that end undelivered/failed (30003/30005/30006)
    callback_delay: float = 0.05  # seconds between the status steps queued → sent → final

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number")
            if value < 0:
                raise ValueError(f"{f.name} must not be negative")
            if f.name in _RATES and value > 1:
                raise ValueError(f"{f.name} must be between 0 and 1")
        if self.error_rate + self.rate_limit_rate + self.hang_rate > 1:
            raise ValueError("error_rate + rate_limit_rate + hang_rate must not exceed 1")

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """These faults with some knobs changed (the body of `POST /_sandbox/faults`).

        Raises:
            ValueError: an unknown knob, or a value out of range (the message names it).
        """
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise ValueError(f"unknown fault knob {name!r}; known: {', '.join(sorted(known))}")
        if "max_per_second" in changes and not isinstance(changes["max_per_second"], int):
            raise ValueError("max_per_second must be a whole number")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class SendCap:
    """A hard cap of `limit` admissions in any rolling one-second window (0 = unlimited)."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()
        self.refused = 0

    def admit(self, now: float, limit: int) -> bool:
        """Record an admission at `now` (monotonic seconds) and return True, or return False if over `limit`."""
        while self._admitted and now - self._admitted[0] >= 1.0:
            self._admitted.popleft()
        if limit and len(self._admitted) >= limit:
            self.refused += 1
            return False
        self._admitted.append(now)
        return True
