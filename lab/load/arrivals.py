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
from collections.abc import Callable

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

    def next(self) -> float | None:
        """The next intended send time, or None when the load is over."""
        elapsed = self._elapsed
        while True:
            rate = self.rate_at(elapsed)
            if rate is None:
                return None
            if rate > 0:
                break
            elapsed += IDLE_STEP_S
        if self.poisson:
            elapsed += self.rng.expovariate(rate / self.lanes)
        elif self.count == 0:
            elapsed += self._first_slot / rate
        else:
            elapsed += self.lanes / rate
        elapsed = round(elapsed, 9)  # 400 steps of 0.01 s end at 4 s, not just before it
        if self.rate_at(elapsed) is None:
            return None
        self._elapsed = elapsed
        self.count += 1
        return self.start + elapsed
