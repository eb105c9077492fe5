"""The nightly's judgement of the battle runs: an INCOMPLETE run is never compared and makes the job exit
4 (unless something failed outright), with its reason in the summary."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def nightly() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nightly", ROOT / ".ci" / "nightly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_dir(root: Path, name: str, outcome: str, summary: dict[str, Any] | None) -> None:
    path = root / name
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(
        json.dumps({"run_id": name, "outcome": outcome, "scenario": {"name": "s"}})
    )
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))


def test_incomplete_runs_are_named_with_their_reason_and_exit_4(tmp_path: Path) -> None:
    n = nightly()
    reason = {"reasons": [{"cause": "cut_short", "detail": "the load ran 10.6 s of 30 s planned"}]}
    run_dir(tmp_path, "a-pass", "completed", {"verdict": "pass", "slo": {"passed": True}})
    run_dir(
        tmp_path,
        "b-cut",
        "completed",
        {"verdict": "incomplete", "slo": {"passed": False}, "completeness": reason},
    )
    run_dir(tmp_path, "c-killed", "running", None)
    runs = {r.run_id: r for r in n.find_runs(tmp_path)}
    assert runs["a-pass"].complete and runs["a-pass"].slo == "PASS"
    assert not runs["b-cut"].complete and runs["b-cut"].slo == "INCOMPLETE"
    assert runs["b-cut"].why == "the load ran 10.6 s of 30 s planned"
    assert not runs["c-killed"].complete and runs["c-killed"].why == "outcome 'running'"
    assert n.exit_code(list(runs.values()), battle_code=1) == 4
    assert n.exit_code([runs["a-pass"]], battle_code=0) == 0
    assert n.exit_code([], battle_code=0) == 4


def test_a_missed_slo_is_a_failure_even_beside_an_incomplete_run(tmp_path: Path) -> None:
    n = nightly()
    run_dir(tmp_path, "fail", "completed", {"slo": {"passed": False}})  # a summary from before INCOMPLETE
    run_dir(tmp_path, "interrupted", "interrupted", None)
    assert n.exit_code(n.find_runs(tmp_path), battle_code=1) == 1


def test_a_control_meant_to_fail_neither_fails_the_night_nor_joins_the_history(tmp_path: Path) -> None:
    """The weak gateway's run FAILs by design (its battle test asserts it): the night passes on the
    battle tests and the real runs, and the history holds only the real run."""
    n = nightly()
    out, history = tmp_path / "out", tmp_path / "history"
    for sub in ("junit", "compare", "history"):
        (out / sub).mkdir(parents=True)
    run_dir(out / "runs", "real", "completed", {"verdict": "pass", "slo": {"passed": True}})
    run_dir(out / "controls", "weak", "completed", {"verdict": "fail", "slo": {"passed": False}})
    code, summary = n.judge("t", out, history, keep=30, battle_code=0)
    assert code == 0, summary
    assert summary.startswith("# Nightly t: PASSED")
    controls = summary.split("## Controls", 1)[1]
    assert "`weak`" in controls and "| FAIL |" in controls
    assert [p.name for p in history.rglob("*.json")] == ["real.json"]
    # counted as a run, the same control would fail the night
    assert n.exit_code(n.find_runs(out / "controls"), battle_code=0) == 1
