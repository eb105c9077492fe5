"""Analyse a loaded run: every figure of the report, the summary written to summary.json, the SLO verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lab.analysis import completeness, failover
from lab.analysis.breakers import analyse_breakers
from lab.analysis.correctness import REORG_GRACE_S, analyse_correctness
from lab.analysis.faults import FaultSeries, RecoverySettings, analyse_faults
from lab.analysis.loading import RunData
from lab.analysis.slo import SLOResult, evaluate
from lab.analysis.soak import Soak, analyse_soak
from lab.analysis.subscriptions import analyse_subscriptions
from lab.analysis.traffic import LATENCY_KIND, Timeline, latency_summary, per_method, request_stats, timeline

SUMMARY_SCHEMA = "lab.summary/1"
DEFAULT_RECOVERY_TARGET = 0.99
# A recovery window holds at least this many requests at the run's mean rate (so one stray error or slow
# request cannot make it miss a 99 % target or the 5 % latency share), up to MAX_WINDOW_S.
MIN_WINDOW_REQUESTS = 300
MAX_WINDOW_S = 30.0


@dataclass
class Analysis:
    run: RunData
    settings: RecoverySettings
    summary: dict[str, Any]
    timeline: Timeline
    recovery_series: list[FaultSeries]
    slo: SLOResult
    soak: Soak


def recovery_settings(
    run: RunData, window_s: float = 5.0, step_s: float = 0.25, baseline_s: float = 30.0
) -> RecoverySettings:
    """`window_s` is the shortest window: sparser traffic gets longer ones (MIN_WINDOW_REQUESTS)."""
    target = run.slos.success_rate if run.slos.success_rate is not None else DEFAULT_RECOVERY_TARGET
    p95 = float(run.slos.p95_ms) if run.slos.p95_ms is not None else None
    rate = len(run.requests) / run.duration if run.duration > 0 else 0.0
    if rate > 0:
        window_s = max(window_s, min(MAX_WINDOW_S, MIN_WINDOW_REQUESTS / rate))
    return RecoverySettings(
        target=target, window_s=window_s, step_s=step_s, baseline_s=baseline_s, latency_slo_ms=p95
    )


def analyse(run: RunData, settings: RecoverySettings | None = None) -> Analysis:
    settings = settings or recovery_settings(run)
    requests = run.requests
    ok = requests["ok"].to_numpy()
    overall = request_stats(ok, requests["latency_ms"].to_numpy(), requests["error_class"], run.duration)
    overall["latency_kind"] = LATENCY_KIND
    overall["service_ms"] = latency_summary(requests["service_ms"].to_numpy()[ok])
    # Recovery is judged up to the load's planned end: what is sent while Locust shuts down is no
    # steady state (nor evidence of one).
    planned = completeness.planned_duration(run.manifest)
    load_end = min(run.duration, planned) if planned is not None else run.duration
    faults, series = analyse_faults(requests, run.faults, load_end, settings)
    for fault_summary, fault in zip(faults, run.faults, strict=True):
        fault_summary["failover"] = failover.fault_failover(
            requests,
            fault,
            fault_summary["horizon_s"],
            fault_summary["baseline"]["from_s"],
            settings.share_step_s,
        )
    providers = failover.provider_table(requests)
    gateway = gateway_of(run.manifest)
    breakers = analyse_breakers(run.gateway_events, run.duration)
    if not gateway["admin_api"] and run.gateway_events is None:
        breakers["unknown"] = (
            f"the {gateway['adapter']} gateway has no admin API the lab can read: its breakers (if any) "
            "cannot be seen from outside; failover shows in the provider shares"
        )
    served = requests["ok"].to_numpy() & requests["provider"].isna().to_numpy()
    unattributed_failed = ~requests["ok"].to_numpy() & requests["provider"].isna().to_numpy()
    soak = analyse_soak(run.process_metrics, requests, run.duration)
    subscription = analyse_subscriptions(run.heads, run.t0, run.duration)
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "run_id": run.run_id,
        "scenario": run.scenario_name,
        "run_dir": str(run.path.resolve()),
        "started": datetime.fromtimestamp(run.t0, UTC).isoformat(),
        "gateway": gateway,
        "duration_s": run.duration,
        **overall,
        "methods": per_method(requests, run.duration),
        "faults": faults,
        "failed_faults": [
            {
                "fault_id": f.fault_id,
                "name": f.name,
                "action": f.action,
                "target": f.target,
                "at_s": f.at,
                "error": f.error,
            }
            for f in run.failed_faults
        ],
        "providers": {p["provider"]: p["share"] for p in providers},
        "failover": {
            "providers": providers,
            "attempts": failover.attempts_summary(requests["attempts"].to_numpy()),
            "unattributed": int(served.sum()),  # ok, but no response said which provider served
            "unattributed_failed": int(unattributed_failed.sum()),  # failed, naming no provider
        },
        "breakers": breakers,
        "subscription": subscription,
        "correctness": analyse_correctness(
            requests, run.faults, subscription, run.heads, chain_id_of(run.manifest)
        ),
        "soak": soak.summary,
        "slos": run.slos.model_dump(exclude_none=True),
        "definitions": definitions(settings),
        "warnings": run.warnings,
    }
    summary["completeness"] = run_completeness(run)
    slo = evaluate(run.slos, summary)
    summary["slo"] = slo.to_dict()
    summary["verdict"] = slo.verdict
    return Analysis(run, settings, _plain(summary), timeline(requests, run.duration), series, slo, soak)


def run_completeness(run: RunData) -> dict[str, Any]:
    """Whether the run's evidence is whole (lab.analysis.completeness): its reasons when it is not."""
    times = [frame["t"].to_numpy() for frame in (run.requests, run.heads) if len(frame)]
    last = max(float(t.max()) for t in times) if times else None
    failed = [
        {"fault_id": f.fault_id, "action": f.action, "target": f.target, "error": f.error}
        for f in run.failed_faults
    ]
    attempted = {f.fault_id for f in run.faults} | {f.fault_id for f in run.failed_faults}
    return completeness.assess(
        run.manifest,
        ran_s=run.duration,
        has_end=run.manifest.get("ended") is not None,
        last_record_s=last,
        failed_faults=failed,
        attempted_fault_ids=attempted,
    )


