"""Request statistics: overall, per method, and binned over time for plots.

Latency figures are response times: from the intended send to the answer, so a request that waited to be
sent (or that a stalled server held) counts all of its wait (no coordinated omission). They are over
successful requests only (a fast connection-refused error must not make the
latency look better; failures show in the success rate). Quantiles are numpy's default "linear" method
(Hyndman & Fan type 7), exact over every request. Per-bin percentile bands for plots come from a
log-spaced histogram (bucket ratio 1.01, so within 0.5 % of the exact value), which is one pass over the
data instead of a sort per bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
# Which latency the figures are (the report names it): `latency_ms` is the response time, from the intended
# send (lab.analysis.loading.headline_latency); the service time, from the actual send, is `service_ms`.
LATENCY_KIND = "response time (from the intended send)"
LATENCY_KEYS = (*QUANTILES, "max", "mean")
_NICE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_HIST_LO_MS = 0.001
_HIST_RATIO = 1.01
_SCATTER_POINTS = 20_000


def latency_summary(latency_ms: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p95/p99/max/mean of the finite values (None when there are none)."""
    values = latency_ms[np.isfinite(latency_ms)]
    if values.size == 0:
        return dict.fromkeys(LATENCY_KEYS)
    quantiles = np.quantile(values, list(QUANTILES.values()))
    return {
        **{k: float(q) for k, q in zip(QUANTILES, quantiles, strict=True)},
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def request_stats(
    ok: np.ndarray, latency_ms: np.ndarray, error_class: pd.Series, seconds: float
) -> dict[str, Any]:
    """Counts, success rate, error classes, latency of ok requests, throughput over `seconds`."""
    n = int(ok.size)
    n_ok = int(np.count_nonzero(ok))
    counts = error_class[~ok].value_counts(dropna=False)
    errors = {("unclassified" if pd.isna(k) else str(k)): int(v) for k, v in counts.items() if v}
    return {
        "requests": n,
        "ok": n_ok,
        "errors": n - n_ok,
        "success_rate": n_ok / n if n else None,
        "error_classes": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        "latency_ms": latency_summary(latency_ms[ok]),
        "throughput_rps": n / seconds if seconds > 0 else None,
    }


def group_indices(column: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(name, row indices) for each category present ("(unknown)": missing), from one stable sort of the
    codes instead of a boolean mask over every row per category."""
    codes = column.cat.codes.to_numpy()
    order = np.argsort(codes, kind="stable")
    names = ["(unknown)", *map(str, column.cat.categories)]
    bounds = np.searchsorted(codes[order], np.arange(-1, len(names)))
    return [
        (name, order[bounds[i] : bounds[i + 1]]) for i, name in enumerate(names) if bounds[i + 1] > bounds[i]
    ]


def per_method(requests: pd.DataFrame, seconds: float) -> list[dict[str, Any]]:
    """`request_stats` for each method, busiest first."""
    ok = requests["ok"].to_numpy()
    latency = requests["latency_ms"].to_numpy()
    rows = [
        {
            "method": name,
            **request_stats(ok[index], latency[index], requests["error_class"].iloc[index], seconds),
        }
        for name, index in group_indices(requests["method"])
    ]
    return sorted(rows, key=lambda r: -r["requests"])


def bin_width(duration_s: float, target_bins: int = 300) -> float:
    """A round bin width giving about `target_bins` bins (at least 1 s)."""
    wanted = max(duration_s, 1.0) / target_bins
    return float(next((w for w in _NICE_WIDTHS if w >= wanted), math.ceil(wanted / 3600) * 3600))


@dataclass
class Timeline:
    """Requests binned by send time; arrays have one entry per bin."""

    width: float
    edges: np.ndarray
    requests: np.ndarray
    ok: np.ndarray
    errors_by_class: dict[str, np.ndarray]
    bands: dict[str, np.ndarray]  # p50/p95/p99 latency of ok requests per bin (NaN: no ok requests)
    provider_counts: dict[str, np.ndarray]
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)  # t, latency_ms, ok: a uniform sample

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def timeline(requests: pd.DataFrame, duration_s: float, seed: int = 0) -> Timeline:
    width = bin_width(duration_s)
    n_bins = max(1, math.ceil(max(duration_s, requests["t"].max() if len(requests) else 0.0) / width))
    edges = np.arange(n_bins + 1) * width
    t = requests["t"].to_numpy()
    bins = np.clip((t // width).astype(np.int64), 0, n_bins - 1)  # requests before t0 land in bin 0
    ok = requests["ok"].to_numpy()
    count = np.bincount(bins, minlength=n_bins)
    count_ok = np.bincount(bins, weights=ok, minlength=n_bins).astype(np.int64)
    return Timeline(
        width=width,
        edges=edges,
        requests=count,
        ok=count_ok,
        errors_by_class=_counts_by_category(
            bins, requests["error_class"], n_bins, ~ok, missing="unclassified"
        ),
        bands=_percentile_bands(bins[ok], requests["latency_ms"].to_numpy()[ok], n_bins),
        provider_counts=_counts_by_category(bins, requests["provider"], n_bins),
        sample=_sample(requests, seed),
    )


def _counts_by_category(
    bins: np.ndarray, column: pd.Series, n_bins: int, mask: np.ndarray | None = None, missing: str = "(none)"
) -> dict[str, np.ndarray]:
    codes = column.cat.codes.to_numpy().astype(np.int64) + 1  # 0: missing
    if mask is not None:
        bins, codes = bins[mask], codes[mask]
    names = [missing, *map(str, column.cat.categories)]
    table = np.bincount(bins * len(names) + codes, minlength=n_bins * len(names)).reshape(n_bins, len(names))
    return {name: table[:, i] for i, name in enumerate(names) if table[:, i].any()}


def _percentile_bands(bins: np.ndarray, latency: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    finite = np.isfinite(latency)
    bins, latency = bins[finite], latency[finite]
    n_buckets = 1 + math.ceil(
        math.log(max(latency.max(initial=1.0), 1.0) / _HIST_LO_MS) / math.log(_HIST_RATIO)
    )
    bucket = np.clip(
        (np.log(np.maximum(latency, _HIST_LO_MS) / _HIST_LO_MS) / math.log(_HIST_RATIO)).astype(np.int64),
        0,
        n_buckets - 1,
    )
    hist = np.bincount(bins * n_buckets + bucket, minlength=n_bins * n_buckets).reshape(n_bins, n_buckets)
    cumulative = hist.cumsum(axis=1)
    totals = cumulative[:, -1]
    centers = _HIST_LO_MS * _HIST_RATIO ** (np.arange(n_buckets) + 0.5)
    bands = {}
    for name in ("p50", "p95", "p99"):
        rank = np.maximum(np.ceil(QUANTILES[name] * totals), 1)  # the nearest-rank percentile's rank
        index = (cumulative < rank[:, None]).sum(axis=1)
        bands[name] = np.where(totals > 0, centers[np.minimum(index, n_buckets - 1)], np.nan)
    return bands


def _sample(requests: pd.DataFrame, seed: int) -> pd.DataFrame:
    n = len(requests)
    index = np.arange(n)
    if n > _SCATTER_POINTS:
        index = np.sort(np.random.default_rng(seed).choice(n, size=_SCATTER_POINTS, replace=False))
    return pd.DataFrame(
        {
            "t": requests["t"].to_numpy()[index],
            "latency_ms": requests["latency_ms"].to_numpy()[index],
            "ok": requests["ok"].to_numpy()[index],
        }
    )
