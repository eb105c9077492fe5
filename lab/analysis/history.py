"""A scenario's history of runs: each metric as a series in run order, with dated change points.

A step against one baseline misses a slow drift; E-Divisive over the whole series finds where the level
changed, and names the first run of the new level. Runs are ordered by their start time; a run's figures
come from its summary.json, or from analysing it on the fly when it has none (nothing is written).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lab.analysis.changepoints import e_divisive
from lab.analysis.loading import RecordError, load_run, read_manifest, scenario_of
from lab.analysis.summary import SUMMARY_SCHEMA, analyse

HISTORY_SCHEMA = "lab.history/1"


@dataclass(frozen=True)
class Metric:
    key: str
    higher_is_worse: bool
    extract: Callable[[dict[str, Any]], float | None]


def _slowest_recovery(summary: dict[str, Any]) -> float | None:
    values = [f["recovery_s"] for f in summary["faults"]]
    return None if not values or None in values else max(values)  # an unrecovered fault has no number


METRICS = (
    Metric("success_rate", False, lambda s: s["success_rate"]),
    Metric("p50_ms", True, lambda s: s["latency_ms"]["p50"]),
    Metric("p95_ms", True, lambda s: s["latency_ms"]["p95"]),
    Metric("p99_ms", True, lambda s: s["latency_ms"]["p99"]),
    Metric("throughput_rps", False, lambda s: s["throughput_rps"]),
    Metric("recovery_s", True, _slowest_recovery),
    Metric("max_gap", True, lambda s: s["subscription"]["max_gap"] if s["subscription"]["heads"] else None),
    Metric("breaker_opens", True, lambda s: s["breakers"]["opens"]),
)


@dataclass
class RunEntry:
    path: Path
    run_id: str
    started: float
    summary: dict[str, Any]


def collect_runs(root: Path, scenario: str | None) -> tuple[str, list[RunEntry], list[str]]:
    """The runs of one scenario under `root` (the only scenario there when None), oldest first: run
    directories, and summary files (`*.json`, schema lab.summary/1: what the nightly history keeps)."""
    if not root.is_dir():
        raise RecordError(f"{root}: not a directory")
    notes: list[str] = []
    by_scenario: dict[str, list[tuple[Path, dict[str, Any] | None]]] = {}
    for path in sorted(root.iterdir()):
        if (path / "manifest.json").exists():
            try:
                name, _ = scenario_of(read_manifest(path), path / "manifest.json")
            except RecordError as exc:
                notes.append(f"skipped {path.name}: {exc}")
                continue
            by_scenario.setdefault(name, []).append((path, None))
        elif path.suffix == ".json" and path.is_file():
            try:
                summary = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                notes.append(f"skipped {path.name}: not valid JSON")
                continue
            if isinstance(summary, dict) and summary.get("schema") == SUMMARY_SCHEMA:
                by_scenario.setdefault(str(summary["scenario"]), []).append((path, summary))
    if scenario is None:
        if len(by_scenario) != 1:
            found = ", ".join(sorted(by_scenario)) or "none"
            raise RecordError(f"{root}: choose a scenario with --scenario (found: {found})")
        scenario = next(iter(by_scenario))
    entries = []
    for path, known in by_scenario.get(scenario, []):
        summary = known
        if summary is None:
            summary_path = path / "summary.json"
            summary = orjson.loads(summary_path.read_bytes()) if summary_path.exists() else None
            if not summary or summary.get("schema") != SUMMARY_SCHEMA:
                summary = analyse(load_run(path)).summary
                notes.append(
                    f"analysed {path.name} on the fly (no current summary.json; `lab report` caches it)"
                )
        started = datetime.fromisoformat(summary["started"]).timestamp()
        entries.append(RunEntry(path, summary["run_id"], started, summary))
    return scenario, sorted(entries, key=lambda e: (e.started, e.run_id)), notes


def history(
    entries: list[RunEntry], *, alpha: float = 0.05, permutations: int = 199, min_size: int = 3, seed: int = 0
) -> dict[str, Any]:
    metrics = {}
    for metric in METRICS:
        points = [(e, metric.extract(e.summary)) for e in entries]
        points = [(e, float(v)) for e, v in points if v is not None and math.isfinite(v)]
        values = np.array([v for _, v in points])
        changes = []
        found = (
            e_divisive(values, alpha=alpha, permutations=permutations, min_size=min_size, seed=seed)
            if values.size >= 2 * min_size
            else []
        )
        bounds = [0, *(c.index for c in found), values.size]
        for number, change in enumerate(found, start=1):
            before = float(values[bounds[number - 1] : change.index].mean())
            after = float(values[change.index : bounds[number + 1]].mean())
            entry = points[change.index][0]
            changes.append(
                {
                    "index": change.index,
                    "run_id": entry.run_id,
                    "date": datetime.fromtimestamp(entry.started, UTC).isoformat(timespec="seconds"),
                    "before_mean": before,
                    "after_mean": after,
                    "change": after / before - 1 if before else None,
                    "p_value": change.p_value,
                    "direction": "worse" if (after > before) == metric.higher_is_worse else "better",
                }
            )
        metrics[metric.key] = {
            "higher_is_worse": metric.higher_is_worse,
            "run_ids": [e.run_id for e, _ in points],
            "values": values.tolist(),
            "change_points": changes,
        }
    return {
        "schema": HISTORY_SCHEMA,
        "runs": [
            {
                "run_id": e.run_id,
                "started": datetime.fromtimestamp(e.started, UTC).isoformat(),
                "path": str(e.path),
            }
            for e in entries
        ],
        "settings": {"alpha": alpha, "permutations": permutations, "min_size": min_size, "seed": seed},
        "metrics": metrics,
    }


def latest_regressions(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Metrics whose most recent change point made them worse: the current level is a regression."""
    return [
        (key, m["change_points"][-1])
        for key, m in result["metrics"].items()
        if m["change_points"] and m["change_points"][-1]["direction"] == "worse"
    ]
