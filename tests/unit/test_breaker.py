"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

from warning.channels.breaker import PROBE_WAIT, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, open_for=2.0, open_max=5.0, clock=clock)


def test_opens_after_failures_in_a_row_only() -> None:
    b = breaker(Clock())
    for healthy in (False, False, True, False, False):  # a healthy answer resets the count
        b.record(healthy)
    assert b.state is BreakerState.CLOSED and b.admit() == (0.0, False)
    assert b.record(False) is True
    assert b.state is BreakerState.OPEN and b.opened == 1


def test_open_holds_then_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    wait, probe = b.admit()
    assert wait == 2.0 and not probe
    clock.now += 2.0
    assert b.admit() == (0.0, True)
    assert b.state is BreakerState.HALF_OPEN
    assert b.admit() == (PROBE_WAIT, False), "a second batch waits for the probe's answer"
    b.record(True)
    assert b.state is BreakerState.CLOSED and b.admit() == (0.0, False)


def test_a_failed_probe_doubles_the_rest_up_to_the_cap() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    rests = []
    for _ in range(4):
        rests.append(b.remaining())
        clock.now += b.remaining()
        assert b.admit() == (0.0, True)
        b.record(False)
    assert rests == [2.0, 4.0, 5.0, 5.0]
    assert b.state is BreakerState.OPEN


def test_answers_to_sends_made_before_it_opened_change_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    assert b.record(True) is False and b.record(False) is False
    assert b.state is BreakerState.OPEN and b.remaining() == 2.0


def test_a_probe_not_sent_is_released() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    clock.now += 2.0
    assert b.admit() == (0.0, True)
    b.release_probe()  # the batch had nothing left to send
    assert b.admit() == (0.0, True)
