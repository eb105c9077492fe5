"""Soak checks on synthetic records: a flat run passes; a planted leak, fd growth or latency drift fails;
a record without the gateway's process metrics is not measurable (no_data), never a pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from lab.analysis.cli import report_command
from lab.analysis.synthetic import Fault, LatencyShift, ProcessPlan, SyntheticRun, write_run

SOAK_SLOS = {
    "memory_slope_mb_per_min": 1.0,
    "max_open_fds": 200,
    "open_fds_growth": 10,
    "latency_drift_p95": 1.5,
}
FAULTS = [Fault("kill-a", 60, 70), Fault("squeeze", 120, 150, target="gateway", action="memory")]


def run(tmp_path: Path, name: str, html: bool = False, **changes: object) -> tuple[int, dict, Path]:
    plan = SyntheticRun(duration_s=300, rps=20, slos=SOAK_SLOS, faults=FAULTS, process=ProcessPlan())
    for key, value in changes.items():
        setattr(plan, key, value)
    path = write_run(plan, tmp_path / name)
    result = CliRunner().invoke(report_command, [str(path), *([] if html else ["--no-html"])])
    summary = orjson.loads((path / "summary.json").read_bytes())
    return result.exit_code, summary, path


def checks(summary: dict) -> dict[str, dict]:
    return {c["name"]: c for c in summary["slo"]["checks"]}


def test_a_flat_record_passes_every_soak_check(tmp_path: Path) -> None:
    code, summary, path = run(tmp_path, "flat", html=True)
    assert code == 0, checks(summary)
    soak = summary["soak"]
    assert abs(soak["memory"]["slope_mb_per_min"]) < 0.2  # noise ±0.5 MB, no trend
    assert soak["open_fds"] == {
        "samples": 60, "max": 40.0, "first_third_median": 40.0, "last_third_median": 40.0, "growth": 0.0
    }  # fmt: skip
    assert soak["latency_drift"]["ratio_p95"] == pytest.approx(1.0, abs=0.1)
    assert {n: c["status"] for n, c in checks(summary).items() if n in SOAK_SLOS} == dict.fromkeys(
        SOAK_SLOS, "pass"
    )
    assert (
        "Soak" in (path / "summary.md").read_text() and "data:image/png" in (path / "report.html").read_text()
    )
    names = {case.get("name", "").split(":")[0] for case in ET.parse(path / "junit.xml").iter("testcase")}
    assert set(SOAK_SLOS) <= names


def test_a_planted_leak_fails_the_memory_slope_with_the_planted_rate(tmp_path: Path) -> None:
    code, summary, _ = run(tmp_path, "leak", process=ProcessPlan(memory_mb_per_min=3.0))
    memory = checks(summary)["memory_slope_mb_per_min"]
    assert code == 1 and memory["status"] == "fail"
    assert memory["actual"] == pytest.approx(3.0, abs=0.1)
    low, high = summary["soak"]["memory"]["slope_ci95"]
    assert low <= 3.0 <= high
    assert checks(summary)["open_fds_growth"]["status"] == "pass"


def test_one_memory_drop_does_not_hide_a_leak(tmp_path: Path) -> None:
    """Theil-Sen, not least squares: a restart-like step down is an outlier among the pairwise slopes."""
    plan = ProcessPlan(memory_mb=60, memory_mb_per_min=3.0, memory_noise_mb=0.0, restart_s=240)
    code, summary, _ = run(tmp_path, "drop", process=plan)
    t = np.arange(0, 300, 5.0)
    mb = 60 + 3.0 * np.where(t >= 240, t - 240, t) / 60
    least_squares = np.polyfit(t / 60, mb, 1)[0]
    assert least_squares < 2.0  # the drop drags an ordinary fit well below the leak
    assert summary["soak"]["memory"]["slope_mb_per_min"] == pytest.approx(3.0, abs=0.3)
    assert code == 1


def test_fd_growth_fails_growth_and_the_maximum(tmp_path: Path) -> None:
    code, summary, _ = run(tmp_path, "fds", process=ProcessPlan(fds=40, fds_per_min=40))
    fds = summary["soak"]["open_fds"]
    assert code == 1
    assert fds["max"] == 236.0  # the last sample, at 295 s
    assert fds["growth"] == pytest.approx(133, abs=2)  # 40/min over 200 s, median to median
    assert checks(summary)["open_fds_growth"]["status"] == "fail"
    assert checks(summary)["max_open_fds"]["status"] == "fail"
    assert checks(summary)["memory_slope_mb_per_min"]["status"] == "pass"


def test_latency_drift_in_the_last_third_fails(tmp_path: Path) -> None:
    code, summary, _ = run(tmp_path, "drift", shifts=[LatencyShift(start_s=200, factor=2.0)])
    drift = checks(summary)["latency_drift_p95"]
    assert code == 1 and drift["status"] == "fail"
    assert drift["actual"] == pytest.approx(2.0, rel=0.1)
    assert checks(summary)["memory_slope_mb_per_min"]["status"] == "pass"


def test_a_black_box_gateway_is_not_measurable_and_fails(tmp_path: Path) -> None:
    code, summary, path = run(tmp_path, "blackbox", process=None)
    found = checks(summary)
    assert code == 1
    for name in ("memory_slope_mb_per_min", "max_open_fds", "open_fds_growth"):
        assert found[name]["status"] == "no_data" and found[name]["actual"] is None
        assert "no gateway metrics" in found[name]["detail"]
    assert found["latency_drift_p95"]["status"] == "pass"  # measured from the clients' side
    assert summary["soak"]["memory"] is None
    assert "not measurable" in (path / "summary.md").read_text()
    errors = [c for c in ET.parse(path / "junit.xml").iter("testcase") if c.find("error") is not None]
    assert len(errors) == 3


def test_too_few_samples_for_a_slope_is_not_measurable(tmp_path: Path) -> None:
    code, summary, _ = run(tmp_path, "short", duration_s=20, process=ProcessPlan(interval_s=5))
    memory = checks(summary)["memory_slope_mb_per_min"]
    assert code == 1 and memory["status"] == "no_data" and "4 samples" in memory["detail"]
