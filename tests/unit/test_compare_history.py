"""Change points over a scenario's history: E-Divisive means and `lab history`."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from lab.analysis.changepoints import best_split, e_divisive
from lab.analysis.cli import history_command
from lab.analysis.synthetic import LatencyShift, SyntheticRun, write_run


def brute_force_q(z: np.ndarray, min_size: int) -> tuple[int, float]:
    best = (0, -np.inf)
    for tau, kappa in itertools.product(range(min_size, z.size + 1), repeat=2):
        x, y = z[:tau], z[tau:kappa]
        if x.size < min_size or y.size < min_size:
            continue
        between = np.abs(x[:, None] - y[None, :]).sum()
        within_x = np.abs(x[:, None] - x[None, :]).sum() / 2
        within_y = np.abs(y[:, None] - y[None, :]).sum() / 2
        n, m = x.size, y.size
        energy = 2 * between / (n * m) - 2 * within_x / (n * (n - 1)) - 2 * within_y / (m * (m - 1))
        q = n * m / (n + m) * energy
        if q > best[1]:
            best = (tau, q)
    return best


@pytest.mark.parametrize("n", [6, 11, 24])
def test_best_split_matches_the_definition(n: int) -> None:
    z = np.random.default_rng(n).normal(size=n)
    z[n // 2 :] += 1.5
    tau, q = best_split(z, min_size=3)
    expected_tau, expected_q = brute_force_q(z, 3)
    assert tau == expected_tau and q == pytest.approx(expected_q)


def test_steps_are_found_at_their_planted_indices() -> None:
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(10, 1, 30), rng.normal(14, 1, 25), rng.normal(11, 1, 30)])
    assert [c.index for c in e_divisive(z, seed=0)] == [30, 55]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_has_no_change_points(seed: int) -> None:
    z = np.random.default_rng(100 + seed).normal(10, 1, 60)
    assert e_divisive(z, seed=seed) == []


def test_a_slow_drift_is_caught() -> None:
    z = np.linspace(10, 13, 60) + np.random.default_rng(4).normal(0, 0.3, 60)
    assert e_divisive(z, seed=0)


def test_too_short_a_series_has_no_change_points() -> None:
    assert e_divisive(np.array([1.0, 2.0, 50.0, 51.0, 52.0]), min_size=3) == []


def write_history(root: Path, runs: int, slow_from: int) -> None:
    for index in range(runs):
        shifts = [LatencyShift(factor=1.5)] if index >= slow_from else []
        plan = SyntheticRun(
            duration_s=20, rps=50, seed=index, start_unix=1_700_000_000 + index * 86_400, shifts=shifts
        )
        write_run(plan, root / f"night-{index:02d}")


def test_history_dates_a_latency_step_and_fails_on_request(tmp_path: Path) -> None:
    write_history(tmp_path, runs=12, slow_from=7)
    runner = CliRunner(env={"COLUMNS": "250"})
    args = [str(tmp_path), "--json", str(tmp_path / "history.json"), "--permutations", "99"]
    result = runner.invoke(history_command, args)
    assert result.exit_code == 0, result.output
    history = orjson.loads((tmp_path / "history.json").read_bytes())
    changes = history["metrics"]["p50_ms"]["change_points"]
    assert [(c["run_id"], c["direction"]) for c in changes] == [("night-07", "worse")]
    assert changes[0]["date"] == "2023-11-21T22:13:20+00:00"
    assert changes[0]["change"] == pytest.approx(0.5, abs=0.1)
    assert history["metrics"]["success_rate"]["change_points"] == []
    assert "night-07" in result.output
    failing = runner.invoke(history_command, [*args, "--fail-on-regression"])
    assert failing.exit_code == 1


def test_history_needs_a_scenario_when_several_are_present(tmp_path: Path) -> None:
    write_run(SyntheticRun(duration_s=5, rps=10, scenario="a"), tmp_path / "r1")
    write_run(SyntheticRun(duration_s=5, rps=10, scenario="b"), tmp_path / "r2")
    result = CliRunner(env={"COLUMNS": "250"}).invoke(history_command, [str(tmp_path)])
    assert result.exit_code == 2 and "a, b" in result.output
    result = CliRunner(env={"COLUMNS": "250"}).invoke(history_command, [str(tmp_path), "--scenario", "b"])
    assert result.exit_code == 0 and "1 runs" in result.output


def test_history_reads_the_nightly_summary_files(tmp_path: Path) -> None:
    from lab.analysis.baseline import run_summary

    write_history(tmp_path / "runs", runs=12, slow_from=7)
    kept = tmp_path / "kept"
    kept.mkdir()
    for run_dir in sorted((tmp_path / "runs").iterdir()):  # what the nightly keeps: summaries only
        (kept / f"{run_dir.name}.json").write_bytes(orjson.dumps(run_summary(run_dir)))
    (kept / "notes.json").write_text("{}")  # not a summary: ignored
    out = tmp_path / "history.json"
    args = [str(kept), "--json", str(out), "--permutations", "99", "--fail-on-regression"]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(history_command, args)
    assert result.exit_code == 1, result.output
    changes = orjson.loads(out.read_bytes())["metrics"]["p50_ms"]["change_points"]
    assert [c["run_id"] for c in changes] == ["night-07"]
