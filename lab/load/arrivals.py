"""The open model's schedule: when each request is meant to be sent, whatever happened to the ones
before (no Locust here: the dispatcher in lab/load/open_user.py follows it).

Several Locust processes share one schedule without sharing a phase: with constant arrivals, process
`lane` of `lanes` takes every `lanes`-th slot of the global evenly spaced schedule, starting at slot
`lane`, so the processes' arrivals interleave evenly (never a burst of one request per process at the
same instant). With Poisson arrivals each process is an independent Poisson process at rate/lanes; the
sum of independent Poisson processes is a Poisson process at the full rate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping

# When the target rate is 0 (a ramp starting from nothing), look again this much later.
IDLE_STEP_S = 0.01


class ArrivalSchedule:
    """Intended send times (unix seconds) of one process's share of the load.

    `rate_at(elapsed)` is the whole load's target rate (requests/s) at `elapsed` seconds after `start`,
    None once the load is over.
    """

    def __init__(
        self,
        rate_at: Callable[[float], float | None],
        start: float,
        *,
        lane: int = 0,
        lanes: int = 1,
        poisson: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= lane < lanes:
            raise ValueError(f"lane {lane} is not one of {lanes} lanes")
        self.rate_at = rate_at
        self.start = start
        self.lanes = lanes
        self.poisson = poisson
        self.rng = rng or random.Random(lane)
        self.count = 0  # arrivals handed out
        self._elapsed = 0.0
        self._first_slot = lane  # constant: this lane's first slot, in global slots from the start
        self._anchor = 0.0  # constant: the arrival where the rate last changed, and that rate
        self._anchor_rate = 0.0
        self._steps = 0
        self._rate: float | None = rate_at(0.0)  # the rate at `_elapsed`

    def next(self) -> float | None:
        """The next intended send time, or None when the load is over."""
        elapsed = self._elapsed
        rate = self._rate
        while True:
            if rate is None:
                return None
            if rate > 0:
                break
            elapsed += IDLE_STEP_S
            rate = self.rate_at(elapsed)
        if self.poisson:
            elapsed += self.rng.expovariate(rate / self.lanes)
        elif self.count and rate == self._anchor_rate and elapsed == self._elapsed:  # (not after an idle)
            # the same rate: a multiple of the step from the last change, not a running sum (whose
            # rounding would add up: 210 steps of 1/30 s would end just before 7 s)
            self._steps += 1
            elapsed = self._anchor + self._steps * self.lanes / rate
        else:  # the first arrival, or the rate changed: a new anchor
            elapsed += (self._first_slot if self.count == 0 else self.lanes) / rate
            self._anchor, self._anchor_rate, self._steps = elapsed, rate, 0
        elapsed = round(elapsed, 9)
        self._rate = self.rate_at(elapsed)  # also the next arrival's starting rate
        if self._rate is None:
            return None
        self._elapsed = elapsed
        self.count += 1
        return self.start + elapsed


def assign_lanes(processes: Iterable[str]) -> dict[str, int]:
    """A lane for each process sharing the schedule (by its id), fixed when the load starts."""
    return {process: lane for lane, process in enumerate(sorted(processes))}


def lane_of(lanes: Mapping[str, int], process: str | None) -> tuple[int, int] | None:
    """(lane, number of lanes) of `process`: the whole schedule when it is not shared (no lanes, or no
    process id: Locust's local runner); None for a process that joined after the lanes were assigned
    (its arrivals would double another lane's)."""
    if process is None or not lanes:
        return 0, 1
    lane = lanes.get(process)
    return None if lane is None else (lane, len(lanes))
