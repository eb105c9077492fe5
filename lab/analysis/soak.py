"""Soak checks: what only a long run shows. The gateway's memory slope, its open file descriptors and
the drift of its latency from the first to the last third of the run.

Memory and descriptors come from the gateway's own process metrics (`process_resident_memory_bytes`,
`process_open_fds`, Prometheus' standard process collector), polled from its /metrics into the record's
`metrics` table. A gateway that exposes none (a black box) leaves them unknown: `None`, with a note
saying why, which the SLO check turns into `no_data` (a failure), never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

MEMORY_METRIC = "process_resident_memory_bytes"
FDS_METRIC = "process_open_fds"
PROCESS_METRICS = (MEMORY_METRIC, FDS_METRIC)
MIN_SAMPLES = 6  # fewer polls than this do not make a slope
MIN_SPAN_S = 30.0  # nor do polls spanning less time


@dataclass
class Soak:
    summary: dict[str, Any]  # summary.json's `soak`
    memory: pd.DataFrame  # t, value (bytes): for the plot
    fds: pd.DataFrame  # t, value


def analyse_soak(process: pd.DataFrame | None, requests: pd.DataFrame, duration: float) -> Soak:
    """`process`: rows (t, name, value) of the process metrics, None when the record has no metrics
    table; `requests`: t, ok, latency_ms. Each part is None when it cannot be measured."""
    notes: list[str] = []
    memory, fds = _series(process, MEMORY_METRIC), _series(process, FDS_METRIC)
    summary = {
        "memory": _memory(memory, notes, process is None),
        "open_fds": _fds(fds, duration, notes, process is None),
        "latency_drift": _drift(requests, duration, notes),
        "notes": notes,
    }
    return Soak(summary, memory, fds)


def _series(process: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if process is None:
        return pd.DataFrame({"t": np.array([], dtype=float), "value": np.array([], dtype=float)})
    rows = process[process["name"] == name]
    return rows[["t", "value"]].sort_values("t", kind="stable").reset_index(drop=True)


def _missing(metric: str, no_table: bool) -> str:
    if no_table:
        return f"{metric}: the record has no gateway metrics (a black-box gateway, or /metrics unreachable)"
    return f"{metric}: the gateway's /metrics does not expose it"


def _memory(series: pd.DataFrame, notes: list[str], no_table: bool) -> dict[str, Any] | None:
    if series.empty:
        notes.append(f"memory slope not measurable: {_missing(MEMORY_METRIC, no_table)}")
        return None
    t, mb = series["t"].to_numpy(), series["value"].to_numpy() / 1e6
    span = float(t[-1] - t[0])
    if t.size < MIN_SAMPLES or span < MIN_SPAN_S:
        notes.append(
            f"memory slope not measurable: {t.size} samples over {span:.0f} s "
            f"(needs {MIN_SAMPLES} over {MIN_SPAN_S:g} s)"
        )
        return None
    # Theil-Sen: the median of pairwise slopes, so a restart's drop or a GC step moves it little
    fit = stats.theilslopes(mb, t / 60.0, alpha=0.95)
    return {
        "samples": int(t.size),
        "span_s": span,
        "slope_mb_per_min": float(fit.slope),
        "slope_ci95": [float(fit.low_slope), float(fit.high_slope)],
        "intercept_mb": float(fit.intercept),
        "first_mb": float(mb[0]),
        "last_mb": float(mb[-1]),
        "max_mb": float(mb.max()),
    }


def _thirds(duration: float) -> tuple[float, float]:
    return duration / 3, 2 * duration / 3


def _fds(series: pd.DataFrame, duration: float, notes: list[str], no_table: bool) -> dict[str, Any] | None:
    if series.empty:
        notes.append(f"open fds not measurable: {_missing(FDS_METRIC, no_table)}")
        return None
    t, fds = series["t"].to_numpy(), series["value"].to_numpy()
    first_end, last_start = _thirds(duration)
    first, last = fds[t < first_end], fds[t >= last_start]
    growth = float(np.median(last) - np.median(first)) if first.size and last.size else None
    if growth is None:
        notes.append("open fds growth not measurable: no samples in the first or the last third of the run")
    return {
        "samples": int(t.size),
        "max": float(fds.max()),
        "first_third_median": float(np.median(first)) if first.size else None,
        "last_third_median": float(np.median(last)) if last.size else None,
        "growth": growth,
    }


def _drift(requests: pd.DataFrame, duration: float, notes: list[str]) -> dict[str, Any] | None:
    first_end, last_start = _thirds(duration)
    t = requests["t"].to_numpy()
    ok = requests["ok"].to_numpy()
    latency = requests["latency_ms"].to_numpy()
    first = latency[ok & (t < first_end) & np.isfinite(latency)]
    last = latency[ok & (t >= last_start) & np.isfinite(latency)]
    if not first.size or not last.size:
        notes.append("latency drift not measurable: no successful request in the first or the last third")
        return None
    p95_first, p95_last = float(np.quantile(first, 0.95)), float(np.quantile(last, 0.95))
    return {
        "first_third": [0.0, first_end],
        "last_third": [last_start, duration],
        "first_third_p95_ms": p95_first,
        "last_third_p95_ms": p95_last,
        "first_third_requests": int(first.size),
        "last_third_requests": int(last.size),
        "ratio_p95": p95_last / p95_first if p95_first > 0 else None,
    }
