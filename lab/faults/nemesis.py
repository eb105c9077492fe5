"""The nemesis: runs a planned fault timeline beside the load and records every action.

It applies each planned fault at its offset from the start of the load and lifts it at its end, in a
thread (the orchestrator never imports Locust, so no gevent here). Every application is written to
`faults.jsonl` as a start event and an end event with wall-clock timestamps (an application that
raised is a single `failed` event with its error): each with `issued_ts` (the action, or the lift, was
issued) and `effective_ts` (it had taken effect); `ts` is the start's issued time and the end's
effective time, the widest window the fault can have acted in (see lab.faults.journal). Whatever is
still active when the run ends, fails or is interrupted is lifted by `stop()` (use the nemesis as a
context manager, so a `finally` always runs it).

The nemesis does not know Docker or Toxiproxy, nor any action: it hands each planned action to a
`FaultTarget` (the lab's `FaultInjector`, whose `apply` lets the action apply itself), which returns
something with a `lift()` (a `lab.faults.Fault`). Tests pass a fake target and a `ManualClock`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab.faults.actions import Action
from lab.faults.journal import fault_event
from lab.scenario.timeline import Plan, PlannedFault

log = logging.getLogger(__name__)

EventSink = Callable[[Mapping[str, Any]], None]


class Liftable(Protocol):
    def lift(self) -> Any: ...


class FaultTarget(Protocol):
    """Applies an action to a target of the lab (`FaultInjector.apply`); the returned handle's `lift()`
    undoes it (None, or an ended fault: nothing to undo, as for an instant action)."""

    def apply(self, action: Action, target: str, *, name: str | None = None) -> Liftable | None: ...


class Clock(Protocol):
    """Time since the start of the load, and an interruptible wait until a given offset."""

    def now(self) -> float: ...

    def wait_until(self, offset: float, stop: threading.Event) -> bool:
        """Block until `offset` or until `stop` is set; True if `stop` was set."""
        ...


class MonotonicClock:
    """Offsets on the monotonic clock from the moment the load started."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started

    def now(self) -> float:
        return time.monotonic() - self.started

    def wait_until(self, offset: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, offset - self.now()))


