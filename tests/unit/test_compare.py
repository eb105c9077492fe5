"""Regression checks: the two-sample statistics, `lab compare` verdicts and exit codes, baselines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from lab.analysis import twosample
from lab.analysis.baseline import figures, run_summary
from lab.analysis.cli import baseline_command, compare_command
from lab.analysis.compare import CompareSettings, Side, noise
from lab.analysis.compare import compare as compare_runs
from lab.analysis.synthetic import (
    ErrorBurst,
    Fault,
    HeadsPlan,
    LatencyShift,
    SyntheticRun,
    repeats,
    write_run,
)

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


# --- lab compare: the run is the unit ---------------------------------------------------------------

# A short scenario: one fault with a 2 s error burst, two subscribers. Repeats differ as real runs do
# (RunToRun: median latency ±8 % between runs, base error rate and burst length jitter).
PLAN = SyntheticRun(
    duration_s=60, rps=30, faults=[Fault("f", 20, 30)], bursts=[ErrorBurst(20, 22)], heads=HeadsPlan()
)
PLANTED = {
    "success_rate": {"base_error_rate": 0.01},  # −1 pp
    "p95_ms": {"shifts": [LatencyShift(factor=1.25)]},  # +25 %
    "recovery_s[f]": {"bursts": [ErrorBurst(20, 27)]},  # the fault's recovery +5 s
    "max_gap": {"heads": HeadsPlan(missing=[(0, 1030, 1032)])},  # a new subscription gap
}


def write_repeats(directory: Path, plan: SyntheticRun, runs: int, seed: int) -> Path:
    for index, repeat in enumerate(repeats(plan, runs, seed)):
        write_run(repeat, directory / f"run-{seed}-{index:02d}")
    return directory


def side(directory: Path) -> Side:
    runs = [figures(run_summary(p), p) for p in sorted(directory.iterdir())]
    return Side(source=directory, scenario="synthetic", runs=runs)


def changed(plan: SyntheticRun, **changes: object) -> SyntheticRun:
    return replace(plan, **changes)  # type: ignore[arg-type]


def verdicts(result: dict) -> dict[str, str]:
    return {m["name"]: m["verdict"] for m in result["metrics"]}


def compare(baseline: Path | str, current: Path, *args: str) -> tuple[int, dict, str]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(compare_command, [str(baseline), str(current), *args])
    report = current / "compare.json"
    data = orjson.loads(report.read_bytes()) if report.exists() and result.exit_code != 2 else {}
    return result.exit_code, data, result.output


def test_noise_is_the_pooled_standard_deviation_between_runs() -> None:
    sd, df = noise([np.array([1.0, 3.0]), np.array([10.0, 12.0, 14.0]), np.array([7.0])])
    assert df == 1 + 2  # a single run says nothing about the spread
    assert sd == pytest.approx(np.sqrt((1 + 1 + 4 + 0 + 4) / 3))
    assert noise([np.array([1.0]), np.array([2.0])]) == (pytest.approx(np.nan, nan_ok=True), 0)


def test_aa_pairs_of_repeated_runs_raise_at_most_one_false_alarm(tmp_path: Path) -> None:
    alarms = []
    for pair in range(12):
        base = side(write_repeats(tmp_path / f"a{pair}", PLAN, 5, seed=100 + pair))
        cur = side(write_repeats(tmp_path / f"b{pair}", PLAN, 5, seed=200 + pair))
        result = compare_runs(base, cur, CompareSettings())
        alarms += [pair] if result["verdict"] == "regression" else []
    assert len(alarms) <= 1, alarms


def test_aa_runs_against_the_nightly_history_raise_at_most_one_false_alarm(tmp_path: Path) -> None:
    history = side(write_repeats(tmp_path / "history", PLAN, 10, seed=300))
    alarms = []
    for night in range(12):
        current = side(write_repeats(tmp_path / f"night{night}", PLAN, 1, seed=400 + night))
        result = compare_runs(history, current, CompareSettings())
        alarms += [night] if result["verdict"] == "regression" else []
    assert len(alarms) <= 1, alarms  # a night whose comparison says "regression" is one false alarm


@pytest.mark.parametrize("metric", list(PLANTED))
def test_a_planted_regression_is_flagged_with_five_repeats_a_side(tmp_path: Path, metric: str) -> None:
    base = side(write_repeats(tmp_path / "a", PLAN, 5, seed=11))
    cur = side(write_repeats(tmp_path / "b", changed(PLAN, **PLANTED[metric]), 5, seed=12))
    result = compare_runs(base, cur, CompareSettings())
    assert verdicts(result)[metric] == "regression", result["metrics"]
    assert result["verdict"] == "regression"


@pytest.mark.parametrize("metric", ["success_rate", "recovery_s[f]", "max_gap"])
def test_a_planted_regression_is_flagged_in_one_night_against_the_history(
    tmp_path: Path, metric: str
) -> None:
    history = side(write_repeats(tmp_path / "history", PLAN, 10, seed=300))
    night = side(write_repeats(tmp_path / "night", changed(PLAN, **PLANTED[metric]), 1, seed=13))
    assert verdicts(compare_runs(history, night, CompareSettings()))[metric] == "regression"


def test_one_run_a_side_and_no_history_is_a_weak_verdict_not_a_regression(tmp_path: Path) -> None:
    base = write_run(PLAN, tmp_path / "a")
    slow = write_run(changed(PLAN, seed=2, shifts=[LatencyShift(factor=1.5)]), tmp_path / "b")
    code, result, output = compare(base, slow)
    assert code == 0
    assert result["verdict"] == "weak"
    assert verdicts(result)["p95_ms"] == "weak" and result["metrics"][1]["margin"] is None
    assert "WEAK VERDICT" in output and "noise between runs is unknown" in output
    assert "WEAK" in (slow / "compare.md").read_text()


def test_a_weaker_configuration_is_told_from_a_stronger_one_on_success_and_recovery(tmp_path: Path) -> None:
    # The weaker gateway fails longer after each fault and drops more requests in steady state.
    strong = write_repeats(tmp_path / "strong", PLAN, 3, seed=21)
    weak_plan = changed(PLAN, bursts=[ErrorBurst(20, 30)], base_error_rate=0.02)
    weak = write_repeats(tmp_path / "weak", weak_plan, 3, seed=22)
    code, result, _ = compare(strong, weak)
    assert code == 1 and result["verdict"] == "regression"
    found = verdicts(result)
    assert found["success_rate"] == found["recovery_s[f]"] == "regression"
    code, result, _ = compare(weak, strong, "--out", str(tmp_path / "reverse"))
    assert code == 0
    reverse = orjson.loads((tmp_path / "reverse" / "compare.json").read_bytes())
    assert reverse["verdict"] == "improvement"


def test_a_directory_of_repeats_compares_and_writes_every_file(tmp_path: Path) -> None:
    base = write_repeats(tmp_path / "a", PLAN, 4, seed=31)
    cur = write_repeats(tmp_path / "b", changed(PLAN, shifts=[LatencyShift(factor=1.4)]), 4, seed=32)
    code, result, output = compare(base, cur)
    assert code == 1 and verdicts(result)["p50_ms"] == "regression", output
    assert result["baseline"]["runs"] == result["current"]["runs"] == 4
    assert sorted(p.name for p in cur.iterdir() if p.is_file()) == [
        "compare-junit.xml",
        "compare.html",
        "compare.json",
        "compare.md",
    ]
    assert "<failure" in (cur / "compare-junit.xml").read_text()


def test_the_nightly_history_of_summary_files_is_a_baseline(tmp_path: Path) -> None:
    runs = write_repeats(tmp_path / "runs", PLAN, 8, seed=41)
    history = tmp_path / "history"
    history.mkdir()
    for run_dir in runs.iterdir():
        (history / f"{run_dir.name}.json").write_bytes(orjson.dumps(run_summary(run_dir)))
    night = write_repeats(tmp_path / "night", changed(PLAN, base_error_rate=0.02), 1, seed=42)
    code, result, _ = compare(history, next(night.iterdir()))
    assert code == 1 and verdicts(result)["success_rate"] == "regression"
    assert result["baseline"]["runs"] == 8
    code, result, _ = compare(history, next(night.iterdir()), "--last", "1")
    assert code == 0 and result["verdict"] == "weak"  # one night of history: no noise estimate


def test_the_scenario_sets_the_tolerance_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    lenient = changed(PLAN, regression={"p50": 0.5, "p95": 0.5, "p99": 0.5})
    base = write_repeats(tmp_path / "a", lenient, 5, seed=51)
    cur = write_repeats(tmp_path / "b", changed(lenient, shifts=[LatencyShift(factor=1.3)]), 5, seed=52)
    code, result, _ = compare(base, cur)
    assert code == 0 and verdicts(result)["p95_ms"] == "no_change"
    assert result["tolerances"]["p95"] == 0.5
    code, result, _ = compare(base, cur, "--tolerance", "p95=0.1")
    assert code == 1 and verdicts(result)["p95_ms"] == "regression"
    code, _, output = compare(base, cur, "--tolerance", "p95=lots")
    assert code == 2 and "--tolerance p95" in output


def test_different_scenarios_are_bad_input(tmp_path: Path) -> None:
    base = write_run(PLAN, tmp_path / "a")
    code, _, output = compare(base, write_run(changed(PLAN, scenario="other"), tmp_path / "b"))
    assert code == 2 and "no runs of scenario 'other'" not in output and "different scenarios" in output


def test_an_unknown_baseline_is_bad_input(tmp_path: Path) -> None:
    code, _, output = compare(
        "no-such-scenario", write_run(PLAN, tmp_path / "a"), "--baselines", str(tmp_path / "none")
    )
    assert code == 2 and "no-such-scenario" in output


def test_a_current_run_without_requests_is_bad_input_not_a_pass(tmp_path: Path) -> None:
    empty = write_run(SyntheticRun(duration_s=10, rps=0), tmp_path / "empty")
    code, _, output = compare(write_run(PLAN, tmp_path / "a"), empty)
    assert code == 2 and "recorded no requests" in output


def test_a_current_side_with_only_failures_is_a_regression(tmp_path: Path) -> None:
    base = write_repeats(tmp_path / "a", PLAN, 3, seed=61)
    cur = write_repeats(tmp_path / "b", changed(PLAN, bursts=[ErrorBurst(0, 60)]), 3, seed=62)
    code, result, _ = compare(base, cur)
    assert code == 1
    found = verdicts(result)
    assert found["p50_ms"] == "no_data" and found["success_rate"] == "regression"


# --- baselines -------------------------------------------------------------------------------------


def test_a_baseline_of_several_runs_is_stored_per_scenario_and_used_by_name(tmp_path: Path) -> None:
    root = tmp_path / "baselines"
    runner = CliRunner(env={"COLUMNS": "250"})
    runs = sorted(write_repeats(tmp_path / "base", PLAN, 4, seed=71).iterdir())
    result = runner.invoke(baseline_command, ["set", *map(str, runs), "--baselines", str(root)])
    assert result.exit_code == 0, result.output
    stored = root / "synthetic"
    assert sorted(p.name for p in stored.iterdir()) == ["baseline.json", "latencies.npy", "runs"]
    assert len(list((stored / "runs").iterdir())) == 4
    meta = orjson.loads((stored / "baseline.json").read_bytes())
    assert meta["run_ids"] == [p.name for p in runs]
    assert "run-71-00" in runner.invoke(baseline_command, ["list", "--baselines", str(root)]).output

    # 4 runs against 1: only a large change clears the noise margin (t(3) is wide)
    slow = write_repeats(tmp_path / "slow", changed(PLAN, shifts=[LatencyShift(factor=2.0)]), 1, seed=72)
    code, result, _ = compare("synthetic", next(slow.iterdir()), "--baselines", str(root))
    assert code == 1 and result["baseline"]["runs"] == 4
    same = write_repeats(tmp_path / "same", PLAN, 1, seed=73)
    code, result, _ = compare(str(stored), next(same.iterdir()))
    assert code == 0 and result["verdict"] in ("no_change", "improvement")


def test_a_baseline_of_runs_of_two_scenarios_is_refused(tmp_path: Path) -> None:
    a = write_run(PLAN, tmp_path / "a")
    b = write_run(changed(PLAN, scenario="other"), tmp_path / "b")
    result = CliRunner().invoke(
        baseline_command, ["set", str(a), str(b), "--baselines", str(tmp_path / "root")]
    )
    assert result.exit_code == 2 and "one scenario" in result.output
