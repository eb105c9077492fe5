"""Battle runs: every shipped scenario end to end against the reference gateway (production-resilience
is the ten-minute soak), the weak gateway against the combined chaos, and a planted memory leak against
the soak checks. Minutes each; run nightly with `pytest -m battle`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from lab.durations import parse_duration

pytestmark = [pytest.mark.battle, pytest.mark.containers, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p for p in (ROOT / "toxics").glob("*.yml"))

# Every resilience feature of the reference gateway turned off, as real gateways can be configured.
WEAK_SETTINGS = {
    "retries": 0,
    "breaker": {"enabled": False},
    "lag_check": False,
    "gap_filling": False,
    "chain_id_check": False,
    "answer_check": False,
    "follow_reorgs": False,
    "slow_call_s": None,
}
# The scenarios of misbehaving providers that make wrong answers possible (issue 10): the reference
# gateway keeps every wrong answer from its clients; the weak settings pass them on.
WRONG_ANSWER_SCENARIOS = ("wrong-chain", "corrupt-answers", "reorg")
# How many wrong answers make the weak gateway's failure unmistakable: a missed reorg is one wrong head
# per subscriber (the subscriber's next head does not build on the one it holds).
LEAST_WRONG = {"wrong-chain": 10, "corrupt-answers": 10, "reorg": 2}
# The planted leak: 8 KiB kept per HTTP request; at the soak's ~70 req/s about 30 MB/min, thirty times
# the scenario's memory-slope SLO (1 MB/min), and 45 MB in 90 s: far from any memory limit.
LEAK_BYTES_PER_REQUEST = 8192
LEAK_RUN_S = 90


def record_dir(tmp_path: Path, name: str, *, control: bool = False) -> Path:
    """Where a battle run's record goes: under $LAB_BATTLE_OUT when set (the nightly keeps them). A control
    run, one its test means to fail (a planted weakness or leak) or a shortened A/A repeat, goes under
    $LAB_BATTLE_CONTROLS: its test judges it, so the nightly neither fails on its SLOs nor adds it to the
    scenario's history."""
    kept = os.environ.get("LAB_BATTLE_CONTROLS" if control else "LAB_BATTLE_OUT")
    return Path(kept) / name if kept else tmp_path / name


def run_scenario(scenario: Path, out: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(scenario), "--out", str(out), *args],
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


@pytest.mark.parametrize(
    "scenario",
    [p for p in SCENARIOS if p.stem not in WRONG_ANSWER_SCENARIOS],  # below, with more asked of them
    ids=lambda p: p.stem,
)
def test_reference_gateway_meets_every_shipped_scenarios_slos(scenario: Path, tmp_path: Path) -> None:
    code, summary = run_scenario(scenario, record_dir(tmp_path, scenario.stem))
    failed = [c for c in summary["slo"]["checks"] if c["status"] != "pass"]
    assert code == 0 and summary["slo"]["passed"], f"{scenario.name}: failed SLOs {failed}"
    assert summary["requests"] > 0


def test_weak_gateway_fails_the_combined_chaos(tmp_path: Path) -> None:
    weak = weakened("production-chaos", tmp_path)
    code, summary = run_scenario(weak, record_dir(tmp_path, "production-chaos-weak", control=True))
    assert code == 1 and not summary["slo"]["passed"], (
        "the lab could not tell a weak gateway from a strong one"
    )


def weakened(name: str, tmp_path: Path) -> Path:
    """The shipped scenario `name` against the reference gateway with WEAK_SETTINGS."""
    scenario = yaml.safe_load((ROOT / "toxics" / f"{name}.yml").read_text())
    scenario["name"] = f"{name}-weak"
    scenario["topology"].setdefault("gateway", {})["settings"] = WEAK_SETTINGS
    weak = tmp_path / f"{name}-weak.yml"
    weak.write_text(yaml.safe_dump(scenario))
    return weak