class ManualClock:
    """A simulated clock for tests: waiting jumps straight to the offset (never blocks)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return self.offset

    def wait_until(self, offset: float, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        self.offset = max(self.offset, offset)
        return False


@dataclass
class ActiveFault:
    planned: PlannedFault
    handle: Liftable | None
    since: float  # wall-clock start


@dataclass
class NemesisSummary:
    applied: int = 0
    failed: int = 0
    lifted: int = 0
    lift_failures: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(order=True, frozen=True)
class _Step:
    offset: float
    order: int  # lifts before applies at the same offset (an `after:` chain hands over cleanly)
    seq: int
    fault: PlannedFault = field(compare=False)
    lift: bool = field(compare=False)


class Nemesis:
    """Executes a `Plan` against a `FaultTarget`, writing start/end events to `sink`."""

    def __init__(
        self,
        plan: Plan,
        target: FaultTarget,
        sink: EventSink,
        *,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] = time.time,
        source: str = "nemesis",
    ) -> None:
        self.plan = plan
        self.target = target
        self.sink = sink
        self.clock: Clock = clock or MonotonicClock()
        self.wall_clock = wall_clock
        self.source = source
        self.summary = NemesisSummary(skipped=len(plan.skipped))
        self._steps = self._schedule(plan)
        self._active: dict[str, ActiveFault] = {}
        self._lock = threading.RLock()  # one fault operation at a time, across the thread and stop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @staticmethod
    def _schedule(plan: Plan) -> list[_Step]:
        steps = []
        for seq, fault in enumerate(plan.faults):
            steps.append(_Step(fault.start, 1, seq, fault, lift=False))
            if not fault.instant and fault.end is not None:
                steps.append(_Step(fault.end, 0, seq, fault, lift=True))
        return sorted(steps)

    # --- running -----------------------------------------------------------------------------------
    def start(self) -> Nemesis:
        """Run the timeline in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the nemesis has already started")
        self._thread = threading.Thread(target=self.run, name="nemesis", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Run the timeline in the calling thread until it is done or `stop()` is called."""
        for step in self._steps:
            if step.offset >= self.plan.duration:
                break  # what is still active is lifted by stop() at the end of the run
            if self.clock.wait_until(step.offset, self._stop):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                if step.lift:
                    self._lift(step.fault.fault_id)
                else:
                    self._apply(step.fault)

    def stop(self, *, join_timeout: float = 30.0) -> NemesisSummary:
        """Stop the timeline and lift every fault still active (newest first). Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(join_timeout)
            if self._thread.is_alive():
                log.warning("the nemesis thread is still busy after %.0fs; lifting anyway", join_timeout)
        with self._lock:
            if not self._stopped:
                for fault_id in reversed(list(self._active)):
                    self._lift(fault_id, reason="run ended")
                self._stopped = True
        return self.summary

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        """Whether the timeline thread has finished (every step taken or stopped)."""
        return self._thread is not None and not self._thread.is_alive()

    def active(self) -> list[ActiveFault]:
        with self._lock:
            return list(self._active.values())

    def __enter__(self) -> Nemesis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one fault ---------------------------------------------------------------------------------
    def _event(
        self,
        kind: str,
        fault: PlannedFault,
        ts: float,
        *,
        error: str | None = None,
        reason: str | None = None,
        issued: float | None = None,
        effective: float | None = None,
        outcome: Any = None,
    ) -> dict[str, Any]:
        # What applying it found (e.g. a reorg's fork block) joins the planned params, which win.
        found = getattr(outcome, "params", None)
        return fault_event(
            kind,
            fault_id=fault.fault_id,
            name=fault.name,
            action=fault.kind,
            target=fault.target,
            ts=ts,
            params={
                **(found if isinstance(found, dict) else {}),
                **fault.params,
                "applied": fault.action.type,
            },
            offset_s=round(self.clock.now() - (self.wall_clock() - ts), 3),  # `ts` from the load's start
            source=self.source,
            error=error,
            reason=reason,
            issued_ts=issued,
            effective_ts=effective,
        )

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.sink(event)
        except Exception:  # the record must not stop the faults from being lifted
            log.exception("could not record fault event %s", event.get("fault_id"))

    def _apply(self, fault: PlannedFault) -> None:
        started = self.wall_clock()
        try:
            handle = self.target.apply(fault.action, fault.target, name=fault.fault_id)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("fault %s (%s on %s) failed: %s", fault.fault_id, fault.kind, fault.target, error)
            self.summary.failed += 1
            self.summary.errors.append(f"apply {fault.fault_id}: {error}")
            # Not a start/end pair: the fault never held, but the record shows it was attempted.
            self._emit(self._event("failed", fault, started, error=error))
            return
        self.summary.applied += 1
        took_effect = _time(handle, "started_at") or self.wall_clock()
        self._emit(
            self._event("start", fault, started, issued=started, effective=took_effect, outcome=handle)
        )
        if fault.instant:  # e.g. a restart: its end is when the container ran again
            ended = _time(handle, "ended_at") or self.wall_clock()
            end_issued = _time(handle, "lift_issued_at") or took_effect
            self._emit(self._event("end", fault, ended, issued=end_issued, effective=ended, outcome=handle))
            return
        self._active[fault.fault_id] = ActiveFault(fault, handle, started)

    def _lift(self, fault_id: str, *, reason: str | None = None) -> None:
        active = self._active.pop(fault_id, None)
        if active is None:
            return  # it failed to apply, or was already lifted
        error: str | None = None
        issued = self.wall_clock()
        try:
            if active.handle is not None:
                active.handle.lift()
            self.summary.lifted += 1
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("lifting fault %s failed: %s", fault_id, error)
            self.summary.lift_failures += 1
            self.summary.errors.append(f"lift {fault_id}: {error}")
        ended = self.wall_clock()
        self._emit(
            self._event(
                "end", active.planned, ended, error=error, reason=reason, issued=issued, effective=ended
            )
        )


def _time(handle: object, name: str) -> float | None:
    """A time the fault handle recorded itself (a `lab.faults.Fault`), if it has one."""
    value = getattr(handle, name, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
