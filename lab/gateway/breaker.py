"""Circuit breaker of one (provider, transport): closed → open → half-open → closed.

- closed: every attempt is let through; `failure_threshold` consecutive failures open it.
- open: nothing is let through until `cooldown_s` has passed (or until reset, when forced open).
- half-open: at most `half_open_max_probes` attempts at a time; `success_threshold` consecutive
  successes close it, one failure opens it again for another cool-down.

Every attempt holds a Permit from `acquire()` and must end with exactly one of `success`, `failure` or
`release` (no verdict, e.g. cancelled). Outcomes of permits issued before the last transition are
ignored for the state machine, so a slow answer from before an opening cannot close or re-open it.
The open → half-open move happens lazily, on the first look at the state after the cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple

from lab.gateway.config import BreakerSettings


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit(NamedTuple):
    epoch: int
    probe: bool


# on_transition(from_state, to_state, reason)
TransitionListener = Callable[[BreakerState, BreakerState, str], None]


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_consecutive_failures",
        "_consecutive_successes",
        "_epoch",
        "_forced",
        "_listener",
        "_open_until",
        "_probes_in_flight",
        "_settings",
        "_state",
        "failures_total",
        "successes_total",
    )

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._listener = on_transition
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._forced = False
        self._open_until = 0.0
        self._consecutive_failures = 0
        self._consecutive_successes = 0
        self._probes_in_flight = 0
        self.failures_total = 0
        self.successes_total = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and not self._forced and self._clock() >= self._open_until:
            self._transition(BreakerState.HALF_OPEN, "cooldown_elapsed")
        return self._state

    def acquire(self) -> Permit | None:
        """A permit for one attempt, or None when the breaker does not let it through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self._epoch, False)
        if state is BreakerState.OPEN:
            return None
        if self._probes_in_flight >= self._settings.half_open_max_probes:
            return None
        self._probes_in_flight += 1
        return Permit(self._epoch, True)

    @property
    def probe_available(self) -> bool:
        """Half-open with a probe slot free: the next attempt here is a probe."""
        return self.state is BreakerState.HALF_OPEN and (
            self._probes_in_flight < self._settings.half_open_max_probes
        )

    @property
    def forced(self) -> bool:
        return self._forced

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets probes through (0 when it is not open; inf when forced)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return float("inf") if self._forced else max(0.0, self._open_until - self._clock())

    def success(self, permit: Permit) -> None:
        self.successes_total += 1
        if not self._end(permit):
            return
        self._consecutive_failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._consecutive_successes += 1
            if self._consecutive_successes >= self._settings.success_threshold:
                self._transition(BreakerState.CLOSED, "probes_succeeded")

    def failure(self, permit: Permit, reason: str = "failure") -> None:
        self.failures_total += 1
        if not self._end(permit):
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open(f"probe_failed:{reason}")
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self._settings.failure_threshold:
            self._open(f"failure_threshold:{reason}")

    def report_failure(self, reason: str) -> None:
        """A failure seen outside any attempt (a subscription that went silent or was dropped)."""
        self.failure(Permit(self._epoch, False), reason)

    def release(self, permit: Permit) -> None:
        """End an attempt that gave no verdict on the provider (cancelled, client gone)."""
        self._end(permit)

    def force_open(self, reason: str = "forced") -> None:
        """Open and stay open until `reset()`, whatever the settings (an operator's or the lab's act)."""
        self._forced = True
        if self._state is not BreakerState.OPEN:
            self._transition(BreakerState.OPEN, reason)

    def reset(self, reason: str = "reset") -> None:
        self._forced = False
        self._consecutive_failures = 0
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED, reason)

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        out: dict[str, Any] = {
            "state": state.value,
            "forced": self._forced,
            "consecutive_failures": self._consecutive_failures,
            "failures_total": self.failures_total,
            "successes_total": self.successes_total,
        }
        if state is BreakerState.OPEN and not self._forced:
            out["retry_in_s"] = round(max(0.0, self._open_until - self._clock()), 3)
        if state is BreakerState.HALF_OPEN:
            out["probes_in_flight"] = self._probes_in_flight
        return out

    # --- internals ------------------------------------------------------------------------------------

    def _end(self, permit: Permit) -> bool:
        """Close the books on a permit; True when its outcome may move the state machine."""
        if permit.epoch != self._epoch:
            return False
        if permit.probe:
            self._probes_in_flight -= 1
        return self._settings.enabled

    def _open(self, reason: str) -> None:
        self._open_until = self._clock() + self._settings.cooldown_s
        self._transition(BreakerState.OPEN, reason)

    def _transition(self, to: BreakerState, reason: str) -> None:
        before = self._state
        self._state = to
        self._epoch += 1
        self._consecutive_successes = 0
        self._probes_in_flight = 0
        if to is BreakerState.CLOSED:
            self._consecutive_failures = 0
        if self._listener is not None:
            self._listener(before, to, reason)
