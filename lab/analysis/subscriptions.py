"""WebSocket newHeads delivery per subscriber: gaps, duplicates, order, silences, head delay.

Per subscriber, over its newHeads notifications in arrival order (rows whose subscription is null count
as newHeads; other subscriptions such as logs are only counted):
- duplicates: notifications whose (block number, block hash) the subscriber had already received;
- reorgs: a number received again with a different hash (not a duplicate): the new branch of a reorg;
- regressions: notifications with a lower number than one received before that are not a reorg's new
  branch (a duplicate of an old head, or an old head never seen): the subscriber's head went backwards;
- missed_reorgs: heads whose parent is not the block the subscriber last received at the number below
  (a reorg it was never shown: it still holds orphaned heads);
- missing: block numbers between its lowest and highest received number that never arrived;
- max_gap: the longest run of consecutive missing numbers; gaps lists each run with the arrival time of
  the head that ended it;
- out_of_order: notifications with a lower number than one received before them;
- longest_silence_s: the longest time between consecutive notifications, counting the time from the
  last one to the run end;
- head_delay_s: arrival time minus the block's own timestamp (whole seconds on chain, so delays carry up
  to 1 s of rounding), over first arrivals;
- behind_at_end: the highest number any subscriber received minus this subscriber's highest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_MAX_LISTED_GAPS = 50


def analyse_subscriptions(heads: pd.DataFrame, t0: float, run_end: float) -> dict[str, Any]:
    kind = heads["subscription"].astype("object")
    is_new_heads = (kind.isna() | (kind == "newHeads")).to_numpy() & heads["block_number"].notna().to_numpy()
    new_heads = heads[is_new_heads]
    top = int(new_heads["block_number"].max()) if len(new_heads) else 0
    subscribers = [
        _subscriber(str(name), group, t0, run_end, top)
        for name, group in new_heads.groupby("subscriber", observed=True, sort=True, dropna=False)
    ]
    delays = np.concatenate([s.pop("_delays") for s in subscribers]) if subscribers else np.array([])
    delays = delays[np.isfinite(delays)]
    return {
        "heads": len(new_heads),
        "other_notifications": int(len(heads) - len(new_heads)),
        "subscribers": len(subscribers),
        "missing": sum(s["missing"] for s in subscribers),
        "duplicates": sum(s["duplicates"] for s in subscribers),
        "max_gap": max((s["max_gap"] for s in subscribers), default=0),
        "max_duplicates_per_subscriber": max((s["duplicates"] for s in subscribers), default=0),
        "out_of_order": sum(s["out_of_order"] for s in subscribers),
        "reorgs": sum(s["reorgs"] for s in subscribers),
        "missed_reorgs": sum(s["missed_reorgs"] for s in subscribers) if subscribers else None,
        "regressions": sum(s["regressions"] for s in subscribers) if subscribers else None,
        "longest_silence_s": max((s["longest_silence_s"] for s in subscribers), default=None),
        "head_delay_s": _delay_summary(delays),
        "per_subscriber": subscribers,
    }


def _subscriber(name: str, rows: pd.DataFrame, t0: float, run_end: float, top: int) -> dict[str, Any]:
    t = rows["t"].to_numpy()
    numbers = rows["block_number"].to_numpy().astype(np.int64)
    hashes = rows["block_hash"].astype("object").fillna("").to_numpy()
    keys = pd.DataFrame({"n": numbers, "h": hashes})
    duplicate = keys.duplicated().to_numpy()
    repeated_number = keys["n"].duplicated().to_numpy()
    unique = np.unique(numbers)
    gaps = np.diff(unique) - 1
    gap_at = np.flatnonzero(gaps > 0)
    first_arrival = pd.Series(t).groupby(numbers).min()  # number -> first arrival
    prior_max = np.maximum.accumulate(numbers)
    backwards = np.concatenate([[False], numbers[1:] < prior_max[:-1]])
    out_of_order = int(np.count_nonzero(backwards))
    reorg = repeated_number & ~duplicate  # a number seen before, a new hash: the new branch
    silences = np.diff(np.concatenate([t, [max(run_end, t[-1])]]))
    longest = int(np.argmax(silences))
    block_ts = rows["block_timestamp"].to_numpy().astype(np.float64)
    delays = (t[~duplicate] + t0) - block_ts[~duplicate]
    return {
        "subscriber": name,
        "heads": int(numbers.size),
        "first_block": int(unique[0]),
        "last_block": int(unique[-1]),
        "missing": int(gaps.sum()),
        "max_gap": int(gaps.max(initial=0)),
        "gaps": [
            {
                "from_block": int(unique[i] + 1),
                "to_block": int(unique[i + 1] - 1),
                "blocks": int(gaps[i]),
                "ended_at_s": float(first_arrival.loc[unique[i + 1]]),
            }
            for i in gap_at[:_MAX_LISTED_GAPS]
        ],
        "duplicates": int(np.count_nonzero(duplicate)),
        "reorgs": int(np.count_nonzero(reorg)),
        "regressions": int(np.count_nonzero(backwards & ~reorg)),
        "missed_reorgs": _missed_reorgs(numbers, hashes, rows),
        "out_of_order": out_of_order,
        "longest_silence_s": float(silences[longest]),
        "longest_silence_from_s": float(t[longest]),
        "behind_at_end": int(top - unique[-1]),
        "head_delay_s": _delay_summary(delays[np.isfinite(delays)]),
        "_delays": delays,
    }


def _missed_reorgs(numbers: np.ndarray, hashes: np.ndarray, rows: pd.DataFrame) -> int:
    """Heads whose parent hash is not the hash last received at the number below (when one was)."""
    if "parent_hash" not in rows:
        return 0
    parents = rows["parent_hash"].astype("object").to_numpy()
    last: dict[int, str] = {}
    missed = 0
    for number, block_hash, parent in zip(numbers.tolist(), hashes.tolist(), parents.tolist(), strict=True):
        below = last.get(number - 1)
        if below and isinstance(parent, str) and parent != below:
            missed += 1
        if block_hash:
            last[number] = block_hash
    return missed


def _delay_summary(delays: np.ndarray) -> dict[str, float | None]:
    if delays.size == 0:
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = np.quantile(delays, [0.5, 0.95])
    return {"p50": float(p50), "p95": float(p95), "max": float(delays.max())}
