"""The circuit breaker's state machine, on a simulated clock."""

from __future__ import annotations

import pytest

from lab.gateway.breaker import BreakerState, CircuitBreaker
from lab.gateway.config import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **settings: object) -> tuple[CircuitBreaker, list[tuple[str, str, str]]]:
    transitions: list[tuple[str, str, str]] = []
    defaults: dict[str, object] = {
        "failure_threshold": 3,
        "success_threshold": 2,
        "cooldown_s": 10.0,
        "half_open_max_probes": 1,
    }
    breaker = CircuitBreaker(
        BreakerSettings(**{**defaults, **settings}),  # type: ignore[arg-type]
        clock=clock,
        on_transition=lambda a, b, reason: transitions.append((a.value, b.value, reason)),
    )
    return breaker, transitions


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.failure(permit, "timeout")


def succeed(breaker: CircuitBreaker) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.success(permit)


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    breaker, transitions = make(Clock())
    fail(breaker, 2)
    succeed(breaker)  # a success in between starts the count again
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is None
    assert transitions == [("closed", "open", "failure_threshold:timeout")]


def test_half_open_after_the_cooldown_lets_a_bounded_number_of_probes_through() -> None:
    clock = Clock()
    breaker, transitions = make(clock, half_open_max_probes=2)
    fail(breaker, 3)
    clock.now += 9.99
    assert breaker.acquire() is None
    clock.now += 0.01
    first, second = breaker.acquire(), breaker.acquire()
    assert breaker.state is BreakerState.HALF_OPEN
    assert first is not None and first.probe and second is not None and second.probe
    assert breaker.acquire() is None  # the probe bound: two in flight
    breaker.release(second)  # an attempt that gave no verdict frees its slot
    third = breaker.acquire()
    assert third is not None and breaker.acquire() is None
    assert transitions[-1] == ("open", "half_open", "cooldown_elapsed")


def test_successful_probes_close_it() -> None:
    clock = Clock()
    breaker, transitions = make(clock)
    fail(breaker, 3)
    clock.now += 10
    succeed(breaker)
    assert breaker.state is BreakerState.HALF_OPEN  # success_threshold is 2
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED
    assert [t[1] for t in transitions] == ["open", "half_open", "closed"]


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    breaker, transitions = make(clock)
    fail(breaker, 3)
    clock.now += 10
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert transitions[-1] == ("half_open", "open", "probe_failed:timeout")
    clock.now += 9
    assert breaker.acquire() is None
    clock.now += 1
    assert breaker.acquire() is not None


def test_outcomes_of_permits_from_before_a_transition_are_ignored() -> None:
    clock = Clock()
    breaker, _ = make(clock)
    slow = breaker.acquire()  # issued while closed
    assert slow is not None
    fail(breaker, 3)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    breaker.success(slow)  # a late answer to a request from before the opening
    breaker.success(slow)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire() is None  # the stale permit did not free the probe slot


def test_forced_open_stays_open_past_the_cooldown_until_reset() -> None:
    clock = Clock()
    breaker, transitions = make(clock)
    breaker.force_open()
    clock.now += 1000
    assert breaker.state is BreakerState.OPEN and breaker.acquire() is None
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED and breaker.acquire() is not None
    assert transitions == [("closed", "open", "forced"), ("open", "closed", "reset")]


def test_a_disabled_breaker_never_opens_by_itself() -> None:
    breaker, transitions = make(Clock(), enabled=False)
    fail(breaker, 50)
    assert breaker.state is BreakerState.CLOSED and transitions == []
    assert breaker.snapshot()["failures_total"] == 50


def test_report_failure_counts_outside_an_attempt() -> None:
    breaker, _ = make(Clock())
    for _ in range(3):
        breaker.report_failure("silent")
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("threshold", [1, 5])
def test_threshold_is_configurable(threshold: int) -> None:
    breaker, _ = make(Clock(), failure_threshold=threshold)
    fail(breaker, threshold - 1)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
