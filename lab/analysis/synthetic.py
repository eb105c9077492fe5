"""Synthetic run records with planted answers, for tests, benchmarks and trying out reports.

A `SyntheticRun` describes steady traffic (evenly spaced requests, log-normal latencies, weighted methods
and providers) plus planted effects: fault events, error bursts, provider outages (traffic moves to the
other providers), latency shifts, WebSocket gaps/duplicates and gateway breaker events. `write_run` writes
it as a run directory in the format of `lab.record`: parquet parts with the record's schemas, events as
JSON lines through `EventLog`, the manifest through `RunDir`. Rows are generated in time slices, so ten
million requests need a few hundred MB, not gigabytes.

Every planted effect is deterministic in time (requests are evenly spaced, an error burst with rate 1.0
fails every request in its window), so a test can state the exact answer it expects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lab.record import TABLES, RunDir

DEFAULT_PROVIDERS: Mapping[str, float] = {"provider-a": 1.0, "provider-b": 1.0, "provider-c": 1.0}
DEFAULT_METHODS: Mapping[str, float] = {"eth_blockNumber": 0.5, "eth_call": 0.3, "eth_getBalance": 0.2}


@dataclass(frozen=True)
class Fault:
    """A fault as the fault executor records it: a start event and (unless `end_s` is None) an end event;
    with `failed` set, a single `failed` event with that error (it could not be applied)."""

    name: str
    start_s: float
    end_s: float | None
    target: str = "provider-a"
    action: str = "toxic"
    params: Mapping[str, Any] = field(default_factory=dict)
    failed: str | None = None


@dataclass(frozen=True)
class ErrorBurst:
    """Requests sent in [start_s, end_s) fail with probability `error_rate` (1.0: every one fails).

    With `provider` set, only requests served by that provider fail.
    """

    start_s: float
    end_s: float
    error_rate: float = 1.0
    error_class: str = "connection"
    provider: str | None = None


@dataclass(frozen=True)
class ProviderOutage:
    """No request is served by `provider` in [start_s, end_s): its share goes to the other providers, and
    the requests that would have gone to it take `attempts` attempts (the gateway tried it first)."""

    provider: str
    start_s: float
    end_s: float
    attempts: int = 2


@dataclass(frozen=True)
class LatencyShift:
    """Latencies of requests sent in [start_s, end_s) become `latency * factor + add_ms`."""

    start_s: float = 0.0
    end_s: float = math.inf
    factor: float = 1.0
    add_ms: float = 0.0


@dataclass(frozen=True)
class HeadsPlan:
    """newHeads notifications: one block per `block_time_s` for each subscriber, arriving `delay_s` after
    the block's timestamp; `missing` = (subscriber index, first, last) block numbers never delivered;
    `duplicates` = (subscriber index, block) delivered twice; `late` = (subscriber index, block, seconds)
    delivered that much later than its neighbours (out of order when it exceeds the block time)."""

    subscribers: int = 2
    block_time_s: float = 1.0
    delay_s: float = 0.05
    first_block: int = 1_000
    missing: Sequence[tuple[int, int, int]] = ()
    duplicates: Sequence[tuple[int, int]] = ()
    late: Sequence[tuple[int, int, float]] = ()
    provider: str = "provider-a"


@dataclass(frozen=True)
class ProcessPlan:
    """The gateway's process metrics as the metrics poller records them (`metrics` table), one sample of
    each every `interval_s`: resident memory `memory_mb` growing by `memory_mb_per_min` (a planted leak)
    plus uniform noise of ±`memory_noise_mb`, back to `memory_mb` at `restart_s` (a restart); open fds
    `fds` growing by `fds_per_min` (rounded down)."""

    interval_s: float = 5.0
    memory_mb: float = 60.0
    memory_mb_per_min: float = 0.0
    memory_noise_mb: float = 0.5
    fds: float = 40.0
    fds_per_min: float = 0.0
    restart_s: float | None = None


@dataclass
class SyntheticRun:
    """What to write; every time is in seconds from the run's start."""

    duration_s: float = 60.0
    rps: float = 100.0
    start_unix: float = 1_700_000_000.0
    methods: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_METHODS))
    providers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    latency_median_ms: float = 20.0
    latency_sigma: float = 0.5  # of log(latency): 0.5 gives p99 ≈ 3.2 × median
    base_error_rate: float = 0.0
    faults: Sequence[Fault] = ()
    bursts: Sequence[ErrorBurst] = ()
    outages: Sequence[ProviderOutage] = ()
    shifts: Sequence[LatencyShift] = ()
    heads: HeadsPlan | None = None
    process: ProcessPlan | None = None  # None: no metrics table (a black-box gateway)
    gateway_events: Sequence[Mapping[str, Any]] = ()  # "ts" relative to the run start; converted on write
    scenario: str = "synthetic"
    slos: Mapping[str, Any] | None = None
    regression: Mapping[str, Any] | None = None  # the scenario's `regression:` tolerances
    seed: int = 0
    workers: int = 1
    part_seconds: float = 60.0  # each worker closes one part per this much run time (a real run: 1 s)
    write_ended: bool = True  # False: a run killed before it wrote its end time


