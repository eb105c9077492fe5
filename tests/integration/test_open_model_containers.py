"""The open model measures a stall by every request that should have gone out during it; the closed model
sends fewer requests exactly while the gateway stalls (coordinated omission). Same lab, same 100 req/s,
the gateway frozen with `docker pause` for 5 s, each model in its own test (the open one records
~500 requests meant for the pause, the closed one about ten)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.record import iter_events, read_table

pytestmark = [pytest.mark.integration, pytest.mark.containers]

RATE = 100  # requests per second, both models
PAUSE_S = 5.0

SCENARIO = """
name: pause-{model}
seed: 5
topology:
  providers: [{{id: p1}}]
load:
  model: {model}
  users: 10
  rate_per_user: 10
  duration: 12s
  timeout: 10s
faults:
  - id: freeze
    start: 3s
    duration: {pause}s
    target: gateway
    action: {{type: pause}}
"""


def run_paused(model: str, tmp_path: Path) -> tuple[Any, float, float]:
    """The requests of a run whose gateway is paused, and the pause's start and end (unix s)."""
    scenario = tmp_path / f"pause-{model}.yml"
    scenario.write_text(SCENARIO.format(model=model, pause=PAUSE_S))
    out = tmp_path / model
    result = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(scenario), "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = list(out.iterdir())
    # The pause's window as it took effect (a start's `ts` is when it was issued, before `docker pause`
    # returned; an end's is when the unpause had taken effect).
    events = {
        e["event"]: e["effective_ts"]
        for e in iter_events(run_dir, "faults")
        if e["fault_id"].startswith("freeze")
    }
    return read_table(run_dir, "requests"), float(events["start"]), float(events["end"])


def in_pause(requests: Any, start: float, end: float) -> np.ndarray:
    intended = requests["intended_ts"].astype("int64").to_numpy() / 1e6
    return np.asarray((intended >= start) & (intended < end))


def test_open_model_a_paused_gateway_is_measured_by_every_request_meant_for_the_pause(
    lab_images: Any, tmp_path: Path
) -> None:
    requests, start, end = run_paused("open", tmp_path)
    during = in_pause(requests, start, end)
    expected = RATE * (end - start)
    assert abs(int(during.sum()) - expected) <= 0.05 * expected, (int(during.sum()), expected)
    # Each waited at least for the rest of the pause (a little slack: the recorded end is when the
    # unpause returned).
    intended = requests["intended_ts"].astype("int64").to_numpy()[during] / 1e6
    rest_ms = (end - intended) * 1000
    response = requests["response_ms"].to_numpy()[during]
    assert np.all(response >= rest_ms - 100), np.min(response - rest_ms)
    assert (requests["error_class"] == "not_sent").sum() == 0


def test_closed_model_shows_the_omission(lab_images: Any, tmp_path: Path) -> None:
    requests, start, end = run_paused("closed", tmp_path)
    during = int(in_pause(requests, start, end).sum())
    # The closed model's 10 users each sent one request into the pause and waited: the stall is sampled
    # by about 10 requests, not by the ~500 that clients arriving at 100 req/s would have sent (the open
    # model's test above).
    assert during <= 0.06 * RATE * (end - start), during
