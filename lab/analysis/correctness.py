"""Were the answers right? The checker's columns (lab.checker) judged over the whole run.

- wrong answers: `check` wrong or wrong_chain, subscribers' newHeads whose hash names no block of the
  chain or a block of an orphaned branch, or whose parent is not the head the subscriber holds below it
  (a reorg it was never shown), and answers on an orphaned branch: an answer whose block is
  on a branch other than the canonical one at its send time (the run's `reorg` faults say which branch
  is canonical when; within `REORG_GRACE_S` of a reorg either branch is right, as the reorg reaches the
  providers one by one and answers already on their way carry the old one);
- stale reads: `check` stale (a head behind the true head at send time, a null for a block that
  existed); `max_stale_blocks` is the largest lag of a head answer;
- head regressions: a client (the `client` column) got a head lower than one it had already received,
  i.e. from a request that completed before this one was sent; plus the subscribers' regressions
  (lab.analysis.subscriptions: a head lower than one received before, not through a reorg);
- first anomalies: the first answer of each kind, with what was expected and what came, and who served it.

A run recorded without the checker has no checked answers: its figures are None, and an SLO on them
fails as `no_data` (a missing measurement is never a pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lab.analysis.loading import FaultWindow
from lab.provider.chain import Chain

REORG_GRACE_S = 2.0
ANOMALY_KINDS = (
    "wrong",
    "wrong_chain",
    "orphaned",
    "stale",
    "head_regression",
    "head_wrong",
    "head_orphaned",
)


def _branch_timeline(faults: list[FaultWindow]) -> list[tuple[float, tuple[int, ...]]]:
    """(time, forks in force from then on) after each reorg, forks as lab.provider.chain keeps them."""
    timeline: list[tuple[float, tuple[int, ...]]] = []
    forks: tuple[int, ...] = ()
    for fault in sorted(faults, key=lambda f: f.start):
        fork = fault.params.get("fork_block") if fault.action == "reorg" else None
        if not isinstance(fork, int) or isinstance(fork, bool) or fork < 1:
            continue
        updated = (*(f for f in forks if f < fork), fork)
        if updated != forks:
            forks = updated
            timeline.append((fault.start, forks))
    return timeline


def _canonical(numbers: np.ndarray, forks: tuple[int, ...]) -> np.ndarray:
    """The branch each block number is on under `forks` (0: the original chain)."""
    if not forks:
        return np.zeros(numbers.shape, dtype=np.float64)
    table = np.asarray((0, *forks), dtype=np.float64)
    return table[np.searchsorted(np.asarray(forks, dtype=np.float64), numbers, side="right")]


def unknown_forks(faults: list[FaultWindow]) -> list[str]:
    """The reorg faults whose fork block the record does not have (their branches cannot be judged)."""
    return [
        f.fault_id
        for f in faults
        if f.action == "reorg"
        and not (isinstance(f.params.get("fork_block"), int) and not isinstance(f.params["fork_block"], bool))
    ]


def orphaned_mask(requests: pd.DataFrame, faults: list[FaultWindow]) -> np.ndarray:
    """Rows whose answer names a block of a branch that was not canonical at its send time."""
    return _orphaned(
        requests["t"].to_numpy(),
        requests["answer_block"].to_numpy(dtype=np.float64, na_value=np.nan),
        requests["answer_branch"].to_numpy(dtype=np.float64, na_value=np.nan),
        faults,
    )


def subscriber_heads(heads: pd.DataFrame, faults: list[FaultWindow], chain_id: int) -> dict[str, Any]:
    """newHeads notifications judged like answers: a hash that names no block of the chain is wrong, a
    head of a branch that was not canonical when it arrived is orphaned (a subscriber left on the old
    branch by its gateway), both with the first of each."""
    kind = heads["subscription"].astype("object")
    rows = np.flatnonzero(
        (kind.isna() | (kind == "newHeads")).to_numpy() & heads["block_hash"].notna().to_numpy()
    )
    chain = Chain(chain_id, 0, 1.0, cache_blocks=1)
    hashes = heads["block_hash"].astype("object").to_numpy()[rows]
    decoded = [chain.block_id_of(str(h)) for h in hashes]
    known = np.asarray([d is not None for d in decoded], dtype=bool)
    number = np.asarray([d[0] if d else np.nan for d in decoded], dtype=np.float64)
    branch = np.asarray([d[1] if d else np.nan for d in decoded], dtype=np.float64)
    t = heads["t"].to_numpy()[rows]
    orphaned = _orphaned(t, number, branch, faults) & known
    result: dict[str, Any] = {
        "checked": int(rows.size),
        "wrong": int((~known).sum()),
        "orphaned": int(orphaned.sum()),
    }
    for name, mask in (("wrong", ~known), ("orphaned", orphaned)):
        hit = np.flatnonzero(mask)
        if hit.size:
            row = heads.iloc[int(rows[hit[0]])]
            result[f"first_{name}"] = {
                "t": float(row["t"]),
                "subscriber": str(row["subscriber"]),
                "block_number": int(row["block_number"]) if pd.notna(row["block_number"]) else None,
                "block_hash": str(row["block_hash"]),
            }
    return result


def _orphaned(t: np.ndarray, number: np.ndarray, branch: np.ndarray, faults: list[FaultWindow]) -> np.ndarray:
    orphaned = np.zeros(t.size, dtype=bool)
    candidates = np.flatnonzero(np.isfinite(branch) & np.isfinite(number))  # answers that name a block
    if candidates.size == 0:
        return orphaned
    timeline = _branch_timeline(faults)
    starts = np.asarray([0.0] + [at for at, _ in timeline])
    states: list[tuple[int, ...]] = [(), *(forks for _, forks in timeline)]
    # which state was in force at each send
    epoch = np.maximum(np.searchsorted(starts, t[candidates], side="right") - 1, 0)
    for k, forks in enumerate(states):
        rows = candidates[epoch == k]
        if rows.size == 0:
            continue
        right = _canonical(number[rows], forks) == branch[rows]
        if k + 1 < len(states):  # just before the next reorg: its branch may already be out
            near = t[rows] >= starts[k + 1] - REORG_GRACE_S
            right |= near & (_canonical(number[rows], states[k + 1]) == branch[rows])
        if k > 0:  # just after this reorg: the previous branch may still be on its way
            near = t[rows] < starts[k] + REORG_GRACE_S
            right |= near & (_canonical(number[rows], states[k - 1]) == branch[rows])
        orphaned[rows[~right]] = True
    return orphaned


def head_regressions(requests: pd.DataFrame) -> tuple[int | None, np.ndarray]:
    """How many head answers were lower than a head the same client had already received (None: no head
    answer with a client), and the mask of those rows."""
    mask = np.zeros(len(requests), dtype=bool)
    stale = requests["stale_blocks"].to_numpy(dtype=np.float64, na_value=np.nan)
    number = requests["answer_block"].to_numpy(dtype=np.float64, na_value=np.nan)
    client = requests["client"]
    heads = np.isfinite(stale) & np.isfinite(number) & client.notna().to_numpy()
    rows = np.flatnonzero(heads)
    if rows.size == 0:
        return None, mask
    t = requests["t"].to_numpy()[rows]
    done = t + np.nan_to_num(requests["latency_ms"].to_numpy()[rows]) / 1000.0
    codes = (
        client.cat.codes.to_numpy()[rows] if hasattr(client, "cat") else pd.factorize(client.iloc[rows])[0]
    )
    sent = pd.DataFrame({"t": t, "client": codes, "row": rows})
    received = pd.DataFrame({"done": done, "client": codes, "head": number[rows]}).sort_values(
        "done", kind="stable"
    )
    received["seen"] = received.groupby("client", sort=False)["head"].cummax()
    merged = pd.merge_asof(
        sent.sort_values("t", kind="stable"),
        received[["done", "client", "seen"]],
        left_on="t",
        right_on="done",
        by="client",
        allow_exact_matches=True,
    )
    back = merged["seen"].to_numpy() > number[merged["row"].to_numpy()]
    mask[merged["row"].to_numpy()[back]] = True
    return int(back.sum()), mask


def analyse_correctness(
    requests: pd.DataFrame,
    faults: list[FaultWindow],
    subscription: dict[str, Any] | None = None,
    heads: pd.DataFrame | None = None,
    chain_id: int = 1,
) -> dict[str, Any]:
    check = requests["check"]
    if not isinstance(check.dtype, pd.CategoricalDtype):
        check = check.astype("category")
    codes = check.cat.codes.to_numpy()  # compare small integer codes, not 10 M strings

    def outcome(name: str) -> np.ndarray:
        categories = list(check.cat.categories)
        return codes == categories.index(name) if name in categories else np.zeros(codes.size, dtype=bool)

    checked_mask = codes >= 0
    checked = int(checked_mask.sum())
    orphaned = orphaned_mask(requests, faults) & checked_mask
    is_ok = outcome("ok") & ~orphaned
    is_wrong = outcome("wrong") & ~orphaned
    is_wrong_chain = outcome("wrong_chain")
    is_stale = outcome("stale") & ~orphaned
    stale = requests["stale_blocks"].to_numpy(dtype=np.float64, na_value=np.nan)
    head_answers = np.isfinite(stale)
    regressions, regressed = head_regressions(requests)
    sub_regressions = (subscription or {}).get("regressions")
    total_regressions = None
    if regressions is not None or sub_regressions is not None:
        total_regressions = (regressions or 0) + (sub_regressions or 0)
    sub = subscriber_heads(heads, faults, chain_id) if heads is not None and len(heads) else None
    missed = (subscription or {}).get("missed_reorgs") or 0
    wrong_heads = (sub["wrong"] + sub["orphaned"]) if sub else 0
    wrong_heads += missed
    wrong_total: int | None = int(is_wrong.sum() + is_wrong_chain.sum() + orphaned.sum()) + wrong_heads
    unknown = unknown_forks(faults)
    notes = []
    if unknown:  # which branch was canonical when is unknown: orphaned answers cannot be told apart
        wrong_total = None
        notes.append(
            f"the record lacks the fork block of reorg fault(s) {', '.join(unknown)}: answers on a reorg's "
            "branches cannot be judged, so wrong answers are unknown"
        )
    anomalies = {}
    for name, mask in (
        ("wrong", is_wrong),
        ("wrong_chain", is_wrong_chain),
        ("orphaned", orphaned),
        ("stale", is_stale),
        ("head_regression", regressed),
    ):
        first = _first(requests, mask, name)
        if first is not None:
            anomalies[name] = first
    for name in ("wrong", "orphaned"):
        first_head = (sub or {}).get(f"first_{name}")
        if first_head is not None:
            anomalies[f"head_{name}"] = {
                "kind": f"head_{name}",
                "count": sub[name] if sub else 0,
                "t": first_head["t"],
                "method": "newHeads",
                "client": first_head["subscriber"],
                "provider": None,
                "expected": None if name == "wrong" else "a head of the canonical branch",
                "got": f"{first_head['block_hash']} (block {first_head['block_number']})",
                "detail": None,
            }
    return {
        "checked": checked,
        "ok": int(is_ok.sum()),
        "wrong_answers": wrong_total if checked or sub else None,
        "subscriber_heads": sub,
        "subscriber_missed_reorgs": missed,
        "notes": notes,
        "wrong": int(is_wrong.sum()),
        "wrong_chain": int(is_wrong_chain.sum()),
        "orphaned": int(orphaned.sum()),
        "stale": int(is_stale.sum()),
        "stale_read_rate": float(is_stale.sum() / checked) if checked else None,
        "head_answers": int(head_answers.sum()),
        "max_stale_blocks": int(np.nanmax(stale)) if head_answers.any() else None,
        "client_head_regressions": regressions,
        "subscriber_head_regressions": sub_regressions,
        "head_regressions": total_regressions,
        "reorgs": [
            {"at_s": f.start, "target": f.target, "fork_block": f.params.get("fork_block")}
            for f in faults
            if f.action == "reorg"
        ],
        "first_anomalies": anomalies,
    }


def _first(requests: pd.DataFrame, mask: np.ndarray, kind: str) -> dict[str, Any] | None:
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return None
    row = requests.iloc[int(rows[0])]
    detail = row["check_detail"]
    if kind == "orphaned":
        detail = (
            f"block {int(row['answer_block'])} of branch {int(row['answer_branch'])}, "
            "no longer canonical at send time (a reorg replaced it)"
        )
    elif kind == "head_regression":
        detail = f"head {int(row['answer_block'])}, lower than one this client had already received"
    expected, got = _split_detail(detail)
    return {
        "kind": kind,
        "count": int(rows.size),
        "t": float(row["t"]),
        "method": _text(row["method"]),
        "client": _text(row["client"]),
        "provider": _text(row["provider"]),
        "expected": expected,
        "got": got,
        "detail": _text(detail),
    }


def _split_detail(detail: Any) -> tuple[str | None, str | None]:
    """("X", "Y") from the checker's "...: expected X, got Y" (None, None when it is not in that form)."""
    if not isinstance(detail, str) or "expected " not in detail or ", got " not in detail:
        return None, None
    tail = detail.split("expected ", 1)[1]
    expected, got = tail.rsplit(", got ", 1)
    return expected, got


def _text(value: Any) -> str | None:
    return (
        None
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA
        else str(value)
    )
