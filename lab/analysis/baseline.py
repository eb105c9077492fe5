"""Baselines stored per scenario, and loading either side of a comparison.

A side is one or more runs of a scenario, given as
- a run directory (one run);
- a directory of runs: run directories (`lab run --repeat N --out DIR`) and/or summary files
  (`*.json` with the `lab.summary/1` schema: the nightly history keeps only those), the newest `last`;
- a stored baseline directory, or the name of a scenario with one.

A baseline is `<root>/<scenario>/`: `runs/<run-id>.json` (each chosen run's summary.json), latencies.npy
(a uniform sample of the newest run's successful latencies, float64, sorted: for the distribution plot)
and baseline.json (which runs, when set, the tolerances in force). It changes only with
`lab baseline set RUN_DIR...`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pydantic

from lab.analysis.compare import CompareSettings, RunFigures, Side, latency_sample
from lab.analysis.loading import RecordError, load_run
from lab.analysis.summary import SUMMARY_SCHEMA, analyse
from lab.scenario.slos import RegressionSpec

BASELINE_FILE = "baseline.json"
SAMPLE_FILE = "latencies.npy"
RUNS_DIR = "runs"
SUMMARY_FILE = "summary.json"
DEFAULT_ROOT = Path("reports") / "baselines"


def baseline_dir(root: Path, scenario: str) -> Path:
    return root / re.sub(r"[^A-Za-z0-9._-]", "_", scenario)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json when present and current, else the analysis of its record (nothing written).
    An INCOMPLETE run is no evidence to compare with: RecordError naming why."""
    path = run_dir / SUMMARY_FILE
    summary = _read_json(path) if path.exists() else None
    if not summary or summary.get("schema") != SUMMARY_SCHEMA:
        summary = analyse(load_run(run_dir)).summary
    if summary.get("verdict") == "incomplete":
        reasons = (summary.get("completeness") or {}).get("reasons") or []
        why = "; ".join(str(r.get("detail")) for r in reasons) or "its record is not whole"
        raise RecordError(f"{run_dir}: the run is INCOMPLETE ({why}): it cannot be compared")
    return summary


def figures(summary: dict[str, Any], source: Path) -> RunFigures:
    return RunFigures(str(summary["run_id"]), str(summary["started"]), str(source), summary)


def tolerances_of(run_dir: Path) -> RegressionSpec:
    """The scenario's `regression:` section as recorded in the run's manifest (defaults when absent)."""
    manifest_path = run_dir / "manifest.json"
    scenario = _read_json(manifest_path).get("scenario") or {}
    try:
        return RegressionSpec.model_validate(scenario.get("regression") or {})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"scenario.regression.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RecordError(f"{manifest_path}: {problems}") from None


def run_side(run_dir: Path, settings: CompareSettings) -> Side:
    """One run directory as a side."""
    summary = run_summary(run_dir)
    return Side(
        source=run_dir,
        scenario=str(summary["scenario"]),
        runs=[figures(summary, run_dir)],
        latency=_latencies(run_dir, settings),
        tolerances=tolerances_of(run_dir),
    )


def set_side(directory: Path, settings: CompareSettings, scenario: str | None = None) -> Side:
    """The runs and summary files in `directory` (of `scenario`, or of the only scenario there)."""
    found: list[tuple[RunFigures, Path | None]] = []
    for path in sorted(directory.iterdir()):
        if (path / "manifest.json").exists():
            found.append((figures(run_summary(path), path), path))
        elif path.suffix == ".json" and path.is_file():
            summary = _read_json(path)
            if summary.get("schema") == SUMMARY_SCHEMA:
                found.append((figures(summary, path), None))
    names = sorted({f.summary["scenario"] for f, _ in found})
    if scenario is None:
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise RecordError(f"{directory}: expected the runs of one scenario (found: {listed})")
        scenario = names[0]
    chosen = sorted(
        ((f, p) for f, p in found if f.summary["scenario"] == scenario),
        key=lambda fp: (fp[0].started, fp[0].run_id),
    )[-settings.last :]
    if not chosen:
        raise RecordError(
            f"{directory}: no runs of scenario {scenario!r} (found: {', '.join(names) or 'none'})"
        )
    dirs = [p for _, p in chosen if p is not None]
    return Side(
        source=directory,
        scenario=scenario,
        runs=[f for f, _ in chosen],
        latency=_latencies(dirs[-1], settings) if dirs else None,
        tolerances=tolerances_of(dirs[-1]) if dirs else RegressionSpec(),
    )


