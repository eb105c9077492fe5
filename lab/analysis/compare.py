"""Compare runs of one scenario: is the current configuration worse, better, or the same within noise?

The unit is the run. Thousands of requests of one run are not independent samples of "the gateway's
latency": runs differ as wholes (machine load, scheduling, placement), and a test over requests sees only
the within-run spread, so it calls the ordinary difference between two runs a regression. Here each run is
reduced to one number per metric (from its summary), and a change is flagged only when it is larger than
the **between-run noise** (estimated from repeated runs on either side, or from the nightly history used
as the baseline) **and** than a practical tolerance (the scenario's `regression:` section).

Per metric, with baseline runs b_1..b_k and current runs c_1..c_l (latencies on a log scale, so changes
are ratios):
- d = mean(c) − mean(b);
- s = the pooled within-side standard deviation (each side with ≥ 2 runs contributes its deviations from
  its own mean), df = Σ (n_side − 1);
- the noise margin = t(1 − alpha, df) · s · √(1/k + 1/l) (one-sided Student's t: a one-run current
  against a history of k nights is the prediction interval of the next night);
- regression when the worse-direction change exceeds both the margin and the tolerance; improvement
  mirrors it; `inconclusive` when it exceeds the tolerance but not the noise (add runs); `weak` when
  df = 0 (one run a side and no history: the noise is unknown, nothing is flagged); otherwise no_change.

Metrics: success_rate (absolute), p50/p95/p99 latency (relative), each fault's recovery time (per fault
name, the slowest occurrence; a fault that never recovered counts as its observation window + 1 s, i.e.
censored: longer than anything seen), and the largest subscription gap (a new gap is a regression once
the baseline's runs show it does not happen by chance).

Anchors: Kayenta judges a metric only when both a statistical test and an effect-size tolerance say so;
Google's "rethinking variance" and Kalibera & Jones repeat at the level where the variance is (runs);
MongoDB/Otava run E-Divisive over the CI history (`lab history`). With 3 vs 3 runs a Mann-Whitney test
over runs cannot go below p = 0.1, so the test here is a t on run-level values with a pooled noise estimate
that can borrow the history's degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

from lab.scenario.slos import RegressionSpec

Verdict = Literal["regression", "improvement", "no_change", "inconclusive", "weak", "no_data"]
COMPARE_SCHEMA = "lab.compare/2"


class CompareError(Exception):
    """The two sides cannot be compared (exit code 2)."""


@dataclass(frozen=True)
class CompareSettings:
    alpha: float = 0.01  # one-sided, per metric and direction
    last: int = 20  # at most this many runs of a side (the newest): the nightly history's window
    max_sample: int = 200_000  # latencies kept for the distribution plot
    seed: int = 0


@dataclass
class RunFigures:
    """One run reduced to what the comparison needs."""

    run_id: str
    started: str
    source: str
    summary: dict[str, Any]


@dataclass
class Side:
    """One side of a comparison: one run, repeats of a run, a stored baseline, or the nightly history."""

    source: Path
    scenario: str
    runs: list[RunFigures]
    latency: np.ndarray | None = None  # sorted latency sample of the newest run (plot only)
    tolerances: RegressionSpec = field(default_factory=RegressionSpec)

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]


@dataclass(frozen=True)
class Metric:
    name: str
    log_scale: bool  # compare ratios (latency) rather than differences
    higher_is_worse: bool
    tolerance: Callable[[RegressionSpec], float]  # on the metric's scale (log of 1 + rel for log_scale)
    value: Callable[[dict[str, Any]], float | None]
    unit: str


def _recovery_of(name: str) -> Callable[[dict[str, Any]], float | None]:
    def value(summary: dict[str, Any]) -> float | None:
        faults = [f for f in summary["faults"] if f["name"] == name]
        if not faults:
            return None
        # censored: an unrecovered fault recovered later than its whole observation window
        return max(
            f["recovery_s"] if f["recovery_s"] is not None else f["horizon_s"] - f["start_s"] + 1.0
            for f in faults
        )

    return value


def _max_gap(summary: dict[str, Any]) -> float | None:
    subscription = summary["subscription"]
    return float(subscription["max_gap"]) if subscription["heads"] else None


def _latency_metric(q: str) -> Metric:
    return Metric(
        f"{q}_ms",
        log_scale=True,
        higher_is_worse=True,
        tolerance=lambda t: math.log1p(getattr(t, q)),
        value=lambda s: s["latency_ms"][q],
        unit="ms",
    )


def metrics_for(runs: list[RunFigures]) -> list[Metric]:
    latency = [_latency_metric(q) for q in ("p50", "p95", "p99")]
    fault_names = sorted({f["name"] for r in runs for f in r.summary["faults"]})
    return [
        Metric("success_rate", False, False, lambda t: t.success_rate, lambda s: s["success_rate"], ""),
        *latency,
        *(
            Metric(f"recovery_s[{n}]", False, True, lambda t: t.recovery_s, _recovery_of(n), "s")
            for n in fault_names
        ),
        Metric("max_gap", False, True, lambda t: float(t.max_gap), _max_gap, "blocks"),
    ]


def compare(baseline: Side, current: Side, settings: CompareSettings) -> dict[str, Any]:
    if baseline.scenario != current.scenario:
        raise CompareError(
            f"different scenarios: baseline {baseline.scenario!r} ({baseline.source}) vs "
            f"current {current.scenario!r} ({current.source})"
        )
    for label, side in (("baseline", baseline), ("current", current)):
        if not side.runs:
            raise CompareError(f"the {label} side ({side.source}) has no runs")
        empty = [r.run_id for r in side.runs if not r.summary["requests"]]
        if empty:
            raise CompareError(
                f"the {label} side ({side.source}): run {empty[0]} recorded no requests: nothing to compare"
            )
    tolerances = current.tolerances
    metrics = [
        judge_metric(m, baseline.runs, current.runs, tolerances, settings.alpha)
        for m in metrics_for(baseline.runs + current.runs)
    ]
    judged = {m["verdict"] for m in metrics}
    verdict: Verdict
    if "regression" in judged:
        verdict = "regression"
    elif "inconclusive" in judged:
        verdict = "inconclusive"
    elif "weak" in judged:
        verdict = "weak"
    elif "improvement" in judged:
        verdict = "improvement"
    else:
        verdict = "no_change"
    return {
        "schema": COMPARE_SCHEMA,
        "scenario": current.scenario,
        "verdict": verdict,
        "explanation": EXPLANATIONS[verdict],
        "baseline": _describe(baseline),
        "current": _describe(current),
        "settings": asdict(settings),
        "tolerances": tolerances.model_dump(),
        "metrics": metrics,
    }


EXPLANATIONS: dict[Verdict, str] = {
    "regression": "a metric got worse by more than the between-run noise and the tolerance",
    "improvement": "a metric got better by more than the between-run noise and the tolerance; none got worse",
    "no_change": "every change is within the between-run noise or the tolerance",
    "inconclusive": (
        "a change beyond the tolerance is within the between-run noise: not flagged; add runs "
        "(lab run --repeat N) to decide"
    ),
    "weak": (
        "WEAK VERDICT: one run on each side and no history, so the noise between runs is unknown and "
        "nothing is flagged; repeat the runs (lab run --repeat N) or compare against the nightly history"
    ),
    "no_data": "no metric could be compared",
}


def noise(groups: list[np.ndarray]) -> tuple[float, int]:
    """Pooled standard deviation of the groups around their own means, and its degrees of freedom."""
    usable = [g for g in groups if g.size >= 2]
    df = sum(g.size - 1 for g in usable)
    if df == 0:
        return math.nan, 0
    squares = sum(float(((g - g.mean()) ** 2).sum()) for g in usable)
    return math.sqrt(squares / df), df


def judge_metric(
    metric: Metric, base_runs: list[RunFigures], cur_runs: list[RunFigures], tol: RegressionSpec, alpha: float
) -> dict[str, Any]:
    base = _values(metric, base_runs)
    cur = _values(metric, cur_runs)
    tolerance = metric.tolerance(tol)
    row: dict[str, Any] = {
        "name": metric.name,
        "unit": metric.unit,
        "scale": "log" if metric.log_scale else "linear",
        "baseline_runs": base.tolist(),
        "current_runs": cur.tolist(),
        "baseline": None,
        "current": None,
        "difference": None,
        "relative": None,
        "noise_sd": None,
        "df": 0,
        "margin": None,
        "tolerance": math.expm1(tolerance) if metric.log_scale else tolerance,
    }
    if not base.size or not cur.size:
        missing = "baseline" if not base.size else "current"
        return {**row, "verdict": "no_data", "detail": f"not compared: no value on the {missing} side"}
    bx, cx = (np.log(base), np.log(cur)) if metric.log_scale else (base, cur)
    d = float(cx.mean() - bx.mean())
    sd, df = noise([bx, cx])
    margin = float(stats.t.ppf(1 - alpha, df)) * sd * math.sqrt(1 / bx.size + 1 / cx.size) if df else math.nan
    worse = d if metric.higher_is_worse else -d
    beyond_tolerance = abs(worse) > tolerance
    verdict: Verdict
    if df == 0:
        verdict = "weak" if beyond_tolerance else "no_change"
    elif beyond_tolerance and abs(worse) > margin:
        verdict = "regression" if worse > 0 else "improvement"
    elif beyond_tolerance and worse > 0:
        verdict = "inconclusive"
    else:
        verdict = "no_change"
    b_mean = float(np.exp(bx.mean())) if metric.log_scale else float(bx.mean())
    c_mean = float(np.exp(cx.mean())) if metric.log_scale else float(cx.mean())
    row.update(
        baseline=b_mean,
        current=c_mean,
        difference=c_mean - b_mean,
        relative=math.expm1(d) if metric.log_scale else None,
        noise_sd=None if df == 0 else (math.expm1(sd) if metric.log_scale else sd),
        df=df,
        margin=None if df == 0 else (math.expm1(margin) if metric.log_scale else margin),
        verdict=verdict,
    )
    row["detail"] = _detail(row, metric, bx.size, cx.size)
    return row


def _values(metric: Metric, runs: list[RunFigures]) -> np.ndarray:
    values = [metric.value(r.summary) for r in runs]
    array = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if metric.log_scale:
        array = array[array > 0]
    return array


def _detail(row: dict[str, Any], metric: Metric, k: int, n: int) -> str:
    runs = f"{k} vs {n} runs"
    if metric.log_scale:
        change = f"{row['relative']:+.1%}"
        noise_text = (
            "noise unknown" if not row["df"] else f"noise margin ±{row['margin']:.1%} (df {row['df']})"
        )
        tol = f"tolerance {row['tolerance']:.0%}"
    else:
        scale = 100 if metric.name == "success_rate" else 1
        unit = " pp" if metric.name == "success_rate" else f" {metric.unit}"
        change = f"{row['difference'] * scale:+.3g}{unit}"
        noise_text = (
            "noise unknown"
            if not row["df"]
            else f"noise margin ±{row['margin'] * scale:.3g}{unit} (df {row['df']})"
        )
        tol = f"tolerance {row['tolerance'] * scale:.3g}{unit}"
    return f"{change}, {noise_text}, {tol}, {runs}"


def _describe(side: Side) -> dict[str, Any]:
    return {
        "source": str(side.source),
        "runs": len(side.runs),
        "run_ids": side.run_ids,
        "run_id": side.runs[-1].run_id if side.runs else None,
        "requests": [int(r.summary["requests"]) for r in side.runs],
    }


def latency_sample(latency_ok: np.ndarray, max_sample: int, seed: int) -> np.ndarray:
    """Sorted uniform sample without replacement (all values when there are at most `max_sample`)."""
    values = latency_ok[np.isfinite(latency_ok)]
    if values.size > max_sample:
        values = np.random.default_rng(seed).choice(values, size=max_sample, replace=False)
    return np.sort(values)
