"""Each fault window against the steady state before it: when the service was first hit, and when it
was back — both the success rate and the latency.

Definitions (times in seconds from the run start; requests are placed at their send time):

- horizon of a fault: the start of the next fault that starts at or after this fault's end, else the run
  end. Faults that overlap this one are judged together with it.
- baseline: requests in the `baseline_s` seconds before the fault start, cut at the end of the latest
  earlier fault (empty when an earlier fault is still active).
- latency limit: the baseline's p95 of successful requests × (1 + latency_tolerance), at least the
  baseline p95 + latency_slack_ms (a baseline with ≥ MIN_BASELINE_OK successful requests); without one,
  the scenario's p95_ms SLO; without that, latency is not judged (`latency_basis` says which).
- a window is bad when it has requests and either its success rate is below the target, or more than
  5 % of its successful requests are slower than the latency limit (its p95 is above the limit). An
  empty window is neither bad nor evidence of health.
- first impact at I: the end of the first bad backward window [I − W, I), I = fault start + k·step
  (k ≥ 1), before the horizon; time_to_first_impact_s = I − fault start (None: never impacted).
- recovered at R: forward windows [t, t + W) start at fault start + k·step and are cut at the horizon,
  down to W/2 long (the single window [start, horizon) when the horizon is closer than W). R is the
  start of the window after the last bad one (the fault start when none is bad), provided a later window
  has requests; from R to the horizon every window meets both criteria. recovery_s (= time_to_recover_s)
  = R − fault start; recovery_after_end_s = max(0, R − fault end). Not recovered (None) when the last bad
  window is the last window, or nothing follows it.
- resolution: the step (0.25 s by default); a window turns bad once 5 % of its requests are slow (or
  1 − target of them failed), so an edge is placed within 5 % of W of where it is (0.25 s for W = 5 s),
  where the traffic is dense enough to fill each window (lab.analysis.summary lengthens W for sparse
  traffic, so that a window holds enough requests that one stray error cannot fail it).
- errors: failed requests from the fault start to R (to the horizon when not recovered);
  excess_errors subtracts what the baseline error rate predicts for that many requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis.loading import FaultWindow
from lab.analysis.traffic import request_stats

SLOW_SHARE = 0.05  # more than this share of a window's ok requests above the limit: its p95 is above it
MIN_BASELINE_OK = 20  # successful requests a baseline needs for its p95 to set a latency limit


@dataclass(frozen=True)
class RecoverySettings:
    target: float = 0.99  # success rate a window must meet (the scenario's success_rate SLO when set)
    window_s: float = 5.0
    step_s: float = 0.25
    baseline_s: float = 30.0
    latency_tolerance: float = 0.5  # p95 back within 50 % of the baseline's
    latency_slack_ms: float = 25.0  # ... and never closer than this to it (a p95 of 3 ms is noisy)
    latency_slo_ms: float | None = None  # the scenario's p95_ms: the limit when a fault has no baseline
    share_step_s: float = 1.0  # bins of the provider shares (failover): a share needs requests per bin

    def describe(self) -> str:
        return (
            f"recovered = start of the first {self.window_s:g} s forward window after which every window "
            f"(stepped by {self.step_s:g} s, up to the next fault or the run end) has success rate ≥ "
            f"{self.target:.4%} and p95 within {self.latency_tolerance:.0%} (at least "
            f"{self.latency_slack_ms:g} ms) of the pre-fault baseline's; first impact = end of the first "
            f"{self.window_s:g} s window after the fault start that misses either"
        )

    def latency_limit(self, baseline: dict[str, Any]) -> tuple[float | None, str]:
        """(limit in ms, what it is based on) for a fault with this baseline (see the module docstring)."""
        p95 = baseline["latency_ms"]["p95"]
        ok = baseline["requests"] - baseline["errors"]
        if p95 is not None and ok >= MIN_BASELINE_OK:
            limit = max(p95 * (1 + self.latency_tolerance), p95 + self.latency_slack_ms)
            return limit, f"baseline p95 {p95:.1f} ms"
        if self.latency_slo_ms is not None:
            return self.latency_slo_ms, "the p95_ms SLO (no baseline)"
        return None, "not judged: no baseline and no p95_ms SLO"


@dataclass(frozen=True)
class WindowSeries:
    """Success rate of forward windows starting at `starts` (NaN: empty window); `bad`: windows that miss
    the success target or the latency limit (None: not judged)."""

    starts: np.ndarray
    requests: np.ndarray
    success_rate: np.ndarray
    bad: np.ndarray | None = None


@dataclass(frozen=True)
class FaultSeries:
    """What a recovery plot shows: the rolling windows judged, and the plain per-step success rate."""

    windows: WindowSeries
    steps: WindowSeries


class RequestIndex:
    """Sorted send times and cumulative ok counts: any time range's counts in O(log n)."""

    def __init__(self, t: np.ndarray, ok: np.ndarray) -> None:
        self.t = t
        self.ok_cumulative = np.concatenate([[0], np.cumsum(ok, dtype=np.int64)])

    def counts(self, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(requests, ok requests) sent in each [start, end)."""
        lo = np.searchsorted(self.t, start, side="left")
        hi = np.searchsorted(self.t, end, side="left")
        return hi - lo, self.ok_cumulative[hi] - self.ok_cumulative[lo]

    def slice(self, start: float, end: float) -> slice:
        return slice(int(np.searchsorted(self.t, start, "left")), int(np.searchsorted(self.t, end, "left")))


class SlowIndex:
    """Cumulative counts of successful requests slower than a limit, over a slice of a RequestIndex."""

    def __init__(self, index: RequestIndex, ok: np.ndarray, latency: np.ndarray, part: slice, limit: float):
        self.t = index.t[part]
        slow = ok[part] & (latency[part] > limit)
        self.cumulative = np.concatenate([[0], np.cumsum(slow, dtype=np.int64)])

    def counts(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(self.t, start, side="left")
        hi = np.searchsorted(self.t, end, side="left")
        return self.cumulative[hi] - self.cumulative[lo]


def judge(
    index: RequestIndex, slow: SlowIndex | None, start: np.ndarray, end: np.ndarray, target: float
) -> WindowSeries:
    """The windows [start, end): requests, success rate and whether each is bad (see the docstring)."""
    n, good = index.counts(start, end)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, good / np.maximum(n, 1), np.nan)
    bad = (n > 0) & (rate < target)
    if slow is not None:
        bad |= (n > 0) & (slow.counts(start, end) > SLOW_SHARE * good)
    return WindowSeries(start, n, rate, bad)


def window_series(
    index: RequestIndex,
    start: float,
    horizon: float,
    settings: RecoverySettings,
    slow: SlowIndex | None = None,
) -> WindowSeries:
    span = horizon - start
    if span <= settings.window_s:
        starts, ends = np.array([start]), np.array([horizon])
    else:
        # Windows near the horizon are cut at it, down to half a window: a recovery a few seconds before
        # the next fault still shows, while the tail is always judged by a window of at least W/2.
        last = span - settings.window_s / 2
        starts = start + settings.step_s * np.arange(math.floor(last / settings.step_s + 1e-9) + 1)
        ends = np.minimum(starts + settings.window_s, horizon)
    return judge(index, slow, starts, ends, settings.target)


def first_impact(
    index: RequestIndex,
    start: float,
    horizon: float,
    settings: RecoverySettings,
    slow: SlowIndex | None = None,
) -> tuple[float | None, str | None]:
    """(I, what hit first: "errors", "latency" or "errors+latency"): the end of the first bad backward
    window after the fault start (None: never impacted before the horizon)."""
    count = math.floor((horizon - start) / settings.step_s + 1e-9)
    if count < 1:
        return None, None
    ends = start + settings.step_s * np.arange(1, count + 1)
    starts = ends - settings.window_s
    series = judge(index, slow, starts, ends, settings.target)
    assert series.bad is not None
    hit = np.flatnonzero(series.bad)
    if not hit.size:
        return None, None
    k = int(hit[0])
    errors = bool(series.success_rate[k] < settings.target)
    latency = slow is not None and bool(
        slow.counts(starts[k : k + 1], ends[k : k + 1])[0]
        > SLOW_SHARE * round(series.success_rate[k] * series.requests[k])
    )
    return float(ends[k]), "+".join(name for name, hit in (("errors", errors), ("latency", latency)) if hit)


def recovery_moment(series: WindowSeries, target: float) -> tuple[float | None, str]:
    """(R, status): status "recovered" | "not_recovered" | "no_data" (see the module docstring)."""
    has_requests = series.requests > 0
    if not has_requests.any():
        return None, "no_data"
    bad = has_requests & (series.success_rate < target) if series.bad is None else series.bad
    if not bad.any():
        return float(series.starts[0]), "recovered"
    last_bad = int(np.flatnonzero(bad)[-1])
    if not has_requests[last_bad + 1 :].any():
        return None, "not_recovered"
    return float(series.starts[last_bad + 1]), "recovered"


def horizons(faults: list[FaultWindow], run_end: float) -> list[float]:
    return [
        min([g.start for g in faults if g is not f and g.start >= f.end] + [max(run_end, f.end)])
        for f in faults
    ]


def analyse_faults(
    requests: pd.DataFrame, faults: list[FaultWindow], run_end: float, settings: RecoverySettings
) -> tuple[list[dict[str, Any]], list[FaultSeries]]:
    """One summary per fault, and the window series behind each recovery (for plots)."""
    t = requests["t"].to_numpy()
    ok = requests["ok"].to_numpy()
    latency = requests["latency_ms"].to_numpy()
    index = RequestIndex(t, ok)

    def stats(a: float, b: float) -> dict[str, Any]:
        s = index.slice(a, b)
        return request_stats(ok[s], latency[s], requests["error_class"].iloc[s], b - a)

    results, series_list = [], []
    for fault, horizon in zip(faults, horizons(faults, run_end), strict=True):
        earlier_ends = [g.end for g in faults if g.start < fault.start]
        if any(end > fault.start for end in earlier_ends):
            baseline_from = fault.start  # an earlier fault is still active: no clean baseline
        else:
            baseline_from = max([fault.start - settings.baseline_s, 0.0, *earlier_ends])
        baseline = stats(baseline_from, fault.start)
        during = stats(fault.start, fault.end)
        limit, basis = settings.latency_limit(baseline)
        slow = None
        if limit is not None:
            part = index.slice(fault.start - settings.window_s, horizon)
            slow = SlowIndex(index, ok, latency, part, limit)
        series = window_series(index, fault.start, horizon, settings, slow)
        moment, status = recovery_moment(series, settings.target)
        impact_at, impacted_by = first_impact(index, fault.start, horizon, settings, slow)
        impact_end = moment if moment is not None else horizon
        impact = index.slice(fault.start, impact_end)
        errors = int(impact.stop - impact.start - np.count_nonzero(ok[impact]))
        baseline_error_rate = 1 - baseline["success_rate"] if baseline["requests"] else 0.0
        expected = baseline_error_rate * (impact.stop - impact.start)
        after = index.slice(fault.start, horizon)
        failed_after = np.flatnonzero(~ok[after])
        results.append(
            {
                "fault_id": fault.fault_id,
                "name": fault.name,
                "action": fault.action,
                "target": fault.target,
                "params": fault.params,
                "start_s": fault.start,
                "end_s": fault.end,
                "ended": fault.ended,
                "end_reason": fault.end_reason,
                "lift_error": fault.lift_error,
                "duration_s": fault.end - fault.start,
                "horizon_s": horizon,
                "baseline": _brief(baseline, baseline_from, fault.start),
                "during": _brief(during, fault.start, fault.end),
                "time_to_first_error_s": float(t[after.start + failed_after[0]] - fault.start)
                if failed_after.size
                else None,
                "error_window_s": float(t[after.start + failed_after[-1]] - t[after.start + failed_after[0]])
                if failed_after.size
                else 0.0,
                "errors": errors,
                "excess_errors": max(0, round(errors - expected)),
                "latency_limit_ms": limit,
                "latency_basis": basis,
                "time_to_first_impact_s": None if impact_at is None else impact_at - fault.start,
                "impacted_by": impacted_by,
                "time_to_recover_s": None if moment is None else moment - fault.start,
                "resolution_s": settings.step_s,
                "window_s": settings.window_s,
                "recovery_status": status,
                "recovered_at_s": moment,
                "recovery_s": None if moment is None else moment - fault.start,
                "recovery_after_end_s": None if moment is None else max(0.0, moment - fault.end),
                "recovered_during_fault": None if moment is None else moment <= fault.end,
            }
        )
        steps = _step_series(index, fault.start, baseline_from, horizon, settings.step_s)
        series_list.append(FaultSeries(series, steps))
    return results, series_list


def _step_series(
    index: RequestIndex, fault_start: float, from_s: float, to_s: float, step_s: float
) -> WindowSeries:
    """Success rate per `step_s` bin (not rolling), from `from_s` to `to_s`, a bin edge at the fault start."""
    k = np.arange(-math.floor((fault_start - from_s) / step_s), math.ceil((to_s - fault_start) / step_s))
    starts = fault_start + step_s * k
    n, good = index.counts(starts, starts + step_s)
    return WindowSeries(starts, n, np.where(n > 0, good / np.maximum(n, 1), np.nan))


def _brief(stats: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    latency = stats["latency_ms"]
    return {
        "from_s": start,
        "to_s": end,
        "requests": stats["requests"],
        "errors": stats["errors"],
        "success_rate": stats["success_rate"],
        "error_classes": stats["error_classes"],
        "latency_ms": {k: latency[k] for k in ("p50", "p95", "p99")},
    }
