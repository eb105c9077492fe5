"""The open model's parts that need no Locust: the arrival schedule, the rate over a shape, the load
section's rules and the record's intended/actual send times."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lab.load.arrivals import ArrivalSchedule, assign_lanes, lane_of
from lab.load.recorder import Recorder
from lab.load.settings import settings_from_env
from lab.load.shape import rate_at
from lab.record import read_table
from lab.scenario.models import LoadSpec


def drain(schedule: ArrivalSchedule) -> np.ndarray:
    times = []
    while (t := schedule.next()) is not None:
        times.append(t)
    return np.array(times)


def test_constant_arrivals_are_evenly_spaced_and_end_with_the_load() -> None:
    times = drain(ArrivalSchedule(lambda e: 100.0 if e < 2 else None, 1000.0))
    assert len(times) == 200
    assert times[0] == 1000.0
    assert np.allclose(np.diff(times), 0.01)
    for rate, seconds in ((100.0, 4.0), (30.0, 7.0), (1000.0, 10.0)):  # no extra arrival from rounding
        bound = drain(ArrivalSchedule(lambda e, r=rate, s=seconds: r if e < s else None, 0.0))
        assert len(bound) == rate * seconds


def test_processes_interleave_their_shares_without_sharing_a_phase() -> None:
    lanes = [
        drain(ArrivalSchedule(lambda e: 300.0 if e < 1 else None, 0.0, lane=i, lanes=3)) for i in range(3)
    ]
    merged = np.sort(np.concatenate(lanes))
    assert len(merged) == 300
    assert np.allclose(np.diff(merged), 1 / 300)  # one global even schedule, no burst of three
    assert not set(np.round(lanes[0], 9)) & set(np.round(lanes[1], 9))
    with pytest.raises(ValueError, match="lane 3"):
        ArrivalSchedule(lambda e: 1.0, 0.0, lane=3, lanes=3)


def test_lanes_go_to_the_processes_there_at_the_start_and_a_late_one_gets_none() -> None:
    lanes = assign_lanes(["worker-b", "worker-a", "worker-c"])
    assert sorted(lanes.values()) == [0, 1, 2]
    assert lane_of(lanes, "worker-a") == (0, 3)
    assert lane_of(lanes, "worker-c") == (2, 3)
    # a worker that connected (or reconnected, with a new id) after the start would double a lane's rate
    assert lane_of(lanes, "worker-late") is None
    # Locust's local runner (no client id), or no shared plan: the whole schedule
    assert lane_of(lanes, None) == (0, 1)
    assert lane_of({}, "worker-a") == (0, 1)
    # the lanes found, the schedules together are the whole load's, whatever the ids were
    together = np.sort(
        np.concatenate(
            [
                drain(ArrivalSchedule(lambda e: 30.0 if e < 1 else None, 0.0, lane=lane, lanes=count))
                for lane, count in (lane_of(lanes, w) or (0, 0) for w in ("worker-a", "worker-b", "worker-c"))
            ]
        )
    )
    assert len(together) == 30 and np.allclose(np.diff(together), 1 / 30)


def test_poisson_arrivals_keep_the_rate_with_exponential_gaps() -> None:
    rate, seconds = 1000.0, 20.0
    times = drain(
        ArrivalSchedule(lambda e: rate if e < seconds else None, 0.0, poisson=True, rng=random.Random(7))
    )
    assert len(times) / seconds == pytest.approx(rate, rel=0.03)
    gaps = np.diff(times)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV 1 (constant: 0)


def test_a_ramp_from_nothing_follows_the_rate() -> None:
    load = LoadSpec(rate=100, users=10, duration=10, shape={"type": "ramp", "start_users": 0, "over": 10})
    assert rate_at(load, 0) == 0 and rate_at(load, 5) == 50 and rate_at(load, 10) is None
    times = drain(ArrivalSchedule(lambda e: rate_at(load, e), 0.0))
    assert len(times) == pytest.approx(500, rel=0.03)  # the area under the ramp
    first, second = np.count_nonzero(times < 5), np.count_nonzero(times >= 5)
    assert second == pytest.approx(3 * first, rel=0.1)


def test_spike_and_step_shapes_scale_the_rate() -> None:
    spike = LoadSpec(rate=50, users=10, shape={"type": "spike", "at": 5, "hold": 5, "peak_users": 30})
    assert [rate_at(spike, t) for t in (1, 6, 11)] == [50, 150, 50]
    step = LoadSpec(rate=40, users=4, shape={"type": "step", "step_users": 1, "every": 10})
    assert [rate_at(step, t) for t in (1, 11, 35)] == [10, 20, 40]


def test_the_open_model_is_the_default_at_the_users_rate() -> None:
    load = LoadSpec(users=10, rate_per_user=5)
    assert load.model == "open" and load.target_rate == 50 and load.max_in_flight == 1000
    assert LoadSpec(rate=120).target_rate == 120
    assert LoadSpec(model="closed").target_rate is None
    with pytest.raises(ValidationError, match="needs a rate"):
        LoadSpec(rate_per_user=None)
    assert LoadSpec(model="closed", rate_per_user=None).rate_per_user is None


def test_settings_set_the_open_model_from_the_environment() -> None:
    load = settings_from_env(
        {"LAB_LOAD_RATE": "250", "LAB_LOAD_MAX_IN_FLIGHT": "64", "LAB_LOAD_ARRIVALS": "poisson"}
    ).load
    assert (load.rate, load.max_in_flight, load.arrivals) == (250, 64, "poisson")
    assert settings_from_env({"LAB_LOAD_MODEL": "closed"}).load.model == "closed"


def test_rows_carry_intended_and_actual_send_times_and_both_latencies(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, flush_interval=3600)
    entry = {"method": "eth_call", "ok": True, "error_class": None, "rpc_code": None}
    # sent 2 s behind schedule (the gateway was paused), answered 3 s after the actual send
    recorder.on_request(
        "POST", "eth_call", 3000.0, 10, None,
        {"entries": [entry], "client": "w/c1", "intended_ts": 1_700_000_000.0},
        start_time=1_700_000_002.0,
    )  # fmt: skip
    # the closed model: sent when meant
    recorder.on_request("POST", "eth_call", 5.0, 10, None, {"entries": [entry]}, start_time=1_700_000_003.0)
    # refused by the in-flight cap 1 ms after its intended time
    recorder.on_request(
        "POST", "eth_call", None, 0, RuntimeError("cap"),
        {"entries": [{"method": "eth_call", "ok": False, "error_class": "not_sent"}], "client": "w/c2",
         "intended_ts": 1_700_000_004.0},
        start_time=1_700_000_004.001,
    )  # fmt: skip
    recorder.close()
    rows = read_table(tmp_path, "requests")
    lag = (rows["ts"] - rows["intended_ts"]).dt.total_seconds().tolist()
    assert lag == pytest.approx([2.0, 0.0, 0.001])
    assert rows["latency_ms"].tolist()[:2] == [3000.0, 5.0] and np.isnan(rows["latency_ms"][2])
    assert rows["response_ms"].tolist() == pytest.approx([5000.0, 5.0, 1.0], abs=1e-3)
    assert rows["client"].fillna("-").tolist() == ["w/c1", "-", "w/c2"]
    assert rows["error_class"].tolist()[2] == "not_sent" and not rows["ok"][2]
