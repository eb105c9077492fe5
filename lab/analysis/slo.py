"""Service-level objectives of a scenario and their verdicts.

A scenario carries `slos: {success_rate: 0.99, p95_ms: 500, ...}`, validated by `lab.scenario.slos.SLOSpec`;
`evaluate` checks them against a run's summary (the dict written to summary.json). A check whose
measurement is missing (no requests, no heads, no gateway events) is `no_data`, which fails the verdict:
an objective that cannot be verified has not been met. Every run also gets the implicit checks
`traffic_recorded` and `run_complete` (lab.analysis.completeness), and a run whose record has fault events
gets `faults_applied`: a planned fault that could not be applied left the gateway untested against it.

The verdict (`SLOResult.verdict`): "incomplete" when a check is `incomplete` (the evidence is not whole:
the run was interrupted, killed, cut short, lost records or could not apply a fault), else "pass" when
every check passed, else "fail". An incomplete run never passes: `passed` is False for it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from lab.scenario.slos import SLOSpec

Status = Literal["pass", "fail", "no_data", "incomplete"]
Verdict = Literal["pass", "fail", "incomplete"]


@dataclass(frozen=True)
class SLOCheck:
    name: str
    objective: str  # human-readable, e.g. "p95 ≤ 500 ms"
    threshold: float | None
    actual: float | None
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SLOResult:
    checks: list[SLOCheck]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> Verdict:
        if any(c.status == "incomplete" for c in self.checks):
            return "incomplete"
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict, "checks": [c.to_dict() for c in self.checks]}


def evaluate(spec: SLOSpec, summary: dict[str, Any]) -> SLOResult:
    """Check every objective set in `spec` against `summary` (see lab.analysis.summary)."""
    traffic = summary["requests"] + summary["subscription"]["heads"]
    checks = [
        SLOCheck(
            "traffic_recorded",
            "the run recorded requests or heads",
            None,
            float(traffic),
            "pass" if traffic > 0 else "fail",
            f"{summary['requests']} requests, {summary['subscription']['heads']} heads"
            if traffic
            else "no requests and no heads were recorded: the load never ran or its record is lost",
        )
    ]
    if "completeness" in summary:
        checks.append(_run_complete(summary["completeness"]))
    if summary["faults"] or summary["failed_faults"] or _unapplied(summary):
        checks.append(_faults_applied(summary))
    for name, builder in _CHECKS.items():
        threshold = getattr(spec, name)
        if threshold is not None:
            checks.append(builder(float(threshold), summary))
    return SLOResult(checks)


def _run_complete(completeness: dict[str, Any]) -> SLOCheck:
    """Incomplete for every reason but the faults' (the `faults_applied` check names those)."""
    reasons = [r for r in completeness["reasons"] if r["cause"] != "fault_not_applied"]
    objective = "the run ran its whole duration and its record is whole"
    planned, ran = completeness.get("planned_s"), completeness.get("ran_s")
    if not reasons:
        measured = f"ran {ran:.1f} s" + (f" of {planned:g} s planned" if planned is not None else "")
        return SLOCheck("run_complete", objective, planned, ran, "pass", measured)
    detail = "; ".join(r["detail"] for r in reasons)
    return SLOCheck("run_complete", objective, planned, ran, "incomplete", detail)


def _unapplied(s: dict[str, Any]) -> list[str]:
    """Details of planned faults that were never attempted (from the completeness reasons)."""
    completeness = s.get("completeness") or {}
    return [
        r["detail"]
        for r in completeness.get("reasons", [])
        if r["cause"] == "fault_not_applied" and "never applied" in r["detail"]
    ]


def _faults_applied(s: dict[str, Any]) -> SLOCheck:
    failed = s["failed_faults"]
    never = _unapplied(s)
    planned = len(s["faults"]) + len(failed) + len(never)
    objective = "every fault was applied"
    if not failed and not never:
        return SLOCheck("faults_applied", objective, None, float(planned), "pass", f"{planned} of {planned}")
    names = "; ".join([*(f"{f['fault_id']} ({f['error']})" for f in failed), *never])
    detail = f"{len(failed) + len(never)} of {planned} not applied: {names}"
    applied = float(planned - len(failed) - len(never))
    return SLOCheck("faults_applied", objective, None, applied, "incomplete", detail)


def _at_most(
    name: str, objective: str, threshold: float, actual: float | None, missing: str, unit: str = ""
) -> SLOCheck:
    if actual is None:
        return SLOCheck(name, objective, threshold, None, "no_data", missing)
    status: Status = "pass" if actual <= threshold else "fail"
    return SLOCheck(
        name, objective, threshold, actual, status, f"{_fmt(actual)}{unit} (limit {_fmt(threshold)}{unit})"
    )


