"""The fault timeline expanded into a plan: every fault occurrence with its target and its times.

Planning is pure and deterministic: `after:` chains, repeats, flap windows, probabilities and random
targets are all resolved up front from the scenario and its seed, so a plan can be printed before a
run (`lab scenario plan`) and a run can be repeated. Random targets respect `min_live` against every
other planned outage (fixed targets first, then random ones in start order).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lab.durations import format_duration
from lab.faults.actions import Action, FlapAction
from lab.scenario.models import ALL, RANDOM, FaultEntry

if TYPE_CHECKING:
    from lab.scenario.models import Scenario

MAX_OCCURRENCES = 10_000  # per entry: a bound on repeat/flap expansion


class PlanError(ValueError):
    """A timeline that cannot be planned; `path` names the field (e.g. `faults[2].after`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class PlannedFault:
    """One fault to apply at `start` and lift at `end` (offsets in seconds from the start of the load).

    `end` is None for "until the run ends" and equals `start` for instant actions. `kind` is the
    entry's action type as written (`flap` for a flap's down windows); `action` is what to apply.
    """

    fault_id: str
    name: str
    kind: str
    action: Action
    target: str
    start: float
    end: float | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def instant(self) -> bool:
        return self.action.instant

    def end_within(self, run_duration: float) -> float:
        return run_duration if self.end is None else min(self.end, run_duration)


@dataclass(frozen=True)
class SkippedFault:
    name: str
    start: float
    reason: str


@dataclass(frozen=True)
class Plan:
    duration: float
    faults: tuple[PlannedFault, ...]
    skipped: tuple[SkippedFault, ...] = ()

    def describe(self) -> list[str]:
        """One line per planned fault, for people."""
        lines = []
        for f in self.faults:
            end = "end" if f.end is None else format_duration(f.end)
            span = format_duration(f.start) if f.instant else f"{format_duration(f.start)}..{end}"
            lines.append(f"{span:>14}  {f.fault_id:<28} {f.kind:<12} {f.target}")
        lines += [f"{format_duration(s.start):>14}  {s.name:<28} skipped: {s.reason}" for s in self.skipped]
        return lines


@dataclass
class _Occurrence:
    start: float
    end: float | None


def plan_timeline(scenario: Scenario, *, duration: float | None = None) -> Plan:
    """Expand the scenario's timeline for a run of `duration` seconds (default: the load's)."""
    run = scenario.load.duration if duration is None else duration
    ids = scenario.fault_ids()
    providers = scenario.topology.provider_ids
    occurrences = _occurrences(scenario.faults, ids, run)

    fixed: list[PlannedFault] = []
    pending_random: list[tuple[int, PlannedFault]] = []
    skipped: list[SkippedFault] = []
    rngs = [random.Random(f"{scenario.seed}/{name}") for name in ids]
    counters = [0] * len(ids)

    def next_id(index: int) -> str:
        counters[index] += 1
        return f"{ids[index]}#{counters[index] - 1}"

    for index, entry in enumerate(scenario.faults):
        _check_within_run(index, entry, occurrences[index], run)
        for occ in occurrences[index]:
            if occ.start >= run:
                continue  # a repeat's occurrences past the end (repeating until the run ends)
            if entry.probability < 1.0 and rngs[index].random() >= entry.probability:
                skipped.append(SkippedFault(ids[index], occ.start, f"probability {entry.probability:g}"))
                continue
            for action, start, end in _windows(entry, occ, run):
                targets = _fixed_targets(entry.target, providers)
                for target in targets or [RANDOM]:
                    planned = PlannedFault(
                        fault_id=next_id(index),
                        name=ids[index],
                        kind=entry.action.type,
                        action=action,
                        target=target,
                        start=start,
                        end=end,
                        params=_params(entry, action, start, end),
                    )
                    (fixed.append(planned) if targets else pending_random.append((index, planned)))

    chosen = _choose_random(scenario, pending_random, fixed, rngs, run, skipped)
    faults = sorted(fixed + chosen, key=lambda f: (f.start, ids.index(f.name), f.fault_id))
    return Plan(duration=run, faults=tuple(faults), skipped=tuple(sorted(skipped, key=lambda s: s.start)))


def _occurrences(entries: list[FaultEntry], ids: list[str], run: float) -> list[list[_Occurrence]]:
    """Each entry's occurrences with absolute times, resolving `after:` chains (cycles are errors)."""
    by_id = {name: i for i, name in enumerate(ids)}
    result: dict[int, list[_Occurrence]] = {}
    visiting: set[int] = set()

    def resolve(i: int) -> list[_Occurrence]:
        if i in result:
            return result[i]
        if i in visiting:
            raise PlanError(f"faults[{i}].after", "the after: references form a cycle")
        visiting.add(i)
        entry = entries[i]
        if entry.after is not None:
            ref = by_id.get(entry.after)
            if ref is None:
                raise PlanError(f"faults[{i}].after", f"no entry with id {entry.after!r}")
            ref_end = _entry_end(resolve(ref), entries[ref])
            if ref_end is None:
                raise PlanError(
                    f"faults[{i}].after",
                    f"{entry.after!r} never ends: give it a duration, an end or a repeat count",
                )
            first = ref_end + (entry.delay or 0.0)
        else:
            first = entry.start or 0.0
        if entry.end is not None and entry.end <= first:
            raise PlanError(
                f"faults[{i}].end",
                f"ends at {format_duration(entry.end)}, not after its start {format_duration(first)}",
            )
        result[i] = [_Occurrence(s, _end_of(entry, s)) for s in _starts(entry, first, run, i)]
        visiting.discard(i)
        return result[i]

    return [resolve(i) for i in range(len(entries))]


def _check_within_run(index: int, entry: FaultEntry, occurrences: list[_Occurrence], run: float) -> None:
    """A fault asked for that the run would never apply is an error, not a silently dropped fault."""
    path = f"faults[{index}]"
    end = format_duration(run)
    if not occurrences:  # repeat.until before the first start
        raise PlanError(f"{path}.repeat.until", "ends before the entry's first start: no occurrence")
    first = occurrences[0].start
    if first >= run:
        field = "after" if entry.after is not None else "start"
        raise PlanError(
            f"{path}.{field}", f"starts at {format_duration(first)}, not before the run ends at {end}"
        )
    last = occurrences[-1].start
    if entry.repeat is not None and entry.repeat.count is not None and last >= run:
        raise PlanError(
            f"{path}.repeat.count",
            f"occurrence {len(occurrences)} would start at {format_duration(last)}, "
            f"not before the run ends at {end}",
        )


def _starts(entry: FaultEntry, first: float, run: float, index: int) -> list[float]:
    repeat = entry.repeat
    if repeat is None:
        return [first]
    if repeat.count is not None:
        count = repeat.count
    else:
        until = run if repeat.until is None else repeat.until
        count = max(0, math.ceil((until - first) / repeat.every))
    if count > MAX_OCCURRENCES:
        raise PlanError(f"faults[{index}].repeat", f"{count} occurrences; at most {MAX_OCCURRENCES}")
    return [first + k * repeat.every for k in range(count)]


def _end_of(entry: FaultEntry, start: float) -> float | None:
    if entry.action.instant:
        return start
    if entry.duration is not None:
        return start + entry.duration
    return entry.end


def _entry_end(occurrences: list[_Occurrence], entry: FaultEntry) -> float | None:
    """When an entry's last occurrence ends (None: it never does, before the run ends)."""
    if entry.repeat is not None and entry.repeat.count is None and entry.repeat.until is None:
        return None
    if not occurrences or any(o.end is None for o in occurrences):
        return None if occurrences else 0.0
    return max(o.end for o in occurrences if o.end is not None)


def _windows(entry: FaultEntry, occ: _Occurrence, run: float) -> Iterable[tuple[Action, float, float | None]]:
    """What one occurrence applies: itself, or a flap's down windows."""
    action = entry.action
    if not isinstance(action, FlapAction):
        yield action, occ.start, occ.end
        return
    limit = run if occ.end is None else min(occ.end, run)
    down = action.down_action()
    t = occ.start
    for _ in range(MAX_OCCURRENCES):
        if t >= limit:
            return
        yield down, t, min(t + action.down, limit)
        t += action.interval


def _fixed_targets(target: str | None, providers: list[str]) -> list[str]:
    if target == RANDOM:
        return []
    if target == ALL:
        return list(providers)
    return [str(target)]


def _params(entry: FaultEntry, action: Action, start: float, end: float | None) -> dict[str, Any]:
    params: dict[str, Any] = {**action.params(), "planned_start": start, "planned_end": end}
    if isinstance(entry.action, FlapAction):
        params["flap"] = entry.action.params()
    return params


def _down_windows(faults: Iterable[PlannedFault], run: float) -> dict[str, list[tuple[float, float]]]:
    windows: dict[str, list[tuple[float, float]]] = {}
    for f in faults:
        if f.action.takes_down:
            windows.setdefault(f.target, []).append((f.start, f.end_within(run)))
    return windows


def _choose_random(
    scenario: Scenario,
    pending: list[tuple[int, PlannedFault]],
    fixed: list[PlannedFault],
    rngs: list[random.Random],
    run: float,
    skipped: list[SkippedFault],
) -> list[PlannedFault]:
    """Give each random-target fault a provider, in start order, keeping `min_live` providers up."""
    providers = scenario.topology.provider_ids
    down = _down_windows(fixed, run)
    chosen: list[PlannedFault] = []
    for index, planned in sorted(pending, key=lambda item: (item[1].start, item[0])):
        entry = scenario.faults[index]
        min_live = 1 if entry.min_live is None else entry.min_live
        start, end = planned.start, planned.end_within(run)
        eligible = [
            p
            for p in (entry.among or providers)
            if not planned.action.takes_down or _can_go_down(p, start, end, down, providers, min_live)
        ]
        if not eligible:
            skipped.append(
                SkippedFault(planned.name, start, f"no provider can go down keeping {min_live} up")
            )
            continue
        target = rngs[index].choice(sorted(eligible))
        chosen.append(replace(planned, target=target))
        if planned.action.takes_down:
            down.setdefault(target, []).append((start, end))
    return chosen


def _can_go_down(
    provider: str,
    start: float,
    end: float,
    down: dict[str, list[tuple[float, float]]],
    providers: list[str],
    min_live: int,
) -> bool:
    """Whether `provider` is up over [start, end) and taking it down keeps `min_live` others up."""
    if any(s < end and start < e for s, e in down.get(provider, ())):
        return False
    # The number of providers down only changes at window starts: check each one inside the span.
    moments = {start} | {s for windows in down.values() for s, _ in windows if start < s < end}
    for t in moments:
        down_now = sum(1 for p in providers if any(s <= t < e for s, e in down.get(p, ())))
        if len(providers) - down_now - 1 < min_live:
            return False
    return True
