"""The open model measures a stall by every request that should have gone out during it; the closed model
sends fewer requests exactly while the gateway stalls (coordinated omission). Same lab, same 100 req/s,
the gateway frozen with `docker pause` for 5 s, both models side by side."""

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
    events = {
        e["event"]: e["ts"] for e in iter_events(run_dir, "faults") if e["fault_id"].startswith("freeze")
    }
    return read_table(run_dir, "requests"), float(events["start"]), float(events["end"])


def test_a_paused_gateway_is_measured_by_every_request_meant_for_the_pause(
    lab_images: Any, tmp_path: Path
) -> None:
    requests, start, end = run_paused("open", tmp_path)
    intended = requests["intended_ts"].astype("int64").to_numpy() / 1e6
    during = (intended >= start) & (intended < end)
    expected = RATE * (end - start)
    assert abs(int(during.sum()) - expected) <= 0.05 * expected, (int(during.sum()), expected)
    # Each waited at least for the rest of the pause (a little slack: the recorded end is when the
    # unpause returned).
    rest_ms = (end - intended[during]) * 1000
    response = requests["response_ms"].to_numpy()[during]
    assert np.all(response >= rest_ms - 100), np.min(response - rest_ms)
    assert (requests["error_class"] == "not_sent").sum() == 0

    closed, c_start, c_end = run_paused("closed", tmp_path)
    c_intended = closed["intended_ts"].astype("int64").to_numpy() / 1e6
    c_during = int(((c_intended >= c_start) & (c_intended < c_end)).sum())
    # The closed model's 10 users each sent one request into the pause and waited: the stall is sampled
    # by a handful of requests, not by the ~500 that real clients at 100 req/s would have sent.
    assert c_during <= 30, c_during
    assert during.sum() >= 10 * c_during
