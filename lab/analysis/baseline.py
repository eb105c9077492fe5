"""Baselines stored per scenario, and loading either side of a comparison.

A baseline is a directory `<root>/<scenario>/` holding a copy of the chosen run's summary.json, a
uniform sample of its successful requests' latencies (latencies.npy, float64, sorted), its requests and
ok requests per second (per_second.npy, int64, shape (2, seconds)) and baseline.json (which run, when it
was set, how the sample was drawn). It changes only with `lab baseline set RUN_DIR`;
nothing updates it implicitly.
"""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lab.analysis.compare import CompareSettings, Side, latency_sample, per_second_counts
from lab.analysis.loading import RecordError, load_run
from lab.analysis.summary import SUMMARY_SCHEMA, analyse

BASELINE_FILE = "baseline.json"
SAMPLE_FILE = "latencies.npy"
COUNTS_FILE = "per_second.npy"
SUMMARY_FILE = "summary.json"
DEFAULT_ROOT = Path("reports") / "baselines"


def baseline_dir(root: Path, scenario: str) -> Path:
    return root / re.sub(r"[^A-Za-z0-9._-]", "_", scenario)


def run_side(run_dir: Path, settings: CompareSettings) -> Side:
    """A run directory as a comparison side; its summary.json is used when present and current."""
    run = load_run(run_dir)
    summary = _read_json(run_dir / SUMMARY_FILE) if (run_dir / SUMMARY_FILE).exists() else None
    if not summary or summary.get("schema") != SUMMARY_SCHEMA:
        summary = analyse(run).summary
    ok = run.requests["ok"].to_numpy()
    latency = run.requests["latency_ms"].to_numpy()[ok]
    return Side(
        source=run_dir,
        scenario=run.scenario_name,
        run_id=run.run_id,
        summary=summary,
        latency=latency_sample(latency, settings.max_sample, settings.seed),
        latency_population=int(np.isfinite(latency).sum()),
        per_second=per_second_counts(run.requests["t"].to_numpy(), ok, run.duration),
    )


def baseline_side(directory: Path) -> Side:
    meta = _read_json(directory / BASELINE_FILE)
    latency, counts = _load_npy(directory / SAMPLE_FILE), _load_npy(directory / COUNTS_FILE)
    return Side(
        source=directory,
        scenario=str(meta["scenario"]),
        run_id=str(meta["run_id"]),
        summary=_read_json(directory / SUMMARY_FILE),
        latency=np.sort(latency),
        latency_population=int(meta["latency_population"]),
        per_second=counts,
    )


def load_side(reference: str, settings: CompareSettings, root: Path = DEFAULT_ROOT) -> Side:
    """A run directory, a baseline directory, or the name of a scenario with a stored baseline."""
    path = Path(reference)
    if (path / BASELINE_FILE).exists():
        return baseline_side(path)
    if path.is_dir():
        return run_side(path, settings)
    stored = baseline_dir(root, reference)
    if (stored / BASELINE_FILE).exists():
        return baseline_side(stored)
    raise RecordError(
        f"{reference}: not a run directory, a baseline directory, or a scenario with a baseline in {root}"
    )


def set_baseline(run_dir: Path, root: Path, settings: CompareSettings) -> Path:
    """Store `run_dir` as its scenario's baseline (replacing the previous one) and return the directory."""
    side = run_side(run_dir, settings)
    directory = baseline_dir(root, side.scenario)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "scenario": side.scenario,
        "run_id": side.run_id,
        "run_dir": str(run_dir.resolve()),
        "set_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_population": side.latency_population,
        "latency_sample": int(side.latency.size),
        "sampling": f"uniform without replacement, at most {settings.max_sample}, seed {settings.seed}",
    }
    # Each file is replaced atomically; baseline.json, written last, is what makes the baseline exist.
    _replace(directory / SAMPLE_FILE, _npy(side.latency))
    _replace(directory / COUNTS_FILE, _npy(side.per_second))
    _replace(directory / SUMMARY_FILE, orjson.dumps(side.summary, option=orjson.OPT_INDENT_2))
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