def _success_rate(threshold: float, s: dict[str, Any]) -> SLOCheck:
    actual = s["success_rate"]
    objective = f"success rate ≥ {_percent(threshold)}"
    if actual is None:
        return SLOCheck("success_rate", objective, threshold, None, "no_data", "no requests recorded")
    ok = s["requests"] - s["errors"]
    status: Status = "pass" if actual >= threshold else "fail"
    return SLOCheck(
        "success_rate", objective, threshold, actual, status, f"{actual:.4%} ({ok} of {s['requests']} ok)"
    )


def _latency(quantile: str) -> Callable[[float, dict[str, Any]], SLOCheck]:
    def check(threshold: float, s: dict[str, Any]) -> SLOCheck:
        return _at_most(
            f"{quantile}_ms",
            f"{quantile} latency ≤ {_fmt(threshold)} ms",
            threshold,
            s["latency_ms"][quantile],
            "no successful requests: latency unknown",
            " ms",
        )

    return check


def _max_gap(threshold: float, s: dict[str, Any]) -> SLOCheck:
    sub = s["subscription"]
    actual = sub["max_gap"] if sub["heads"] else None
    return _at_most(
        "max_gap", f"largest head gap ≤ {int(threshold)} blocks", threshold, actual, "no heads recorded"
    )


def _max_duplicates(threshold: float, s: dict[str, Any]) -> SLOCheck:
    sub = s["subscription"]
    actual = sub["max_duplicates_per_subscriber"] if sub["heads"] else None
    objective = f"duplicate heads ≤ {int(threshold)} per subscriber"
    return _at_most("max_duplicates", objective, threshold, actual, "no heads recorded")


def _recovery(threshold: float, s: dict[str, Any]) -> SLOCheck:
    objective = f"every fault recovered within {_fmt(threshold)} s"
    faults = s["faults"]
    if not faults:
        return SLOCheck("recovery_s", objective, threshold, 0.0, "pass", "no faults were injected")
    unrecovered = [f["name"] for f in faults if f["recovery_s"] is None]
    if unrecovered:
        detail = f"never recovered before the next fault or the run end: {', '.join(unrecovered)}"
        return SLOCheck("recovery_s", objective, threshold, None, "fail", detail)
    worst = max(faults, key=lambda f: f["recovery_s"])
    status: Status = "pass" if worst["recovery_s"] <= threshold else "fail"
    detail = f"slowest: {worst['name']} {_fmt(worst['recovery_s'])} s (limit {_fmt(threshold)} s)"
    return SLOCheck("recovery_s", objective, threshold, worst["recovery_s"], status, detail)


def _correctness(s: dict[str, Any]) -> dict[str, Any]:
    return s.get("correctness") or {}


_UNCHECKED = "no answer was checked (the checker was off, or a record from before it): correctness unknown"


def _max_stale_blocks(threshold: float, s: dict[str, Any]) -> SLOCheck:
    c = _correctness(s)
    missing = _UNCHECKED if not c.get("checked") else "no head answer was checked"
    objective = f"head answers ≤ {int(threshold)} blocks behind"
    return _at_most("max_stale_blocks", objective, threshold, c.get("max_stale_blocks"), missing, " blocks")


def _stale_read_rate(threshold: float, s: dict[str, Any]) -> SLOCheck:
    c = _correctness(s)
    actual = c.get("stale_read_rate")
    objective = f"stale reads ≤ {_percent(threshold)}"
    if actual is None:
        return SLOCheck("stale_read_rate", objective, threshold, None, "no_data", _UNCHECKED)
    status: Status = "pass" if actual <= threshold else "fail"
    detail = f"{actual:.4%} ({c['stale']} of {c['checked']} checked answers; limit {_percent(threshold)})"
    return SLOCheck("stale_read_rate", objective, threshold, actual, status, detail)


def _wrong_answers(threshold: float, s: dict[str, Any]) -> SLOCheck:
    c = _correctness(s)
    missing = (
        (c.get("notes") or [_UNCHECKED])[0] if c.get("checked") or c.get("subscriber_heads") else _UNCHECKED
    )
    check = _at_most(
        "wrong_answers", f"wrong answers ≤ {int(threshold)}", threshold, c.get("wrong_answers"), missing
    )
    if check.actual is None:
        return check
    heads = c.get("subscriber_heads") or {}
    detail = (
        f"{check.detail}: {c['wrong']} wrong, {c['wrong_chain']} of another chain, {c['orphaned']} orphaned, "
        f"of {c['checked']} checked answers; {heads.get('wrong', 0)} wrong and {heads.get('orphaned', 0)} "
        f"orphaned of {heads.get('checked', 0)} subscriber heads, "
        f"{c.get('subscriber_missed_reorgs') or 0} reorgs subscribers were never shown"
    )
    return replace(check, detail=detail)


