"""Where traffic went: provider shares, retries, and how fast traffic left a broken provider and came back.

A provider's share = requests it served / all requests sent, failed ones included. Requests whose
answer names no provider (a gateway's own 503, a black-box gateway) are UNATTRIBUTED, a row of their own,
never dropped. For a fault whose target names a provider (exactly, or as the only provider name contained
in the target):
- drained_s: time from the fault start to the start of the first `step` bin after which, until the fault
  end, every bin with traffic gives the provider — together with the bin's unattributed failed requests,
  which may well have gone to it and failed (the clients did not see traffic leave) — at most
  DRAINED_FRACTION of its baseline share (None: never drained while the fault lasted);
- returned_s: time from the fault end to the start of the first `step` bin (before the horizon) in
  which its share is back to RETURNED_FRACTION of its baseline share (None: never came back).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis.loading import FaultWindow
from lab.analysis.traffic import group_indices, latency_summary

DRAINED_FRACTION = 0.10
RETURNED_FRACTION = 0.50
UNATTRIBUTED = "(unattributed)"


def provider_table(requests: pd.DataFrame) -> list[dict[str, Any]]:
    """Per serving provider, and UNATTRIBUTED for requests that name none: requests, share of all
    requests, success rate, p50/p95 latency of ok requests."""
    ok = requests["ok"].to_numpy()
    latency = requests["latency_ms"].to_numpy()
    groups = [
        (UNATTRIBUTED if name == "(unknown)" else name, index)
        for name, index in group_indices(requests["provider"])
    ]
    known = len(requests)
    rows = []
    for name, index in groups:
        served_ok = ok[index]
        lat = latency_summary(latency[index][served_ok])
        rows.append(
            {
                "provider": name,
                "requests": int(index.size),
                "share": index.size / known,
                "success_rate": float(np.count_nonzero(served_ok)) / index.size,
                "latency_ms": {"p50": lat["p50"], "p95": lat["p95"]},
            }
        )
    return sorted(rows, key=lambda r: -r["requests"])


def attempts_summary(attempts: np.ndarray) -> dict[str, Any]:
    """Attempts per request (requests that recorded it): mean, max, share retried, distribution."""
    values = attempts[np.isfinite(attempts)].astype(np.int64)
    if values.size == 0:
        return {"requests": 0, "mean": None, "max": None, "retried_share": None, "distribution": {}}
    capped = np.minimum(values, 5)
    counts = np.bincount(capped, minlength=6)
    distribution = {("5+" if k == 5 else str(k)): int(counts[k]) for k in range(6) if counts[k]}
    return {
        "requests": int(values.size),
        "mean": float(values.mean()),
        "max": int(values.max()),
        "retried_share": float(np.count_nonzero(values > 1)) / values.size,
        "distribution": distribution,
    }


def match_provider(target: str, providers: list[str]) -> str | None:
    if target in providers:
        return target
    contained = [p for p in providers if p and p in target]
    return max(contained, key=len) if contained else None


def fault_failover(
    requests: pd.DataFrame, fault: FaultWindow, horizon: float, baseline_from: float, step_s: float
) -> dict[str, Any] | None:
    """Drain and return times of the provider a fault targets (None: the target is not a provider)."""
    names = [str(c) for c in requests["provider"].cat.categories]
    provider = match_provider(fault.target, names)
    if provider is None:
        return None
    t = requests["t"].to_numpy()
    # The provider's code; a request that names no provider and failed gets FAILED_UNATTRIBUTED.
    codes = np.where(
        (requests["provider"].cat.codes.to_numpy() < 0) & ~requests["ok"].to_numpy(),
        FAILED_UNATTRIBUTED,
        requests["provider"].cat.codes.to_numpy(),
    )
    attempts = requests["attempts"].to_numpy()
    mine = names.index(provider)

    def window(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        s = slice(int(np.searchsorted(t, a, "left")), int(np.searchsorted(t, b, "left")))
        return t[s], codes[s]

    def share(c: np.ndarray) -> float | None:
        return float(np.count_nonzero(c == mine)) / c.size if c.size else None

    def attempts_mean(a: float, b: float) -> float | None:
        s = slice(int(np.searchsorted(t, a, "left")), int(np.searchsorted(t, b, "left")))
        return attempts_summary(attempts[s])["mean"]

    base_share = share(window(baseline_from, fault.start)[1])
    during = window(fault.start, fault.end)[1]
    result: dict[str, Any] = {
        "provider": provider,
        "baseline_share": base_share,
        "during_share": share(during),
        "during_unattributed_failed": int(np.count_nonzero(during == FAILED_UNATTRIBUTED)),
        "baseline_attempts_mean": attempts_mean(baseline_from, fault.start),
        "during_attempts_mean": attempts_mean(fault.start, fault.end),
        "drained_s": None,
        "returned_s": None,
    }
    if base_share is None:
        result["note"] = "no baseline: no requests before the fault (or an earlier fault was still active)"
        return result
    if not base_share:
        result["note"] = "the provider served no traffic before the fault"
        return result
    bin_t, bin_codes = window(fault.start, fault.end)
    known, own = _bins(bin_t - fault.start, bin_codes, mine, step_s, fault.end - fault.start, draining=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        too_much = (known > 0) & (own > DRAINED_FRACTION * base_share * known)
    if not too_much.any():
        result["drained_s"] = 0.0
    else:
        last = int(np.flatnonzero(too_much)[-1])
        if known[last + 1 :].any():
            result["drained_s"] = (last + 1) * step_s
    if fault.ended and horizon > fault.end:
        bin_t, bin_codes = window(fault.end, horizon)
        known, own = _bins(bin_t - fault.end, bin_codes, mine, step_s, horizon - fault.end)
        back = np.flatnonzero((known > 0) & (own >= RETURNED_FRACTION * base_share * known))
        if back.size:
            result["returned_s"] = float(back[0] * step_s)
    return result


FAILED_UNATTRIBUTED = -2  # a failed request that names no provider (pandas codes a missing one -1)


def _bins(
    offset: np.ndarray, codes: np.ndarray, mine: int, step_s: float, span: float, *, draining: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(requests, the provider's requests) per bin; `draining`: failed unattributed ones count as its."""
    n_bins = max(1, math.ceil(span / step_s))
    index = np.minimum((offset // step_s).astype(np.int64), n_bins - 1)
    everything = np.bincount(index, minlength=n_bins)
    mine_or_unknown = (codes == mine) | (codes == FAILED_UNATTRIBUTED) if draining else codes == mine
    own = np.bincount(index[mine_or_unknown], minlength=n_bins)
    return everything, own
