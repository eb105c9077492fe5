"""The run record: the files in a run directory, the contract between running and analysing.

Tables are directories of parquet part files. A writer buffers rows and closes a part about once a second
(write to a temporary name, then rename), so a run killed with SIGKILL leaves every closed part readable
and at most the last second unwritten. Events are JSON lines, flushed per line; a reader skips a torn last
line. Several processes (Locust workers, the orchestrator) may write the same table: each writer names its
parts with its own writer id.

A writer that cannot write (the disk is full, the directory is gone) keeps what it already closed, notes
the error once in its `WriteFailure` (shared by every writer of a `RunDir`, so a run can stop on it) and
drops what comes after; it never raises into the thread that feeds it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def new_run_id(name: str | None = None) -> str:
    """A run's id, also its directory's and its Docker resources' name: `<timestamp>-<name>-<6 hex>` (the
    name part cut so the whole stays within 61 characters), or `<timestamp>-<6 hex>` without a name."""
    suffix = uuid.uuid4().hex[:6]
    if name is None:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"[:54] + f"-{suffix}"


SCHEMA_VERSION = 1
_TS = pa.timestamp("us", tz="UTC")

# One row per JSON-RPC request sent (a batch is one row per entry, sharing `batch_id`).
REQUESTS = pa.schema(
    [
        ("ts", _TS),  # when the request was actually sent
        ("intended_ts", _TS),  # when the load's schedule meant to send it (= ts in the closed model)
        ("method", pa.string()),
        ("transport", pa.string()),  # "http" | "batch" | "ws"
        ("latency_ms", pa.float64()),  # service time: from the actual send to the answer
        ("response_ms", pa.float64()),  # response time: from the intended send to the answer
        ("ok", pa.bool_()),
        ("error_class", pa.string()),  # null when ok; one of ERROR_CLASSES
        ("http_status", pa.int32()),
        ("rpc_code", pa.int32()),
        ("provider", pa.string()),  # serving provider from the gateway's metadata, if any
        ("attempts", pa.int32()),
        ("batch_id", pa.string()),
        ("batch_size", pa.int32()),
        ("worker", pa.string()),
        ("client", pa.string()),  # the client whose view of the chain must be consistent (head never back)
        # The checker (lab.checker): what an answer said, and how it compared with the simulated chain.
        ("answer_block", pa.int64()),  # the block number the answer names (the head, for head answers)
        ("check", pa.string()),  # null: not checked; else one of CHECK_OUTCOMES
        ("check_detail", pa.string()),  # for a failed check: expected vs got, briefly
        ("answer_branch", pa.int64()),  # the chain branch the answer's block is on (its fork block; 0 = the
        # original chain): the analysis judges it against the run's reorgs
        ("stale_blocks", pa.int32()),  # head answers only: blocks behind the true head at send time
    ]
)

# One row per WebSocket notification a subscriber received.
HEADS = pa.schema(
    [
        ("ts", _TS),  # when the notification arrived
        ("subscriber", pa.string()),
        ("subscription", pa.string()),  # "newHeads" | "logs"
        ("block_number", pa.int64()),
        ("block_hash", pa.string()),
        ("parent_hash", pa.string()),
        ("block_timestamp", pa.int64()),  # the chain's own timestamp (s), for head delay
        ("provider", pa.string()),
        ("worker", pa.string()),
    ]
)

# Periodic snapshots of each provider's /_lab/stats.
PROVIDER_STATS = pa.schema(
    [
        ("ts", _TS),
        ("provider", pa.string()),
        ("head", pa.int64()),
        ("requests", pa.int64()),
        ("errors", pa.int64()),
        ("stats_json", pa.string()),  # the whole snapshot, for what the columns leave out
    ]
)

# Periodic snapshots of the gateway's Prometheus metrics, one row per sample.
METRICS = pa.schema(
    [
        ("ts", _TS),
        ("name", pa.string()),
        ("labels", pa.string()),  # JSON object
        ("value", pa.float64()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "requests": REQUESTS,
    "heads": HEADS,
    "provider_stats": PROVIDER_STATS,
    "metrics": METRICS,
}

# Event logs (JSON lines). faults: {"event": "start"|"end", "fault_id", "name", "action", "target",
# "ts", "params"}; gateway_events: the gateway's SSE events with the lab's receive time in "received_ts".
EVENT_LOGS = ("faults", "gateway_events")

# How a failed request is classified (the `error_class` column).
ERROR_CLASSES = (
    "timeout",  # no answer within the client's timeout
    "refused",  # the connection was refused (nothing listening)
    "reset",  # the peer reset or broke the connection
    "connection",  # another transport failure: closed mid-response, a torn HTTP answer, DNS, TLS
    "http_status",  # a non-2xx HTTP status other than 429, without a JSON-RPC error in its body
    "rate_limited",  # HTTP 429 or JSON-RPC -32005
    "rpc_error",  # a JSON-RPC error object (in a 2xx answer, or in a non-2xx body such as a gateway's 503)
    "not_sent",  # open model: the in-flight cap kept it from being sent (latency_ms null, response_ms
    # from its intended send to when it was refused)
    "invalid_response",  # not JSON-RPC, wrong id, missing batch entries
    "other",
)

# What the checker found of an answer (the `check` column); lab.checker defines them.
CHECK_OUTCOMES = (
    "ok",  # matches the simulated chain
    "stale",  # right once, but behind the head at send time (a lagging node, a cache)
    "wrong",  # contents differ from the canonical chain (a corrupt or foreign answer)
    "wrong_chain",  # the answer belongs to another chain id
)

MANIFEST = "manifest.json"


class WriteFailure:
    """The first error that stopped a writer of the run record (e.g. ENOSPC), noted once. Logged once,
    unless `quiet`: a RunDir's owner (`lab run`) checks it and reports it itself."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()
        self.error: OSError | None = None
        self.where: str | None = None
        self._noted = threading.Event()

    def note(self, where: str | os.PathLike[str], error: OSError) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error, self.where = error, str(where)
        if not self.quiet:
            log.error("the run record cannot be written: %s", self.describe())
        self._noted.set()

    def is_set(self) -> bool:
        return self._noted.is_set()

    def describe(self) -> str:
        """One line: what failed and where ("" when nothing did)."""
        if self.error is None:
            return ""
        return f"{_reason(self.error)} ({self.where})"


