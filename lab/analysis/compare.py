"""Compare a run against a baseline, metric by metric: is it worse, better, or the same within noise?

Each side brings a uniform random sample (seeded, without replacement) of at most `max_sample` latencies
of successful requests, its request counts and its summary. Judged metrics:

- latency (the whole distribution): Mann-Whitney U p-value, Hodges-Lehmann shift (current − baseline)
  with its distribution-free confidence interval, Cliff's delta and the common-language effect size.
  Regression when p < alpha, the interval lies above 0 and the shift exceeds the tolerance; improvement
  mirrors it. The tolerance is max(rel_tol × baseline median, abs_tol_ms): shifts below it are noise.
- p50 / p95 / p99: nearest-rank quantiles; confidence interval of the difference from bootstrap replicates
  (drawn exactly from each quantile's bootstrap distribution, seeded). Regression when the interval lies
  above 0 and the difference exceeds max(rel_tol × baseline value, abs_tol_ms).
- success rate: over the seconds both runs cover, with an interval of the difference from a circular
  moving-block bootstrap of per-second counts, blocks paired by time (failures cluster in time, and runs
  of a scenario share its fault timeline). Regression when the interval lies below 0 and the drop
  exceeds success_tol.
- recovery (the slowest fault): one observation a side, so no statistics: regression when it grew by
  more than max(recovery_rel_tol × baseline, recovery_abs_tol_s), or a recovered fault no longer recovers.

The overall verdict is regression when any metric regressed, improvement when one improved and none
regressed, otherwise no change. A metric one side has no data for (no successful requests) is no_data;
a side without any request cannot be compared at all (CompareError).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lab.analysis import twosample

Verdict = Literal["regression", "improvement", "no_change"]
COMPARE_SCHEMA = "lab.compare/1"


class CompareError(Exception):
    """The two sides cannot be compared (exit code 2)."""


@dataclass(frozen=True)
class CompareSettings:
    alpha: float = 0.05
    confidence: float = 0.95
    rel_tol: float = 0.05
    abs_tol_ms: float = 0.5
    success_tol: float = 0.001
    recovery_rel_tol: float = 0.25
    recovery_abs_tol_s: float = 2.0
    resamples: int = 2000
    block_s: int = 10
    max_sample: int = 200_000
    seed: int = 0


@dataclass
class Side:
    """One side of a comparison: a run directory or a stored baseline."""

    source: Path
    scenario: str
    run_id: str
    summary: dict[str, Any]
    latency: np.ndarray  # sorted sample of successful requests' latencies (ms)
    latency_population: int  # how many successful requests the sample was drawn from
    per_second: np.ndarray  # shape (2, seconds): requests and ok requests sent in each second of the run

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])

    @property
    def ok(self) -> int:
        return int(self.summary["requests"] - self.summary["errors"])


def latency_sample(latency_ok: np.ndarray, max_sample: int, seed: int) -> np.ndarray:
    """Sorted uniform sample without replacement (all values when there are at most `max_sample`)."""
    values = latency_ok[np.isfinite(latency_ok)]
    if values.size > max_sample:
        values = np.random.default_rng(seed).choice(values, size=max_sample, replace=False)
    return np.sort(values)


def compare(baseline: Side, current: Side, settings: CompareSettings) -> dict[str, Any]:
    if baseline.scenario != current.scenario:
        raise CompareError(
            f"different scenarios: baseline {baseline.scenario!r} ({baseline.source}) vs "
            f"current {current.scenario!r} ({current.source})"
        )
    for label, side in (("baseline", baseline), ("current", current)):
        if not side.requests:
            raise CompareError(f"the {label} run ({side.source}) recorded no requests: nothing to compare")
    rng = np.random.default_rng(settings.seed)
    metrics: list[dict[str, Any]] = []
    if baseline.latency.size and current.latency.size:
        metrics.append(_latency_distribution(baseline.latency, current.latency, settings))
        for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            metrics.append(_quantile(name, q, baseline.latency, current.latency, settings, rng))
    else:
        missing = "baseline" if not baseline.latency.size else "current"
        metrics.append(_no_data("latency", f"the {missing} side has no successful requests"))
    metrics.append(_success_rate(baseline, current, settings, rng))
    if baseline.summary["faults"] and current.summary["faults"]:
        metrics.append(_recovery(baseline.summary["faults"], current.summary["faults"], settings))
    judged = [m["verdict"] for m in metrics]
    verdict: Verdict = (
        "regression" if "regression" in judged else "improvement" if "improvement" in judged else "no_change"
    )
    return {
        "schema": COMPARE_SCHEMA,
        "scenario": current.scenario,
        "verdict": verdict,
        "baseline": _describe(baseline),
        "current": _describe(current),
        "settings": asdict(settings),
        "metrics": metrics,
        "info": {key: [value, _info(current.summary)[key]] for key, value in _info(baseline.summary).items()},
    }


def judge(difference: float, low: float, high: float, tolerance: float, higher_is_worse: bool) -> Verdict:
    """Regression: the whole interval is on the worse side of 0 and the estimate beyond the tolerance."""
    worse, worse_low, worse_high = (difference, low, high) if higher_is_worse else (-difference, -high, -low)
    if worse_low > 0 and worse > tolerance:
        return "regression"
    if worse_high < 0 and worse < -tolerance:
        return "improvement"
    return "no_change"


def _latency_distribution(x: np.ndarray, y: np.ndarray, settings: CompareSettings) -> dict[str, Any]:
    rank = twosample.mann_whitney(x, y)
    shift = twosample.hodges_lehmann(x, y, settings.confidence)
    baseline_median = float(np.median(x))
    tolerance = max(settings.rel_tol * baseline_median, settings.abs_tol_ms)
    verdict = judge(shift.estimate, shift.low, shift.high, tolerance, higher_is_worse=True)
    if rank.p_value >= settings.alpha:
        verdict = "no_change"
    return {
        "name": "latency",
        "method": "Mann-Whitney U, Hodges-Lehmann shift",
        "baseline": baseline_median,
        "current": float(np.median(y)),
        "difference": shift.estimate,
        "ci": [shift.low, shift.high],
        "tolerance": tolerance,
        "p_value": rank.p_value,
        "cles": rank.cles,
        "cliffs_delta": rank.cliffs_delta,
        "relative": shift.estimate / baseline_median if baseline_median else None,
        "verdict": verdict,
        "detail": (
            f"shift {shift.estimate:+.3g} ms [{shift.low:+.3g}, {shift.high:+.3g}], p={rank.p_value:.2g}, "
            f"Cliff's δ={rank.cliffs_delta:+.3f}, tolerance ±{tolerance:.3g} ms"
        ),
    }


def _quantile(
    name: str, q: float, x: np.ndarray, y: np.ndarray, settings: CompareSettings, rng: np.random.Generator
) -> dict[str, Any]:
    base, cur = twosample.nearest_rank(x, q), twosample.nearest_rank(y, q)
    replicates = twosample.bootstrap_nearest_rank(
        y, q, settings.resamples, rng
    ) - twosample.bootstrap_nearest_rank(x, q, settings.resamples, rng)
    low, high = twosample.percentile_interval(replicates, settings.confidence)
    tolerance = max(settings.rel_tol * base, settings.abs_tol_ms)
    verdict = judge(cur - base, low, high, tolerance, higher_is_worse=True)
    return {
        "name": name,
        "method": "bootstrap (nearest-rank quantile)",
        "baseline": base,
        "current": cur,
        "difference": cur - base,
        "ci": [low, high],
        "tolerance": tolerance,
        "relative": (cur - base) / base if base else None,
        "verdict": verdict,
        "detail": (
            f"{base:.4g} → {cur:.4g} ms ({cur - base:+.3g} [{low:+.3g}, {high:+.3g}]), "
            f"tolerance ±{tolerance:.3g} ms"
        ),
    }


def _success_rate(
    baseline: Side, current: Side, settings: CompareSettings, rng: np.random.Generator
) -> dict[str, Any]:
    seconds = min(baseline.per_second.shape[1], current.per_second.shape[1])
    base_counts, cur_counts = baseline.per_second[:, :seconds], current.per_second[:, :seconds]
    base = base_counts[1].sum() / max(base_counts[0].sum(), 1)
    cur = cur_counts[1].sum() / max(cur_counts[0].sum(), 1)
    replicates = twosample.paired_block_bootstrap_rate_difference(
        base_counts, cur_counts, settings.block_s, settings.resamples, rng
    )
    low, high = twosample.percentile_interval(replicates[np.isfinite(replicates)], settings.confidence)
    verdict = judge(cur - base, low, high, settings.success_tol, higher_is_worse=False)
    return {
        "name": "success_rate",
        "method": f"paired moving-block bootstrap ({settings.block_s} s blocks, first {seconds} s of both)",
        "baseline": float(base),
        "current": float(cur),
        "difference": float(cur - base),
        "ci": [low, high],
        "tolerance": settings.success_tol,
        "relative": None,
        "verdict": verdict,
        "detail": (
            f"{base:.4%} → {cur:.4%} ({(cur - base) * 100:+.3f} pp [{low * 100:+.3f}, {high * 100:+.3f}])"
        ),
    }


def per_second_counts(t: np.ndarray, ok: np.ndarray, duration_s: float) -> np.ndarray:
    """(2, seconds) int64: requests and ok requests sent in each whole second from the run start."""
    seconds = max(1, math.ceil(max(duration_s, float(t.max()) if t.size else 0.0)))
    index = np.clip(np.floor(t).astype(np.int64), 0, seconds - 1)
    return np.vstack([np.bincount(index, minlength=seconds), np.bincount(index[ok], minlength=seconds)])


def _recovery(
    base_faults: list[dict[str, Any]], cur_faults: list[dict[str, Any]], settings: CompareSettings
) -> dict[str, Any]:
    def slowest(faults: list[dict[str, Any]]) -> float:
        values = [math.inf if f["recovery_s"] is None else f["recovery_s"] for f in faults]
        return max(values)

    base, cur = slowest(base_faults), slowest(cur_faults)
    tolerance = (
        max(settings.recovery_rel_tol * base, settings.recovery_abs_tol_s) if math.isfinite(base) else 0.0
    )
    if math.isinf(cur) and math.isinf(base):
        verdict: Verdict = "no_change"
    elif math.isinf(cur) or math.isinf(base):
        verdict = "regression" if math.isinf(cur) else "improvement"
    else:
        verdict = judge(cur - base, cur - base, cur - base, tolerance, higher_is_worse=True)
    return {
        "name": "recovery_s",
        "method": "single observation (slowest fault), no statistics",
        "baseline": base if math.isfinite(base) else None,
        "current": cur if math.isfinite(cur) else None,
        "difference": None if math.isinf(base) or math.isinf(cur) else cur - base,
        "ci": None,
        "tolerance": tolerance,
        "relative": None,
        "verdict": verdict,
        "detail": f"{_seconds(base)} → {_seconds(cur)}, tolerance ±{tolerance:.3g} s",
    }


def _no_data(name: str, why: str) -> dict[str, Any]:
    return {
        "name": name,
        "method": "",
        "baseline": None,
        "current": None,
        "difference": None,
        "ci": None,
        "tolerance": None,
        "relative": None,
        "verdict": "no_data",
        "detail": f"not compared: {why}",
    }


def _seconds(value: float) -> str:
    return "not recovered" if math.isinf(value) else f"{value:.3g} s"


def _info(summary: dict[str, Any]) -> dict[str, Any]:
    """Figures shown beside the verdicts but not judged."""
    subscription, breakers = summary.get("subscription") or {}, summary.get("breakers") or {}
    return {
        "throughput_rps": summary.get("throughput_rps"),
        "max_gap": subscription.get("max_gap"),
        "missing_heads": subscription.get("missing"),
        "breaker_opens": breakers.get("opens"),
    }


def _describe(side: Side) -> dict[str, Any]:
    return {
        "source": str(side.source),
        "run_id": side.run_id,
        "requests": side.requests,
        "ok": side.ok,
        "latency_sample": int(side.latency.size),
        "latency_population": side.latency_population,
    }
