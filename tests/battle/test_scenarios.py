"""Battle runs: every shipped scenario end to end against the reference gateway, and the weak gateway
against the combined chaos. Minutes each; run nightly with `pytest -m battle`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

pytestmark = [pytest.mark.battle, pytest.mark.containers, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p for p in (ROOT / "toxics").glob("*.yml"))

# Every resilience feature of the reference gateway turned off, as real gateways can be configured.
WEAK_SETTINGS = {"retries": 0, "breaker": {"enabled": False}, "lag_check": False, "gap_filling": False}


def run_scenario(scenario: Path, out: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(scenario), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    summaries = list(out.glob("*/summary.json"))
    assert len(summaries) == 1, (
        f"no single summary.json under {out}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.returncode, orjson.loads(summaries[0].read_bytes())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_reference_gateway_meets_every_shipped_scenarios_slos(scenario: Path, tmp_path: Path) -> None:
    code, summary = run_scenario(scenario, tmp_path)
    failed = [c for c in summary["slo"]["checks"] if c["status"] != "pass"]
    assert code == 0 and summary["slo"]["passed"], f"{scenario.name}: failed SLOs {failed}"
    assert summary["requests"] > 0


def test_weak_gateway_fails_the_combined_chaos(tmp_path: Path) -> None:
    scenario = yaml.safe_load((ROOT / "toxics" / "production-chaos.yml").read_text())
    scenario["name"] = "production-chaos-weak"
    scenario["topology"].setdefault("gateway", {})["settings"] = WEAK_SETTINGS
    weak = tmp_path / "production-chaos-weak.yml"
    weak.write_text(yaml.safe_dump(scenario))
    code, summary = run_scenario(weak, tmp_path / "runs")
    assert code == 1 and not summary["slo"]["passed"], (
        "the lab could not tell a weak gateway from a strong one"
    )