def _reason(error: OSError) -> str:
    """The error's reason as the OS words it; pyarrow's OSErrors carry the errno only in their text."""
    code = error.errno
    if code is None:
        found = re.search(r"\[errno (\d+)\]", str(error))
        code = int(found.group(1)) if found else None
    return os.strerror(code) if code else str(error)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _now_us() -> int:
    return time.time_ns() // 1000


def to_timestamp(value: float | int | None) -> int | None:
    """Unix seconds (float) to the microseconds the tables store."""
    return None if value is None else int(value * 1_000_000)


class TableWriter:
    """Appends rows to one table of a run directory, closing a part file every `flush_interval` seconds."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        table: str,
        *,
        writer_id: str | None = None,
        flush_interval: float = 1.0,
        autoflush: bool = True,
        failure: WriteFailure | None = None,
    ) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        self.schema = TABLES[table]
        self.directory = Path(run_dir) / table
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id or f"{os.getpid()}"
        self.flush_interval = flush_interval
        self.failure = failure or WriteFailure()
        self.failed = False  # this writer hit an error: rows are dropped from then on
        self.dropped = 0
        self._rows: list[Mapping[str, Any]] = []  # to be written, as given (columns at the flush: cheaper)
        self._lock = threading.Lock()
        self._seq = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if autoflush:
            self._thread = threading.Thread(target=self._autoflush, name=f"flush-{table}", daemon=True)
            self._thread.start()

    def append(self, row: Mapping[str, Any]) -> None:
        """Add a row; missing columns are null, others ignored. `ts` may be unix seconds (float) or
        microseconds (int). The writer keeps `row` until its part is written: do not change it after."""
        ts = row.get("ts")
        if isinstance(ts, float):
            row = {**row, "ts": int(ts * 1_000_000)}
        with self._lock:
            if self.failed:
                self.dropped += 1
                return
            self._rows.append(row)

    def flush(self) -> Path | None:
        """Close the buffered rows into a new part file; returns its path (None when nothing buffered or
        the write failed: the failure is noted and the rows are dropped)."""
        with self._lock:
            if not self._rows or self.failed:
                return None
            rows, self._rows = self._rows, []
            self._seq += 1
            seq = self._seq
        table = pa.Table.from_pylist(rows, schema=self.schema)
        final = self.directory / f"part-{self.writer_id}-{seq:06d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        try:
            pq.write_table(table, partial, compression="zstd")
            os.replace(partial, final)  # atomic: readers never see half a part
        except OSError as exc:
            _remove(partial)
            with self._lock:
                self.failed = True
                self.dropped += len(rows) + len(self._rows)
                self._rows = []
            self.failure.note(self.directory, exc)
            return None
        return final

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _autoflush(self) -> None:
        while not self._closed.wait(self.flush_interval):
            self.flush()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Appends JSON lines, one flush per line, so a killed process loses at most a torn last line."""

    def __init__(
        self, run_dir: str | os.PathLike[str], name: str, *, failure: WriteFailure | None = None
    ) -> None:
        if name not in EVENT_LOGS:
            raise ValueError(f"unknown event log {name!r}; known: {', '.join(EVENT_LOGS)}")
        self.path = Path(run_dir) / f"{name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.failure = failure or WriteFailure()
        self.failed = False  # a write failed: events are dropped from then on
        self.dropped = 0
        self._file = self.path.open("ab", buffering=0)  # unbuffered: a failed write leaves nothing behind
        self._lock = threading.Lock()

    def append(self, event: Mapping[str, Any]) -> None:
        line = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        with self._lock:
            if self.failed:
                self.dropped += 1
                return
            try:
                view = memoryview(line)
                while view:  # a raw write may be partial (the disk filling up): then the rest, or the error
                    written = self._file.write(view)
                    if not written:
                        raise OSError(errno.EIO, "nothing written")
                    view = view[written:]
            except OSError as exc:
                self.failed = True
                self.dropped += 1
                self.failure.note(self.path, exc)

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RunDir:
    """A run directory: where each part of the record lives. Its writers share one WriteFailure, which
    its owner checks (and reports) rather than have each writer log."""

    path: Path
    failure: WriteFailure = field(default_factory=lambda: WriteFailure(quiet=True), compare=False, repr=False)

    @classmethod
    def create(cls, root: str | os.PathLike[str], run_id: str) -> RunDir:
        path = Path(root) / run_id
        path.mkdir(parents=True, exist_ok=False)
        return cls(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write (or rewrite, e.g. to add the end time) the manifest atomically: on an error (OSError,
        raised) the previous manifest stays as it was and no temporary file is left."""
        data = {"schema_version": SCHEMA_VERSION, **manifest}
        partial = self.manifest_path.with_suffix(".json.tmp")
        try:
            partial.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
            os.replace(partial, self.manifest_path)
        except OSError:
            _remove(partial)
            raise

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory: no {MANIFEST}")
        return orjson.loads(self.manifest_path.read_bytes())

    def table_writer(self, table: str, **kwargs: Any) -> TableWriter:
        return TableWriter(self.path, table, failure=self.failure, **kwargs)

    def event_log(self, name: str) -> EventLog:
        return EventLog(self.path, name, failure=self.failure)

    def read_table(self, table: str) -> pd.DataFrame:
        return read_table(self.path, table)

    def read_events(self, name: str) -> list[dict[str, Any]]:
        return list(iter_events(self.path, name))


def read_arrow(run_dir: str | os.PathLike[str], table: str) -> pa.Table:
    """Every closed part of a table as one Arrow table (empty, with the schema, when there are none)."""
    schema = TABLES[table]
    parts = sorted((Path(run_dir) / table).glob("part-*.parquet"))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(pq.read_table(p, schema=schema) for p in parts)


def read_table(run_dir: str | os.PathLike[str], table: str) -> pd.DataFrame:
    """A table as a pandas DataFrame, sorted by `ts`, with `ts` as datetime64[us, UTC]."""
    df = read_arrow(run_dir, table).to_pandas()
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def iter_events(run_dir: str | os.PathLike[str], name: str) -> Iterator[dict[str, Any]]:
    """The events of a JSON-lines log; a torn last line (a killed writer) is skipped."""
    path = Path(run_dir) / f"{name}.jsonl"
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                if line.endswith(b"\n"):
                    raise ValueError(f"{path}: corrupt line (not the last): {line[:80]!r}") from None
                return  # torn last line