@dataclass(frozen=True)
class RunToRun:
    """How runs of one unchanged configuration differ as wholes (machine load, scheduling, placement):
    each repeat gets its own median latency (log-normal around the plan's), its own base error rate and
    error bursts that end a little earlier or later. The defaults are about what two real runs of a
    short scenario on a 2-core machine show (p50 ±12 % between an A/A pair)."""

    latency_sigma: float = 0.08  # standard deviation of log(median latency) between runs
    error_rate_sd: float = 0.0005  # of the base error rate between runs (clipped at 0)
    burst_jitter_s: float = 0.5  # each error burst ends up to this much later


def repeats(plan: SyntheticRun, runs: int, seed: int, variation: RunToRun = RunToRun()) -> list[SyntheticRun]:
    """`runs` repeats of `plan`, each with its own seed and its own run-to-run variation."""
    rng = np.random.default_rng(seed)
    plans = []
    for index in range(runs):
        bursts = [
            replace(b, end_s=b.end_s + float(rng.uniform(0, variation.burst_jitter_s))) for b in plan.bursts
        ]
        plans.append(
            replace(
                plan,
                seed=seed * 1_000 + index,
                latency_median_ms=plan.latency_median_ms
                * math.exp(variation.latency_sigma * rng.standard_normal()),
                base_error_rate=max(
                    0.0, plan.base_error_rate + variation.error_rate_sd * rng.standard_normal()
                ),
                bursts=bursts,
                start_unix=plan.start_unix + index * 3_600,
            )
        )
    return plans


def breaker_events(
    provider: str, opened_s: float, half_open_s: float, closed_s: float, transport: str = "http"
) -> list[dict[str, Any]]:
    """Gateway events for one breaker cycle: closed → open → half_open → closed (times from run start)."""
    cycle = [
        ("closed", "open", opened_s),
        ("open", "half_open", half_open_s),
        ("half_open", "closed", closed_s),
    ]
    return [
        {"type": "breaker", "provider": provider, "transport": transport, "from": a, "to": b, "ts": ts}
        for a, b, ts in cycle
    ]


def write_run(plan: SyntheticRun, path: str | os.PathLike[str]) -> Path:
    """Write `plan` as a run directory at `path` (created; must not exist) and return it."""
    run = RunDir(Path(path))
    run.path.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "run_id": run.path.name,
        "scenario": {
            "name": plan.scenario,
            "slos": dict(plan.slos or {}),
            **({"regression": dict(plan.regression)} if plan.regression else {}),
        },
        "seed": plan.seed,
        "started": plan.start_unix,
    }
    if plan.write_ended:
        manifest["ended"] = plan.start_unix + plan.duration_s
    run.write_manifest(manifest)
    _write_requests(plan, run.path)
    if plan.heads is not None:
        _write_table(run.path, "heads", "heads", [_heads_table(plan, plan.heads)])
    if plan.process is not None:
        _write_table(run.path, "metrics", "orchestrator", [_process_table(plan, plan.process)])
    with run.event_log("faults") as log:
        for event in _fault_events(plan):
            log.append(event)
    if plan.gateway_events:
        with run.event_log("gateway_events") as log:
            for gateway_event in sorted(plan.gateway_events, key=lambda e: e["ts"]):
                ts = plan.start_unix + float(gateway_event["ts"])
                log.append({**gateway_event, "ts": ts, "received_ts": ts + 0.001})
    return run.path


