"""Load a run record for analysis: only the columns analysis needs, strings as categoricals, times as
float seconds from the run's start, rows sorted by time.

Bad input (not a run directory, an unreadable manifest or part, malformed SLOs) raises `RecordError`,
whose message names the file and the field; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pydantic

from lab.record import MANIFEST, TABLES, iter_events
from lab.scenario.slos import SLOSpec

REQUEST_COLUMNS = ("ts", "method", "latency_ms", "response_ms", "ok", "error_class", "provider", "attempts")
# The checker's (lab.checker; null in a record from before it, or with the checker off).
CHECKER_COLUMNS = ("client", "answer_block", "answer_branch", "stale_blocks", "check", "check_detail")
HEAD_COLUMNS = (
    "ts",
    "subscriber",
    "subscription",
    "block_number",
    "block_hash",
    "parent_hash",
    "block_timestamp",
)
_CATEGORICAL = frozenset(
    {
        "method",
        "transport",
        "error_class",
        "provider",
        "subscriber",
        "subscription",
        "client",
        "check",
        "check_detail",
    }
)


class RecordError(Exception):
    """The directory is not a readable run record."""


@dataclass(frozen=True)
class FaultWindow:
    """One fault from faults.jsonl; times in seconds from the run start."""

    fault_id: str
    name: str
    action: str
    target: str
    params: dict[str, Any]
    start: float
    end: float  # the end event, or the run's end when there is none
    ended: bool  # False: no end event (the fault lasted until the run ended)
    end_reason: str | None = None  # why it was lifted early, e.g. "run ended"
    lift_error: str | None = None  # lifting it failed: it may have outlasted its window


@dataclass(frozen=True)
class FailedFault:
    """A `failed` event in faults.jsonl: the fault could not be applied, so it has no window to analyse."""

    fault_id: str
    name: str
    action: str
    target: str
    params: dict[str, Any]
    at: float  # seconds from the run start of the attempt
    error: str


@dataclass
class RunData:
    path: Path
    manifest: dict[str, Any]
    scenario_name: str
    slos: SLOSpec
    t0: float  # unix seconds of time 0 (the run's start)
    duration: float  # seconds from t0 to the run's end
    # t (s from t0, the actual send), method, latency_ms (the headline: response time, see
    # `headline_latency`), service_ms, ok, error_class, provider, attempts, and the checker's client,
    # answer_block, answer_branch, stale_blocks, check, check_detail
    requests: pd.DataFrame
    heads: pd.DataFrame  # t, subscriber, subscription, block_number, block_hash, block_timestamp (unix s)
    faults: list[FaultWindow]
    failed_faults: list[FailedFault]
    gateway_events: list[dict[str, Any]] | None  # None: no gateway_events.jsonl in the record
    process_metrics: pd.DataFrame | None = None  # t, name, value of the gateway's process_* metrics;
    # None: the record has no metrics table (a black-box gateway)
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise RecordError(f"{path}: not a directory")
    if not manifest_path.exists():
        raise RecordError(f"{path} is not a run directory: no {MANIFEST}")
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise RecordError(f"{manifest_path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def scenario_of(manifest: dict[str, Any], manifest_path: Path) -> tuple[str, SLOSpec]:
    """The scenario's name (the run directory's name when absent) and its validated SLOs."""
    scenario = manifest.get("scenario") or {}
    if not isinstance(scenario, dict):
        raise RecordError(f"{manifest_path}: field 'scenario' must be an object")
    name = str(scenario.get("name") or manifest_path.parent.name)
    try:
        slos = SLOSpec.model_validate(scenario.get("slos") or {})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"scenario.slos.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RecordError(f"{manifest_path}: {problems}") from None
    return name, slos


def load_run(path: str | Path) -> RunData:
    """Read a run directory for analysis."""
    path = Path(path)
    manifest = read_manifest(path)
    name, slos = scenario_of(manifest, path / MANIFEST)
    warnings: list[str] = []
    requests_us, requests = _read_table(path, "requests", (*REQUEST_COLUMNS, *CHECKER_COLUMNS))
    heads_us, heads = _read_table(path, "heads", HEAD_COLUMNS)
    fault_events = _read_events(path, "faults")
    gateway_events = (
        _read_events(path, "gateway_events") if (path / "gateway_events.jsonl").exists() else None
    )

    started = _manifest_time(manifest, "started", path)
    ended = _manifest_time(manifest, "ended", path)
    observed = [
        *(_edges_s(requests_us)),
        *(_edges_s(heads_us)),
        *(float(e["ts"]) for e in fault_events if _is_number(e.get("ts"))),
    ]
    if started is None:
        started = min(observed) if observed else 0.0
    if ended is None:
        if observed:
            warnings.append("the manifest has no end time (a killed run?): the run ends at its last record")
        ended = max([*observed, started])
    t0_us = round(started * 1_000_000)
    requests["t"] = (requests_us - t0_us) / 1_000_000
    headline_latency(requests)
    heads["t"] = (heads_us - t0_us) / 1_000_000
    duration = max(ended - started, 0.0)
    faults, failed_faults = _fault_windows(fault_events, started, duration, warnings)
    process_metrics = _read_process_metrics(path, started)
    events = [_relative_event(e, started) for e in gateway_events] if gateway_events is not None else None
    return RunData(
        path=path,
        manifest=manifest,
        scenario_name=name,
        slos=slos,
        t0=started,
        duration=duration,
        requests=requests,
        heads=heads,
        faults=faults,
        failed_faults=failed_faults,
        gateway_events=events,
        process_metrics=process_metrics,
        warnings=warnings,
    )


def headline_latency(requests: pd.DataFrame) -> None:
    """Make `latency_ms` the response time (from the intended send: what a client experiences, waiting
    included) and keep the service time (from the actual send) as `service_ms`. Every latency figure of
    the analysis (SLOs, report, recovery) is then the response time. A record without response times
    (written before the open model) has only service times, which then stand in for both."""
    service = requests["latency_ms"].to_numpy()
    response = requests.pop("response_ms").to_numpy() if "response_ms" in requests else service
    requests["service_ms"] = service
    requests["latency_ms"] = np.where(np.isfinite(response), response, service)


def _read_process_metrics(path: Path, t0: float) -> pd.DataFrame | None:
    """The soak checks' rows of the `metrics` table: t (s from t0), name, value; None without the table."""
    files = sorted(str(p) for p in (path / "metrics").glob("part-*.parquet"))
    if not files:
        return None
    from lab.analysis.soak import PROCESS_METRICS

    try:
        arrow = ds.dataset(files, format="parquet", schema=TABLES["metrics"]).to_table(
            columns=["ts", "name", "value"], filter=ds.field("name").isin(list(PROCESS_METRICS))
        )
    except (pa.ArrowException, OSError) as exc:
        raise RecordError(f"{path / 'metrics'}: a part file cannot be read: {exc}") from None
    ts_us = arrow.column("ts").cast(pa.int64()).to_numpy()
    return pd.DataFrame(
        {
            "t": (ts_us - round(t0 * 1_000_000)) / 1_000_000,
            "name": arrow.column("name").to_numpy(zero_copy_only=False),
            "value": arrow.column("value").to_numpy(),
        }
    )