def baseline_side(directory: Path) -> Side:
    meta = _read_json(directory / BASELINE_FILE)
    runs = [figures(_read_json(p), p) for p in sorted((directory / RUNS_DIR).glob("*.json"))]
    sample = directory / SAMPLE_FILE
    return Side(
        source=directory,
        scenario=str(meta["scenario"]),
        runs=sorted(runs, key=lambda f: (f.started, f.run_id)),
        latency=np.sort(_load_npy(sample)) if sample.exists() else None,
    )


def load_side(
    reference: str, settings: CompareSettings, root: Path = DEFAULT_ROOT, scenario: str | None = None
) -> Side:
    """A run directory, a directory of runs, a baseline directory, or a scenario with a stored baseline."""
    path = Path(reference)
    if (path / BASELINE_FILE).exists():
        return baseline_side(path)
    if (path / "manifest.json").exists():
        return run_side(path, settings)
    if path.is_dir():
        return set_side(path, settings, scenario)
    stored = baseline_dir(root, reference)
    if (stored / BASELINE_FILE).exists():
        return baseline_side(stored)
    raise RecordError(
        f"{reference}: not a run directory, a directory of runs, a baseline directory, or a scenario with "
        f"a baseline in {root}"
    )


def set_baseline(run_dirs: list[Path], root: Path, settings: CompareSettings) -> Path:
    """Store `run_dirs` (runs of one scenario) as its baseline, replacing the previous one."""
    sides = [run_side(d, settings) for d in run_dirs]
    scenarios = sorted({s.scenario for s in sides})
    if len(scenarios) != 1:
        raise RecordError(f"a baseline is the runs of one scenario (given: {', '.join(scenarios)})")
    runs = sorted((r for s in sides for r in s.runs), key=lambda f: (f.started, f.run_id))
    directory = baseline_dir(root, scenarios[0])
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "scenario": scenarios[0],
        "run_ids": [r.run_id for r in runs],
        "run_dirs": [str(d.resolve()) for d in run_dirs],
        "set_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_sample": f"newest run, uniform without replacement, at most {settings.max_sample}",
    }
    # baseline.json, written last, is what makes the baseline exist; the runs are replaced as a whole.
    (directory / BASELINE_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory / RUNS_DIR, ignore_errors=True)
    (directory / RUNS_DIR).mkdir()
    for run in runs:
        _replace(directory / RUNS_DIR / f"{run.run_id}.json", orjson.dumps(run.summary))
    newest = max(sides, key=lambda s: (s.runs[-1].started, s.runs[-1].run_id))
    if newest.latency is not None:
        _replace(directory / SAMPLE_FILE, _npy(newest.latency))
    _replace(directory / BASELINE_FILE, orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return directory


def list_baselines(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    return [
        {"dir": str(d), **_read_json(d / BASELINE_FILE)}
        for d in sorted(root.iterdir())
        if (d / BASELINE_FILE).exists()
    ]


def _latencies(run_dir: Path, settings: CompareSettings) -> np.ndarray | None:
    try:
        run = load_run(run_dir)
    except RecordError:
        return None
    ok = run.requests["ok"].to_numpy()
    return latency_sample(run.requests["latency_ms"].to_numpy()[ok], settings.max_sample, settings.seed)


def _replace(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: cannot read: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object")
    return data