def chain_id_of(manifest: dict[str, Any]) -> int:
    """The chain id the run's providers served (the scenario's; 1 when the manifest does not say)."""
    scenario = manifest.get("scenario")
    topology = scenario.get("topology") if isinstance(scenario, dict) else None
    chain_id = topology.get("chain_id") if isinstance(topology, dict) else None
    return chain_id if isinstance(chain_id, int) and not isinstance(chain_id, bool) else 1


def gateway_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The gateway under test as the manifest records it: adapter, image and id, external or not."""
    recorded = manifest.get("gateway") or {}
    image: dict[str, Any] = recorded["image"] if isinstance(recorded.get("image"), dict) else {}
    if "adapter" not in recorded:  # a record from before adapters: the GatewaySpec itself
        image = (manifest.get("images") or {}).get("gateway") or {}
    return {
        "adapter": str(recorded.get("adapter") or recorded.get("kind") or "reference"),
        "adapter_file": recorded.get("adapter_file"),
        "image": image.get("ref"),
        "image_id": image.get("id"),
        "external": bool(recorded.get("external")),
        "url": recorded.get("url"),
        "admin_api": bool(recorded.get("admin_api", True)),
        "variables": recorded.get("variables") or {},
    }


def definitions(settings: RecoverySettings) -> dict[str, str]:
    return {
        "latency": "response time: from the request's intended send (the load's schedule) to its answer, "
        "what a client experiences including any wait to be sent; over successful requests only; quantiles "
        "by numpy 'linear' (Hyndman-Fan type 7), exact. Every latency figure and SLO is this one",
        "service_time": "from the request's actual send to its answer (what most load tools report; it "
        "leaves out the wait behind a stalled server: coordinated omission)",
        "success_rate": "ok requests / requests sent; a request with no recorded outcome counts as failed",
        "recovery": settings.describe(),
        "baseline": f"the {settings.baseline_s:g} s before a fault, cut at the end of any earlier fault",
        "failover": (
            f"drained: the target provider's share stays ≤ {failover.DRAINED_FRACTION:.0%} of its baseline "
            f"share; returned: its share is back to {failover.RETURNED_FRACTION:.0%} of baseline "
            f"({settings.share_step_s:g} s bins); failed requests that name no provider count against "
            "draining (the clients still failed: traffic did not leave)"
        ),
        "error_window": "a fault's first failed request to its last, until the next fault or the run end",
        "max_gap": "the longest run of consecutive block numbers a subscriber never received",
        "correctness": "every successful answer checked against the simulated chain at its send time "
        "(lab.checker): wrong = contents differ from the canonical chain (wrong_chain: another chain id; "
        f"orphaned: a block of a branch a reorg had replaced, {REORG_GRACE_S:g} s after the reorg on); "
        "stale = behind the head at send time; head regression = a client got a head lower than one it "
        "had already received, or a subscriber a lower head not through a reorg",
        "memory_slope": "Theil-Sen slope (median of pairwise slopes) of the gateway's "
        "process_resident_memory_bytes over the run, MB (10^6 bytes) per minute",
        "open_fds": "the gateway's process_open_fds: maximum, and growth = median of the last third of the "
        "run minus median of the first third",
        "latency_drift": "p95 of successful requests sent in the last third of the run / p95 of those sent "
        "in the first third",
    }


def _plain(value: Any) -> Any:
    """numpy scalars to Python, NaN to None: summary.json must be plain, valid JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