def _head_regressions(threshold: float, s: dict[str, Any]) -> SLOCheck:
    c = _correctness(s)
    check = _at_most(
        "head_regressions",
        f"heads went backwards ≤ {int(threshold)} times",
        threshold,
        c.get("head_regressions"),
        "no head answer with a client and no subscriber head: regressions unknown",
    )
    if check.actual is None:
        return check
    detail = (
        f"{check.detail}: {c.get('client_head_regressions')} by clients, "
        f"{c.get('subscriber_head_regressions')} by subscribers"
    )
    return replace(check, detail=detail)


def _breaker_opens(threshold: float, s: dict[str, Any]) -> SLOCheck:
    opens = s["breakers"]["opens"]
    missing = s["breakers"].get("unknown") or (
        "no gateway_events.jsonl in the record: breaker activity unknown"
    )
    return _at_most("breaker_opens", f"breaker openings ≤ {int(threshold)}", threshold, opens, missing)


def _soak_part(s: dict[str, Any], part: str, topic: str) -> tuple[dict[str, Any] | None, str]:
    """The soak figures of `part` and, when they are missing, why (a summary from before the soak checks
    has none at all)."""
    soak = s.get("soak")
    if soak is None:
        return None, "the summary has no soak figures (re-run `lab report` on the record)"
    why = next((n for n in soak["notes"] if n.startswith(topic)), f"{topic} not measurable")
    return soak[part], why


def _memory_slope(threshold: float, s: dict[str, Any]) -> SLOCheck:
    memory, why = _soak_part(s, "memory", "memory slope")
    objective = f"gateway memory grows ≤ {_fmt(threshold)} MB/min"
    actual = None if memory is None else memory["slope_mb_per_min"]
    check = _at_most("memory_slope_mb_per_min", objective, threshold, actual, why, " MB/min")
    if memory is None:
        return check
    detail = (
        f"{check.detail}; {memory['first_mb']:.0f} → {memory['last_mb']:.0f} MB, "
        f"{memory['samples']} samples over {memory['span_s']:.0f} s"
    )
    return replace(check, detail=detail)


def _max_open_fds(threshold: float, s: dict[str, Any]) -> SLOCheck:
    fds, why = _soak_part(s, "open_fds", "open fds")
    actual = None if fds is None else fds["max"]
    return _at_most("max_open_fds", f"gateway open fds ≤ {int(threshold)}", threshold, actual, why)


def _open_fds_growth(threshold: float, s: dict[str, Any]) -> SLOCheck:
    fds, why = _soak_part(s, "open_fds", "open fds")
    if fds is not None and fds["growth"] is None:
        why = next((n for n in s["soak"]["notes"] if n.startswith("open fds growth")), why)
    actual = None if fds is None else fds["growth"]
    objective = f"gateway open fds grow ≤ {_fmt(threshold)}, first to last third"
    check = _at_most("open_fds_growth", objective, threshold, actual, why)
    if fds is None or actual is None:
        return check
    detail = f"{check.detail}; median {_fmt(fds['first_third_median'])} → {_fmt(fds['last_third_median'])}"
    return replace(check, detail=detail)


def _latency_drift(threshold: float, s: dict[str, Any]) -> SLOCheck:
    drift, why = _soak_part(s, "latency_drift", "latency drift")
    actual = None if drift is None else drift["ratio_p95"]
    objective = f"p95 of the last third ≤ {_fmt(threshold)} × the first third's"
    check = _at_most("latency_drift_p95", objective, threshold, actual, why, "×")
    if drift is None or actual is None:
        return check
    detail = f"{check.detail}; p95 {drift['first_third_p95_ms']:.1f} ms → {drift['last_third_p95_ms']:.1f} ms"
    return replace(check, detail=detail)


_CHECKS: dict[str, Callable[[float, dict[str, Any]], SLOCheck]] = {
    "success_rate": _success_rate,
    "p95_ms": _latency("p95"),
    "p99_ms": _latency("p99"),
    "max_gap": _max_gap,
    "max_duplicates": _max_duplicates,
    "recovery_s": _recovery,
    "max_stale_blocks": _max_stale_blocks,
    "stale_read_rate": _stale_read_rate,
    "wrong_answers": _wrong_answers,
    "head_regressions": _head_regressions,
    "breaker_opens": _breaker_opens,
    "memory_slope_mb_per_min": _memory_slope,
    "max_open_fds": _max_open_fds,
    "open_fds_growth": _open_fds_growth,
    "latency_drift_p95": _latency_drift,
}


def _percent(share: float) -> str:
    """0.99 → "99%", 0.9995 → "99.95%" (no trailing zeros)."""
    return f"{share * 100:.4f}".rstrip("0").rstrip(".") + "%"


def _fmt(value: float) -> str:
    return (
        f"{value:.0f}"
        if float(value).is_integer()
        else f"{value:.3g}"
        if abs(value) < 100
        else f"{value:.1f}"
    )
