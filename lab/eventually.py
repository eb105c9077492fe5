"""Waiting on conditions instead of sleeping, in the spirit of Lasso's Eventually helpers.

Every wait has a deadline and reports what it last saw when it gives up, so a failing test says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class EventuallyTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def _describe(last: Any, exc: BaseException | None) -> str:
    if exc is not None:
        return f"last error: {type(exc).__name__}: {exc}"
    return f"last value: {last!r}"


def wait_for_value(
    fn: Callable[[], T],
    predicate: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call `fn` until `predicate(value)` holds and return that value; raise after `timeout` seconds.

    Exceptions of the `ignore` types count as "not yet" (a server still starting refuses connections).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    event = _Waiter()
    while True:
        try:
            last = fn()
            last_exc = None
            if predicate(last):
                return last
        except ignore as exc:
            last_exc = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EventuallyTimeout(f"{message}: not true after {timeout:.1f}s ({_describe(last, last_exc)})")
        event.wait(min(interval, remaining))


def eventually(
    fn: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"
) -> T:
    """Retry an assertion-style callable until it stops raising; return its value."""
    return wait_for_value(fn, lambda _: True, timeout=timeout, interval=interval, message=message)


def refute_eventually(
    predicate: Callable[[], bool], *, within: float = 1.0, interval: float = 0.05, message: str = "condition"
) -> None:
    """Assert that `predicate` stays false for the whole of `within` seconds (a bounded watch)."""
    deadline = time.monotonic() + within
    event = _Waiter()
    while True:
        if predicate():
            raise AssertionError(f"{message}: became true within {within:.1f}s")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        event.wait(min(interval, remaining))


async def async_wait_for_value(
    fn: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """The asyncio form of `wait_for_value`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = await fn()
            last_exc = None
            if predicate(last):
                return last
        except ignore as exc:
            last_exc = exc
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise EventuallyTimeout(f"{message}: not true after {timeout:.1f}s ({_describe(last, last_exc)})")
        await asyncio.sleep(min(interval, remaining))  # the poll interval of a deadline-bounded wait


class _Waiter:
    """A private threading.Event used as an interruptible poll interval (never set)."""

    def __init__(self) -> None:
        import threading

        self._event = threading.Event()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)
