"""Regression checks: the two-sample statistics, `lab compare` verdicts and exit codes, baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from lab.analysis import twosample
from lab.analysis.baseline import run_side
from lab.analysis.cli import baseline_command, compare_command
from lab.analysis.compare import CompareSettings, judge
from lab.analysis.compare import compare as compare_runs
from lab.analysis.synthetic import ErrorBurst, Fault, LatencyShift, SyntheticRun, write_run


def run(tmp_path: Path, name: str, seed: int, **changes: object) -> Path:
    plan = SyntheticRun(
        duration_s=120, rps=100, seed=seed, faults=[Fault("f", 40, 60)], bursts=[ErrorBurst(40, 43)]
    )
    for key, value in changes.items():
        setattr(plan, key, value)
    return write_run(plan, tmp_path / name)


def compare(baseline: Path | str, current: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(compare_command, [str(baseline), str(current), *args])
    report = current / "compare.json"
    return result.exit_code, orjson.loads(
        report.read_bytes()
    ) if report.exists() and result.exit_code != 2 else {"output": result.output}


def compare_api(baseline: Path, current: Path) -> dict:
    """The comparison without writing reports (faster than the command for the many-seed tests)."""
    settings = CompareSettings()
    return compare_runs(run_side(baseline, settings), run_side(current, settings), settings)


def verdicts(result: dict) -> dict[str, str]:
    return {m["name"]: m["verdict"] for m in result["metrics"]}


# --- statistics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 6), (9, 7), (60, 45)])
def test_kth_smallest_difference_matches_brute_force_with_ties(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    x = np.round(rng.lognormal(3, 0.5, n), 1)  # rounding makes ties
    y = np.round(rng.lognormal(3.1, 0.5, m), 1)
    differences = np.sort((y[:, None] - x[None, :]).ravel())
    for k in sorted(
        {1, 2, differences.size // 2, differences.size // 2 + 1, differences.size}
        & set(range(1, differences.size + 1))
    ):
        value = twosample.kth_smallest_difference(np.sort(x), np.sort(y), k)
        assert value == pytest.approx(differences[k - 1], abs=1e-9)


def test_kth_smallest_difference_bisection_path_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(twosample, "_ENUMERATE_AT_MOST", 5)  # force the value bisection on small inputs
    rng = np.random.default_rng(5)
    x, y = np.sort(rng.normal(size=300)), np.sort(rng.normal(0.2, size=250))
    differences = np.sort((y[:, None] - x[None, :]).ravel())
    for k in (1, 17, 37_500, 74_999, 75_000):
        assert twosample.kth_smallest_difference(x, y, k) == pytest.approx(differences[k - 1], abs=1e-9)


def test_hodges_lehmann_interval_covers_the_true_shift_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(300):
        shift = twosample.hodges_lehmann(rng.normal(size=25), rng.normal(0.7, size=30))
        covered += shift.low <= 0.7 <= shift.high
    assert 0.92 <= covered / 300 <= 0.985


def test_exact_quantile_bootstrap_matches_resampling() -> None:
    rng = np.random.default_rng(2)
    sample = np.sort(rng.lognormal(3, 0.6, 2_000))
    exact = twosample.bootstrap_nearest_rank(sample, 0.95, 4_000, np.random.default_rng(0))
    resampled = [
        twosample.nearest_rank(np.sort(sample[rng.integers(0, sample.size, sample.size)]), 0.95)
        for _ in range(1_000)
    ]
    assert np.percentile(exact, [5, 50, 95]) == pytest.approx(np.percentile(resampled, [5, 50, 95]), rel=0.02)


def test_judge_needs_both_an_interval_clear_of_zero_and_a_shift_beyond_tolerance() -> None:
    assert judge(5.0, 3.0, 7.0, tolerance=1.0, higher_is_worse=True) == "regression"
    assert judge(5.0, -1.0, 7.0, tolerance=1.0, higher_is_worse=True) == "no_change"  # not significant
    assert judge(0.5, 0.2, 0.8, tolerance=1.0, higher_is_worse=True) == "no_change"  # significant, negligible
    assert judge(-5.0, -7.0, -3.0, tolerance=1.0, higher_is_worse=True) == "improvement"
    assert judge(-0.02, -0.03, -0.01, tolerance=0.001, higher_is_worse=False) == "regression"


# --- lab compare -----------------------------------------------------------------------------------


def test_a_planted_latency_shift_is_a_regression(tmp_path: Path) -> None:
    baseline = run(tmp_path, "base", seed=1)
    current = run(tmp_path, "slow", seed=2, shifts=[LatencyShift(factor=1.2)])
    code, result = compare(baseline, current)
    assert code == 1
    assert result["verdict"] == "regression"
    found = verdicts(result)
    assert found["latency"] == found["p50_ms"] == found["p95_ms"] == "regression"
    latency = next(m for m in result["metrics"] if m["name"] == "latency")
    assert latency["ci"][0] > 0 and latency["p_value"] < 1e-6
    assert latency["relative"] == pytest.approx(0.2, abs=0.05)
    assert found["success_rate"] == found["recovery_s"] == "no_change"
    for name in ("compare.html", "compare.md", "compare-junit.xml"):
        assert (current / name).exists()
    assert "regression" in (current / "compare.md").read_text()


@pytest.mark.parametrize("seed", [3, 4, 5, 6, 7])
def test_pure_noise_is_no_change(tmp_path: Path, seed: int) -> None:
    result = compare_api(run(tmp_path, "a", seed=seed), run(tmp_path, "b", seed=seed + 100))
    assert result["verdict"] == "no_change"
    assert set(verdicts(result).values()) == {"no_change"}


def test_a_run_against_itself_is_no_change_with_zero_differences(tmp_path: Path) -> None:
    path = run(tmp_path, "a", seed=9, bursts=[ErrorBurst(40, 43), ErrorBurst(80, 81, error_rate=0.3)])
    result = compare_api(path, path)
    assert set(verdicts(result).values()) == {"no_change"}
    assert all(m["difference"] in (0, None) for m in result["metrics"]), result["metrics"]


def test_pure_noise_passes_the_command(tmp_path: Path) -> None:
    code, result = compare(run(tmp_path, "a", seed=8), run(tmp_path, "b", seed=108))
    assert code == 0 and result["verdict"] == "no_change"


def test_a_faster_run_is_an_improvement_and_passes(tmp_path: Path) -> None:
    code, result = compare(
        run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=2, shifts=[LatencyShift(factor=0.8)])
    )
    assert code == 0
    assert result["verdict"] == "improvement"


def test_a_small_shift_inside_the_tolerance_is_noise(tmp_path: Path) -> None:
    # +2 % is real (the rank test sees it with these samples) but below the 5 % tolerance.
    baseline = run(tmp_path, "a", seed=1, rps=500)
    current = run(tmp_path, "b", seed=2, rps=500, shifts=[LatencyShift(factor=1.02)])
    result = compare_api(baseline, current)
    assert result["verdict"] == "no_change"
    latency = next(m for m in result["metrics"] if m["name"] == "latency")
    assert latency["p_value"] < 0.05 and latency["verdict"] == "no_change"


def test_a_steady_rise_in_errors_is_a_success_rate_regression(tmp_path: Path) -> None:
    result = compare_api(run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=2, base_error_rate=0.02))
    assert verdicts(result)["success_rate"] == "regression"


def test_a_slower_recovery_is_a_regression(tmp_path: Path) -> None:
    code, result = compare(
        run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=1, bursts=[ErrorBurst(40, 50)])
    )
    assert code == 1
    recovery = next(m for m in result["metrics"] if m["name"] == "recovery_s")
    assert (recovery["baseline"], recovery["current"], recovery["verdict"]) == (3.0, 10.0, "regression")


def test_different_scenarios_are_bad_input(tmp_path: Path) -> None:
    code, result = compare(run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=2, scenario="other"))
    assert code == 2
    assert "different scenarios" in result["output"]


def test_comparison_written_to_a_chosen_directory(tmp_path: Path) -> None:
    baseline, current = run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=2)
    result = CliRunner().invoke(
        compare_command, [str(baseline), str(current), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "compare-junit.xml",
        "compare.html",
        "compare.json",
        "compare.md",
    ]


# --- baselines -------------------------------------------------------------------------------------


def test_baseline_is_stored_per_scenario_and_used_by_name(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    runner = CliRunner(env={"COLUMNS": "250"})
    first = run(tmp_path, "first", seed=1)
    result = runner.invoke(baseline_command, ["set", str(first), "--baselines", str(root)])
    assert result.exit_code == 0, result.output
    stored = root / "synthetic"
    assert sorted(p.name for p in stored.iterdir()) == [
        "baseline.json",
        "latencies.npy",
        "per_second.npy",
        "summary.json",
    ]
    meta = orjson.loads((stored / "baseline.json").read_bytes())
    assert meta["run_id"] == "first" and meta["latency_sample"] > 0
    listing = runner.invoke(baseline_command, ["list", "--baselines", str(root)])
    assert "first" in listing.output

    slow = run(tmp_path, "slow", seed=2, shifts=[LatencyShift(factor=1.3)])
    code, result = compare("synthetic", slow, "--baselines", str(root))
    assert code == 1 and result["baseline"]["run_id"] == "first"
    code, result = compare(stored, run(tmp_path, "same", seed=3))
    assert code == 0


def test_a_latency_sample_is_capped_and_reproducible(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    path = run(tmp_path, "big", seed=1)
    runner = CliRunner()
    for _ in range(2):
        assert (
            runner.invoke(
                baseline_command, ["set", str(path), "--baselines", str(root), "--max-sample", "500"]
            ).exit_code
            == 0
        )
        sample = np.load(root / "synthetic" / "latencies.npy")
        assert sample.size == 500 and np.all(np.diff(sample) >= 0)
    meta = orjson.loads((root / "synthetic" / "baseline.json").read_bytes())
    assert meta["latency_population"] == 12_000 - 300


def test_an_unknown_baseline_is_bad_input(tmp_path: Path) -> None:
    code, result = compare(
        "no-such-scenario", run(tmp_path, "a", seed=1), "--baselines", str(tmp_path / "none")
    )
    assert code == 2 and "no-such-scenario" in result["output"]


def test_a_current_run_without_requests_is_bad_input_not_a_pass(tmp_path: Path) -> None:
    empty = write_run(SyntheticRun(duration_s=10, rps=0), tmp_path / "empty")
    code, result = compare(run(tmp_path, "a", seed=1), empty)
    assert code == 2 and "recorded no requests" in result["output"]


def test_a_current_run_with_only_failures_is_a_regression(tmp_path: Path) -> None:
    code, result = compare(
        run(tmp_path, "a", seed=1), run(tmp_path, "b", seed=2, bursts=[ErrorBurst(0, 120)])
    )
    assert code == 1
    assert verdicts(result) == {
        "latency": "no_data",
        "success_rate": "regression",
        "recovery_s": "regression",
    }
