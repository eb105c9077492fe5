"""How many users a load shape wants at each moment (Locust's LoadTestShape calls this every second)."""

from __future__ import annotations

from lab.scenario.models import LoadSpec, RampShape, SpikeShape, StepShape


def users_at(load: LoadSpec, elapsed: float) -> tuple[int, float] | None:
    """(HTTP users, spawn rate) at `elapsed` seconds into the run; None once the run is over.

    WebSocket subscribers come on top (Locust's fixed_count users), so callers add them.
    """
    if elapsed >= load.duration:
        return None
    shape = load.shape
    if isinstance(shape, RampShape):
        over = shape.over or load.duration
        fraction = min(1.0, elapsed / over)
        return round(shape.start_users + (load.users - shape.start_users) * fraction), load.spawn_rate
    if isinstance(shape, SpikeShape):
        spike_rate = shape.spawn_rate or float(shape.peak_users)
        if elapsed < shape.at:
            return load.users, load.spawn_rate
        if elapsed < shape.at + shape.hold:
            return shape.peak_users, spike_rate
        return load.users, spike_rate
    if isinstance(shape, StepShape):
        steps = 1 + int(elapsed // shape.every)
        return min(load.users, steps * shape.step_users), load.spawn_rate
    return load.users, load.spawn_rate


def rate_at(load: LoadSpec, elapsed: float) -> float | None:
    """The open model's target requests per second at `elapsed` seconds into the run (None once it is
    over): the scenario's rate, scaled by the shape as the shape scales the users (a ramp from 0 users
    ramps the rate from 0, a spike to 3× the users triples it)."""
    wanted = users_at(load, elapsed)
    rate = load.target_rate
    if wanted is None or rate is None:
        return None
    return rate * wanted[0] / load.users
