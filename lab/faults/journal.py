"""Faults as records: what was done to what, when, and how to undo it.

Every fault call returns a `Fault`; `lift()` runs its inverse once. The `FaultJournal` keeps every fault
of a lab and tells its listeners (the web UI writing `faults.jsonl`, a test log) about each start and
end. `fault_event` builds the rows of the run record's `faults.jsonl`, for the journal, the nemesis and
the web UI alike: `{"event", "fault_id", "name", "action", "target", "ts", "params"}` and, when known,
`issued_ts` (when the action — applying it, or lifting it — was issued), `effective_ts` (when it had
taken effect: the call returned), `offset_s` (from the start of the load), `source` (who applied it),
`error` and `reason`.

`ts` is the edge of the fault's window the analysis uses, the widest the fault can have acted in: for a
`start` the time it was issued, for an `end` the time the lift took effect. A restart (an instant fault)
is recorded from before the container stopped (start issued) to when it runs again (end effective), so its
impact falls inside its window.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FaultEvent = dict[str, Any]
Listener = Callable[[FaultEvent], None]


def fault_event(
    event: str,
    *,
    fault_id: str,
    name: str,
    action: str,
    target: str,
    ts: float | None,
    params: dict[str, Any],
    offset_s: float | None = None,
    source: str | None = None,
    error: str | None = None,
    reason: str | None = None,
    issued_ts: float | None = None,
    effective_ts: float | None = None,
) -> FaultEvent:
    """One row of faults.jsonl. `event` is `start`, `end`, or `failed` (an application that raised:
    no start/end pair, `error` says why); an `end` may carry the lift's `error` or a `reason`."""
    row: FaultEvent = {
        "event": event,
        "fault_id": fault_id,
        "name": name,
        "action": action,
        "target": target,
        "ts": ts,
        "params": params,
    }
    optional = {
        "issued_ts": issued_ts,
        "effective_ts": effective_ts,
        "offset_s": offset_s,
        "source": source,
        "error": error,
        "reason": reason,
    }
    return row | {key: value for key, value in optional.items() if value is not None}


@dataclass(eq=False)
class Fault:
    """One injected fault. `action` is what was done ("latency", "cut", "kill", ...), `target` what it
    was done to (a proxy or container), `name` the caller's label for it (defaults to the action)."""

    fault_id: str
    name: str
    action: str
    target: str
    params: dict[str, Any]
    started_at: float  # when it had taken effect (the action returned)
    ended_at: float | None = None  # when the lift had taken effect
    issued_at: float | None = None  # when the action was issued (None: = started_at)
    lift_issued_at: float | None = None  # when the lift was issued
    _inverse: Callable[[], None] | None = field(default=None, repr=False)
    _journal: FaultJournal | None = field(default=None, repr=False)
    _clock: Callable[[], float] = field(default=time.time, repr=False)
    _source: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def lift(self) -> Fault:
        """Undo the fault (once; later calls do nothing)."""
        with self._lock:
            if self.ended_at is not None:
                return self
            self.lift_issued_at = self._clock()
            if self._inverse is not None:
                self._inverse()
            self.ended_at = self._clock()
        if self._journal is not None:
            self._journal.emit(self.event("end"))
        return self

    def event(self, kind: str) -> FaultEvent:
        """The `start` row (ts: issued) or the `end` row (ts: the lift took effect)."""
        start = kind == "start"
        issued = (self.issued_at if start else self.lift_issued_at) or None
        effective = self.started_at if start else self.ended_at
        return fault_event(
            kind,
            fault_id=self.fault_id,
            name=self.name,
            action=self.action,
            target=self.target,
            ts=(issued if issued is not None else effective) if start else effective,
            params=self.params,
            source=self._source,
            issued_ts=issued if issued is not None else effective,
            effective_ts=effective,
        )

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lift()


class FaultJournal:
    """Every fault of one lab, in order, with listeners for start/end events. Fault ids are
    `<id_prefix><n>`; `source`, when given, is written into every event (e.g. "webui")."""

    def __init__(
        self, clock: Callable[[], float] = time.time, *, id_prefix: str = "f", source: str | None = None
    ) -> None:
        self._clock = clock
        self._id_prefix = id_prefix
        self._source = source
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every start/end event from now on; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def now(self) -> float:
        """The journal's clock (for `issued_at`: read it before doing the action)."""
        return self._clock()

    def emit(self, event: FaultEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def record(
        self,
        action: str,
        target: str,
        params: dict[str, Any],
        inverse: Callable[[], None] | None,
        *,
        name: str | None = None,
        instant: bool = False,
        issued_at: float | None = None,
        effective_at: float | None = None,
        lift_issued_at: float | None = None,
    ) -> Fault:
        """Record a fault that has just been applied: `issued_at` is when the action was issued (before
        the call), `effective_at` when it took effect (default: now). An `instant` one (a restart) ends
        now, its end issued at `lift_issued_at` (e.g. when the stopped container was started again)."""
        now = self._clock()
        started = effective_at if effective_at is not None else now
        with self._lock:
            fault = Fault(
                fault_id=f"{self._id_prefix}{next(self._ids)}",
                name=name or action,
                action=action,
                target=target,
                params=params,
                started_at=started,
                issued_at=issued_at,
                _inverse=inverse,
                _journal=self,
                _clock=self._clock,
                _source=self._source,
            )
            self._faults.append(fault)
        self.emit(fault.event("start"))
        if instant:
            fault.lift_issued_at = lift_issued_at if lift_issued_at is not None else started
            fault.ended_at = now
            self.emit(fault.event("end"))
        return fault

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def active(self) -> list[Fault]:
        return [f for f in self.faults if f.active]

    def lift_all(self) -> list[str]:
        """Lift every active fault, newest first; return the errors (a lift that failed stays active)."""
        errors = []
        for fault in reversed(self.active()):
            try:
                fault.lift()
            except Exception as exc:
                errors.append(f"{fault.fault_id} {fault.action} {fault.target}: {type(exc).__name__}: {exc}")
        return errors