def _fault_events(plan: SyntheticRun) -> list[dict[str, Any]]:
    events = []
    for index, fault in enumerate(plan.faults):
        base = {
            "fault_id": f"f{index + 1}",
            "name": fault.name,
            "action": fault.action,
            "target": fault.target,
            "params": dict(fault.params),
        }
        if fault.failed is not None:
            events.append(
                {"event": "failed", **base, "ts": plan.start_unix + fault.start_s, "error": fault.failed}
            )
            continue
        events.append({"event": "start", **base, "ts": plan.start_unix + fault.start_s})
        if fault.end_s is not None:
            events.append({"event": "end", **base, "ts": plan.start_unix + fault.end_s})
    return sorted(events, key=lambda e: e["ts"])


def _weights(mapping: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    names = list(mapping)
    weights = np.array([mapping[n] for n in names], dtype=np.float64)
    return names, weights / weights.sum()


def _write_requests(plan: SyntheticRun, run_path: Path) -> None:
    total = round(plan.duration_s * plan.rps)
    if total == 0:
        return
    rng = np.random.default_rng(plan.seed)
    slice_rows = max(1, int(plan.part_seconds * plan.rps))
    for worker in range(plan.workers):
        # Worker w sends requests w, w + workers, ... so together they keep the exact planned rate.
        tables = [
            _requests_slice(
                plan, rng, np.arange(first + worker, min(first + slice_rows, total), plan.workers)
            )
            for first in range(0, total, slice_rows)
        ]
        _write_table(run_path, "requests", f"w{worker}", [t for t in tables if t.num_rows])


def _requests_slice(plan: SyntheticRun, rng: np.random.Generator, index: np.ndarray) -> pa.Table:
    n = index.size
    t = index / plan.rps  # seconds from the run start, evenly spaced
    method_names, method_p = _weights(plan.methods)
    provider_names, provider_p = _weights(plan.providers)
    method = rng.choice(len(method_names), size=n, p=method_p)
    provider = rng.choice(len(provider_names), size=n, p=provider_p)
    attempts = np.ones(n, dtype=np.int32)
    for outage in plan.outages:
        down = provider_names.index(outage.provider)
        moved = (provider == down) & (t >= outage.start_s) & (t < outage.end_s)
        others = [i for i in range(len(provider_names)) if i != down]
        other_p = provider_p[others] / provider_p[others].sum()
        provider[moved] = np.asarray(others)[rng.choice(len(others), size=int(moved.sum()), p=other_p)]
        attempts[moved] = outage.attempts
    latency = plan.latency_median_ms * np.exp(plan.latency_sigma * rng.standard_normal(n))
    for shift in plan.shifts:
        inside = (t >= shift.start_s) & (t < shift.end_s)
        latency[inside] = latency[inside] * shift.factor + shift.add_ms
    error_class = np.full(n, None, dtype=object)
    failed = rng.random(n) < plan.base_error_rate
    error_class[failed] = "rpc_error"
    for burst in plan.bursts:
        hit = (t >= burst.start_s) & (t < burst.end_s) & (rng.random(n) < burst.error_rate)
        if burst.provider is not None:
            hit &= provider == provider_names.index(burst.provider)
        error_class[hit] = burst.error_class
        failed |= hit
    ok = ~failed
    ts_us = np.round((plan.start_unix + t) * 1_000_000).astype(np.int64)
    columns: dict[str, Any] = {
        "ts": pa.array(ts_us, type=pa.int64()).cast(TABLES["requests"].field("ts").type),
        "method": np.asarray(method_names, dtype=object)[method],
        "transport": np.full(n, "http", dtype=object),
        "latency_ms": latency,
        "ok": ok,
        "error_class": error_class,
        "http_status": np.where(ok, 200, 502).astype(np.int32),
        "rpc_code": np.full(n, None, dtype=object),
        "provider": np.asarray(provider_names, dtype=object)[provider],
        "attempts": attempts,
        "batch_id": np.full(n, None, dtype=object),
        "batch_size": np.full(n, None, dtype=object),
        "worker": np.full(n, "synthetic", dtype=object),
    }
    columns["intended_ts"] = columns["ts"]  # sent when meant: response time = service time
    columns["response_ms"] = latency
    schema = TABLES["requests"]
    for name in schema.names:  # columns this generator does not plan (the checker's): null
        columns.setdefault(name, pa.nulls(n, schema.field(name).type))
    return pa.table(columns, schema=schema)


def _heads_table(plan: SyntheticRun, heads: HeadsPlan) -> pa.Table:
    blocks = int(plan.duration_s // heads.block_time_s)
    numbers = heads.first_block + np.arange(blocks, dtype=np.int64)
    block_time = np.arange(blocks) * heads.block_time_s  # run-relative chain time of each block
    block_ts_unix = np.floor(plan.start_unix + block_time).astype(np.int64)
    rows: dict[str, list[Any]] = {name: [] for name in ("t", "subscriber", "number", "block_ts")}
    for sub in range(heads.subscribers):
        keep = np.ones(blocks, dtype=bool)
        for s, first, last in heads.missing:
            if s == sub:
                keep &= (numbers < first) | (numbers > last)
        arrival = block_time + heads.delay_s
        for s, block, seconds in heads.late:
            if s == sub:
                arrival = np.where(numbers == block, arrival + seconds, arrival)
        extra = [b for s, b in heads.duplicates if s == sub]
        dup_mask = np.isin(numbers, extra)
        for mask, offset in ((keep, 0.0), (keep & dup_mask, 0.01)):
            rows["t"].append(arrival[mask] + offset)
            rows["subscriber"].append(np.full(int(mask.sum()), f"sub-{sub}", dtype=object))
            rows["number"].append(numbers[mask])
            rows["block_ts"].append(block_ts_unix[mask])
    t = np.concatenate(rows["t"])
    number = np.concatenate(rows["number"])
    order = np.argsort(t, kind="stable")
    n = t.size
    ts_us = np.round((plan.start_unix + t[order]) * 1_000_000).astype(np.int64)
    columns: dict[str, Any] = {
        "ts": pa.array(ts_us, type=pa.int64()).cast(TABLES["heads"].field("ts").type),
        "subscriber": np.concatenate(rows["subscriber"])[order],
        "subscription": np.full(n, "newHeads", dtype=object),
        "block_number": number[order],
        "block_hash": np.char.add("0xh", number[order].astype(str)).astype(object),
        "parent_hash": np.char.add("0xh", (number[order] - 1).astype(str)).astype(object),
        "block_timestamp": np.concatenate(rows["block_ts"])[order],
        "provider": np.full(n, heads.provider, dtype=object),
        "worker": np.full(n, "synthetic", dtype=object),
    }
    return pa.table(columns, schema=TABLES["heads"])


def _process_table(plan: SyntheticRun, process: ProcessPlan) -> pa.Table:
    t = np.arange(0.0, plan.duration_s, process.interval_s)
    noise = np.random.default_rng(plan.seed + 1).uniform(-1, 1, t.size) * process.memory_noise_mb
    since = t if process.restart_s is None else np.where(t >= process.restart_s, t - process.restart_s, t)
    memory = (process.memory_mb + process.memory_mb_per_min * since / 60 + noise) * 1e6
    fds = np.floor(process.fds + process.fds_per_min * t / 60)
    ts = np.round((plan.start_unix + np.concatenate([t, t])) * 1e6).astype("int64")
    names = ["process_resident_memory_bytes"] * t.size + ["process_open_fds"] * t.size
    columns = {
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "name": names,
        "labels": ["{}"] * (2 * t.size),
        "value": np.concatenate([memory, fds]),
    }
    return pa.table(columns, schema=TABLES["metrics"])


def _write_table(run_path: Path, table: str, writer_id: str, parts: Sequence[pa.Table]) -> None:
    """Parts named and renamed into place as `lab.record.TableWriter` does."""
    directory = run_path / table
    directory.mkdir(parents=True, exist_ok=True)
    for seq, part in enumerate(parts, start=1):
        final = directory / f"part-{writer_id}-{seq:06d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(part, partial, compression="zstd")
        os.replace(partial, final)