@pytest.mark.parametrize("name", WRONG_ANSWER_SCENARIOS)
def test_reference_gateway_keeps_every_wrong_answer_from_clients(name: str, tmp_path: Path) -> None:
    """Not only no failed SLO: answers were checked, and none was wrong (a missing measurement fails)."""
    code, summary = run_scenario(ROOT / "toxics" / f"{name}.yml", record_dir(tmp_path, name))
    checks = {c["name"]: c for c in summary["slo"]["checks"]}
    assert checks["wrong_answers"]["status"] == "pass" and checks["wrong_answers"]["actual"] == 0, checks
    assert summary["correctness"]["checked"] > 0.5 * summary["requests"], summary["correctness"]
    assert code == 0, [c for c in checks.values() if c["status"] != "pass"]


@pytest.mark.parametrize("name", WRONG_ANSWER_SCENARIOS)
def test_weak_gateway_passes_wrong_answers_on(name: str, tmp_path: Path) -> None:
    code, summary = run_scenario(weakened(name, tmp_path), record_dir(tmp_path, f"{name}-weak", control=True))
    checks = {c["name"]: c for c in summary["slo"]["checks"]}
    assert code == 1 and checks["wrong_answers"]["status"] == "fail", checks["wrong_answers"]
    assert checks["wrong_answers"]["actual"] >= LEAST_WRONG[name], "the misbehaviour is not unmistakable"


def test_a_planted_leak_fails_the_soak_memory_slope(tmp_path: Path) -> None:
    """production-resilience shortened to 90 s (the faults that start in it: kills, the primary's
    cascade), the gateway keeping 8 KiB per request: the memory-slope SLO must fail (the other soak
    checks may pass or fail: only memory is planted)."""
    scenario = yaml.safe_load((ROOT / "toxics" / "production-resilience.yml").read_text())
    scenario["name"] = "production-resilience-leak"
    scenario["faults"] = [f for f in scenario["faults"] if parse_duration(f["start"]) < LEAK_RUN_S]
    scenario["topology"].setdefault("gateway", {})["settings"] = {
        "test_leak_bytes_per_request": LEAK_BYTES_PER_REQUEST
    }
    leaky = tmp_path / "production-resilience-leak.yml"
    leaky.write_text(yaml.safe_dump(scenario))
    code, summary = run_scenario(
        leaky, record_dir(tmp_path, "production-resilience-leak", control=True), "--duration", "90s"
    )
    memory = {c["name"]: c for c in summary["slo"]["checks"]}["memory_slope_mb_per_min"]
    assert code == 1 and memory["status"] == "fail", memory
    limit = scenario["slos"]["memory_slope_mb_per_min"]
    assert memory["actual"] > 5 * limit, f"the leak is not unmistakable: {memory}"


def test_aa_splits_of_real_short_runs_raise_at_most_one_false_alarm(tmp_path: Path) -> None:
    """Eight real runs of one configuration; ten 4-vs-4 splits of them compared with `lab compare`:
    A/A comparisons, so a regression verdict is a false alarm."""
    import random

    runs_dir = record_dir(tmp_path, "smoke-aa", control=True)
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(ROOT / "toxics" / "smoke.yml"), "--out", str(runs_dir),
         "--duration", "20s", "--repeat", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=1100,
    )  # fmt: skip
    runs = sorted(p.parent for p in runs_dir.glob("*/summary.json"))
    assert len(runs) == 8, proc.stderr[-3000:]
    rng = random.Random(0)
    alarms = []
    for split in range(10):
        chosen = set(rng.sample(range(8), 4))
        sides = {"a": tmp_path / f"split{split}-a", "b": tmp_path / f"split{split}-b"}
        for index, run in enumerate(runs):
            side = sides["a"] if index in chosen else sides["b"]
            side.mkdir(exist_ok=True)
            (side / run.name).symlink_to(run)
        result = subprocess.run(
            [sys.executable, "-m", "lab", "compare", str(sides["a"]), str(sides["b"])],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode in (0, 1), result.stdout[-3000:]
        verdict = orjson.loads((sides["b"] / "compare.json").read_bytes())["verdict"]
        alarms += [split] if verdict == "regression" else []
    assert len(alarms) <= 1, alarms