def _read_table(path: Path, table: str, columns: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Microsecond timestamps and the other columns, both sorted by time."""
    schema = TABLES[table]
    files = sorted(str(p) for p in (path / table).glob("part-*.parquet"))
    wanted = [c for c in columns if c != "ts"]
    dictionary = [c for c in wanted if c in _CATEGORICAL]
    read_schema = pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in dictionary else f
            for f in schema
        ]
    )
    if files:
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=dictionary))
        try:
            arrow = ds.dataset(files, format=fmt, schema=read_schema).to_table(columns=["ts", *wanted])
        except (pa.ArrowException, OSError) as exc:
            raise RecordError(f"{path / table}: a part file cannot be read: {exc}") from None
    else:
        arrow = read_schema.empty_table().select(["ts", *wanted])
    ts = arrow.column("ts").cast(pa.int64()).to_numpy()
    # Parts from several writers interleave in time; stable, so equal times keep their record order.
    order = np.argsort(ts, kind="stable") if ts.size > 1 and bool(np.any(ts[1:] < ts[:-1])) else None
    if order is not None:
        ts = ts[order]
    data: dict[str, Any] = {}
    for name in wanted:  # one column at a time, each freed from the Arrow table once converted (peak memory)
        values = _column(arrow.column(name), name)
        arrow = arrow.drop_columns([name])
        if isinstance(values, pd.Series):
            values = values.array
        data[name] = values if order is None else values[order]
    return ts, pd.DataFrame(data, copy=False)


def _column(column: pa.ChunkedArray, name: str) -> Any:
    if name in _CATEGORICAL:
        return column.unify_dictionaries().to_pandas() if column.num_chunks else column.to_pandas()
    if name == "ok":
        return column.fill_null(False).to_numpy()  # an unrecorded outcome is not a success
    if name in ("attempts", "stale_blocks"):
        return column.cast(pa.float32()).to_numpy()  # null → NaN
    if name in ("answer_block", "answer_branch"):
        return column.cast(pa.float64()).to_numpy()  # null → NaN (block numbers stay exact below 2^53)
    return column.to_numpy()


def _edges_s(ts_us: np.ndarray) -> Iterable[float]:
    return (ts_us[0] / 1e6, ts_us[-1] / 1e6) if ts_us.size else ()


def _read_events(path: Path, name: str) -> list[dict[str, Any]]:
    try:
        events = list(iter_events(path, name))
    except ValueError as exc:
        raise RecordError(str(exc)) from None
    return [e for e in events if isinstance(e, dict)]


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _manifest_time(manifest: dict[str, Any], key: str, path: Path) -> float | None:
    """Unix seconds from a number or an ISO-8601 string (naive means UTC)."""
    value = manifest.get(key)
    if value is None:
        return None
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise RecordError(
        f"{path / MANIFEST}: field {key!r} must be unix seconds or an ISO-8601 time, got {value!r}"
    )


def _fault_windows(
    events: list[dict[str, Any]], t0: float, duration: float, warnings: list[str]
) -> tuple[list[FaultWindow], list[FailedFault]]:
    """Windows of the faults that were applied (a `start` and its first `end`), and the attempts that
    failed (a `failed` event: never applied, so never analysed as a window)."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    failed: list[FailedFault] = []
    for index, event in enumerate(events):
        if not _is_number(event.get("ts")):
            warnings.append(f"faults.jsonl: event {index + 1} has no numeric 'ts'; ignored")
            continue
        fault_id = str(event.get("fault_id") or f"{event.get('name', 'fault')}#{index}")
        kind = event.get("event")
        if kind == "start" and fault_id not in starts:
            starts[fault_id] = event
        elif kind == "end" and fault_id in starts and fault_id not in ends:
            ends[fault_id] = event
        elif kind == "end" and fault_id not in starts:
            warnings.append(f"faults.jsonl: end of fault {fault_id!r} without a start; ignored")
        elif kind == "failed":
            failed.append(_failed_fault(fault_id, event, t0))
            warnings.append(
                f"fault {fault_id!r} ({failed[-1].name}) could not be applied: {failed[-1].error}; "
                "it is not analysed"
            )
    windows = []
    for fault_id, event in starts.items():
        start = float(event["ts"]) - t0
        end_event = ends.get(fault_id)
        params = event.get("params")
        lift_error = str(end_event["error"]) if end_event and end_event.get("error") else None
        windows.append(
            FaultWindow(
                fault_id=fault_id,
                name=str(event.get("name") or fault_id),
                action=str(event.get("action") or ""),
                target=str(event.get("target") or ""),
                params=params if isinstance(params, dict) else {},
                start=start,
                end=max(float(end_event["ts"]) - t0, start) if end_event else max(duration, start),
                ended=end_event is not None,
                end_reason=str(end_event["reason"]) if end_event and end_event.get("reason") else None,
                lift_error=lift_error,
            )
        )
        if end_event is None:
            warnings.append(
                f"fault {fault_id!r} ({windows[-1].name}) has no end event: it lasted until the run end"
            )
        if lift_error:
            warnings.append(
                f"fault {fault_id!r} ({windows[-1].name}) could not be lifted ({lift_error}): "
                "it may have lasted past its window"
            )
    return sorted(windows, key=lambda w: (w.start, w.fault_id)), sorted(failed, key=lambda f: f.at)


def _failed_fault(fault_id: str, event: dict[str, Any], t0: float) -> FailedFault:
    params = event.get("params")
    return FailedFault(
        fault_id=fault_id,
        name=str(event.get("name") or fault_id),
        action=str(event.get("action") or ""),
        target=str(event.get("target") or ""),
        params=params if isinstance(params, dict) else {},
        at=float(event["ts"]) - t0,
        error=str(event.get("error") or "unknown error"),
    )


def _relative_event(event: dict[str, Any], t0: float) -> dict[str, Any]:
    """The event with "t": seconds from the run start (its own "ts", else the lab's "received_ts")."""
    ts = event.get("ts") if _is_number(event.get("ts")) else event.get("received_ts")
    return {**event, "t": float(ts) - t0 if _is_number(ts) else math.nan}
