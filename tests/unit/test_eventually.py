"""The waiting helpers return as soon as a condition holds and fail with what they last saw."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lab.eventually import (
    EventuallyTimeout,
    async_wait_for_value,
    eventually,
    refute_eventually,
    wait_for_value,
)


def test_wait_for_value_returns_the_first_value_that_satisfies() -> None:
    counter = itertools.count()
    assert wait_for_value(lambda: next(counter), lambda n: n >= 3, interval=0.001) == 3


def test_wait_for_value_reports_the_last_value_on_timeout() -> None:
    with pytest.raises(EventuallyTimeout, match=r"head advancing: not true after .*\(last value: 41\)"):
        wait_for_value(lambda: 41, lambda n: n > 41, timeout=0.05, interval=0.01, message="head advancing")


def test_exceptions_count_as_not_yet_and_are_reported() -> None:
    attempts = itertools.count()

    def flaky() -> str:
        if next(attempts) < 2:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert wait_for_value(flaky, interval=0.001) == "up"
    with pytest.raises(EventuallyTimeout, match="ConnectionRefusedError: nope"):
        wait_for_value(lambda: (_ for _ in ()).throw(ConnectionRefusedError("nope")), timeout=0.03)


def test_eventually_retries_assertions() -> None:
    seen: list[int] = []

    def check() -> int:
        seen.append(1)
        assert len(seen) >= 3, "not yet"
        return len(seen)

    assert eventually(check, interval=0.001) == 3


def test_refute_eventually_fails_as_soon_as_the_condition_holds() -> None:
    refute_eventually(lambda: False, within=0.03, interval=0.01)
    with pytest.raises(AssertionError, match="breaker opened: became true"):
        refute_eventually(lambda: True, within=5, message="breaker opened")


def test_async_wait_for_value() -> None:
    counter = itertools.count()

    async def probe() -> int:
        return next(counter)

    assert asyncio.run(async_wait_for_value(probe, lambda n: n == 2, interval=0.001)) == 2
    with pytest.raises(EventuallyTimeout):
        asyncio.run(async_wait_for_value(probe, lambda n: n < 0, timeout=0.02, interval=0.005))
