"""A circuit breaker per provider: a failing provider is given a rest instead of every batch's timeout.

    closed ──(`failures` unhealthy answers in a row)──▶ open ──(`open_for` elapses)──▶ half-open
      ▲                                                  ▲                               │
      └──────────── the probe succeeds ──────────────────┴──────── the probe fails ──────┘

Closed: every send goes. Open: nothing goes; the worker puts its batches back for when it closes, without
claiming them or spending rate tokens. Half-open: one probe message goes; its answer closes the breaker or
opens it again for twice as long (capped at `open_max`). Unhealthy means the provider failed us: 5xx,
unreachable, timed out, ambiguous. A 429 or a refusal of one message is a healthy provider's answer.

One breaker per channel per worker process; its state is published in Redis (`Worker` heartbeat) for
`/readyz` and the metrics of any process.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from warning.store import Keyspace


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values of `warning_circuit_state`.
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
PROBE_WAIT = 0.5  # seconds other batches wait while a half-open breaker's probe is out
FRESH = 30.0  # seconds a worker's published state counts (workers publish every 5 s and on each change)


@dataclass
class CircuitBreaker:
    failures: int = 10  # unhealthy answers in a row that open it
    open_for: float = 5.0  # first rest; doubled after each failed probe
    open_max: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    failed_in_row: int = 0
    opened: int = 0  # times it opened (for logs and metrics)
    _rest: float = field(default=0.0, repr=False)
    _until: float = field(default=0.0, repr=False)
    _probing: bool = field(default=False, repr=False)

    def admit(self) -> tuple[float, bool]:
        """(seconds to wait, is_probe): (0, False) send; (0, True) send exactly one probe; (w, _) hold."""
        if self.state is BreakerState.CLOSED:
            return 0.0, False
        now = self.clock()
        if self.state is BreakerState.OPEN:
            if now < self._until:
                return self._until - now, False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return PROBE_WAIT, False
        self._probing = True
        return 0.0, True

    def record(self, healthy: bool) -> bool:
        """Note one answer (or failure) of the provider; True when the state changed."""
        before = self.state
        if healthy:
            if self.state is BreakerState.HALF_OPEN:
                self.state, self._rest, self._probing = BreakerState.CLOSED, 0.0, False
            if self.state is BreakerState.CLOSED:
                self.failed_in_row = 0
        elif self.state is BreakerState.HALF_OPEN:
            self._open(min(self.open_max, max(self.open_for, self._rest * 2)))
        elif self.state is BreakerState.CLOSED:
            self.failed_in_row += 1
            if self.failed_in_row >= self.failures:
                self._open(self.open_for)
        # Answers to sends made before it opened change nothing while it rests.
        return self.state is not before

    def release_probe(self) -> None:
        """The probe admitted was not sent after all (nothing left to send): let the next one through."""
        self._probing = False

    def _open(self, rest: float) -> None:
        self.state, self._rest, self._probing = BreakerState.OPEN, rest, False
        self._until = self.clock() + rest
        self.failed_in_row = 0
        self.opened += 1

    def remaining(self) -> float:
        """Seconds until an open breaker lets a probe through (0 otherwise)."""
        return max(0.0, self._until - self.clock()) if self.state is BreakerState.OPEN else 0.0


def breakers_key(keys: Keyspace) -> str:
    """HASH "{channel}:{consumer}" → the JSON state a worker publishes (see `worker.ChannelWorker`)."""
    return keys.key("breakers")


async def breaker_states(redis: Redis, keys: Keyspace, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per channel, over the workers heard from lately: the worst state (open > half-open > closed),
    how many workers and how many of them are open, and the longest wait before a probe.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    now = time.time() if now is None else now
    raw = await redis.hgetall(breakers_key(keys))
    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        channel = str(name).partition(":")[0]
        try:
            published = json.loads(value)
            state = BreakerState(published["state"])
            fresh = now - float(published["ts"]) <= FRESH
        except (ValueError, KeyError, TypeError):
            continue
        if not fresh:
            continue
        seen = out.setdefault(
            channel, {"state": BreakerState.CLOSED.value, "workers": 0, "open": 0, "retry_in": 0.0}
        )
        seen["workers"] += 1
        seen["open"] += state is BreakerState.OPEN
        seen["retry_in"] = max(seen["retry_in"], float(published.get("retry_in", 0.0)))
        if STATE_VALUE[state] > STATE_VALUE[BreakerState(seen["state"])]:
            seen["state"] = state.value
    return out
