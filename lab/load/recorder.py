"""Writes what Locust sees into the run record: every request (a row per batch entry) into `requests`,
every subscription notification into `heads`, from Locust's `events.request` hook.

The lab's users put what the record needs into the event's `context`:
    {"transport": "http"|"batch"|"ws", "entries": [{"method", "ok", "error_class", "rpc_code",
     ...checker columns}, ...], "http_status", "provider", "attempts", "batch_id", "client",
     "intended_ts" (unix s; None: sent when intended)}      -> rows of `requests`
    {"head": {...HEADS columns...}}                           -> a row of `heads`
A request without such a context (another locustfile's user) is still recorded, from Locust's own
arguments. This module does not import Locust: `install(events)` takes its events object.
"""

from __future__ import annotations

import atexit
import functools
import io
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lab.record import TABLES, TableWriter, to_timestamp


def worker_id() -> str:
    """Names this process's part files: host and pid (Locust's --processes forks share a host)."""
    return _worker_id(os.getpid())


@functools.cache  # by pid: a forked worker gets its own; every request's row names it
def _worker_id(pid: int) -> str:
    return f"{socket.gethostname()}-{pid}"


class Recorder:
    """Appends rows for one process; writers are created lazily so a forked worker gets its own.

    `flusher`, when given, closes the parts instead of each writer's own flush thread: it is started once
    per process with this recorder's `flush` (Locust's process: a greenlet that hands each flush to a
    real OS thread, so that building and compressing a part never stalls the load's event loop)."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        flusher: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.flush_interval = flush_interval
        self.flusher = flusher
        self._writers: dict[str, TableWriter] = {}
        self._pid = os.getpid()
        self._flusher_pid: int | None = None
        self._lock = threading.Lock()

    def _writer(self, table: str) -> TableWriter:
        if os.getpid() != self._pid:  # forked: the parent's buffers and flush thread are not ours
            self._writers, self._pid = {}, os.getpid()
        writer = self._writers.get(table)
        if writer is None:
            with self._lock:
                writer = self._writers.get(table)
                if writer is None:
                    writer = TableWriter(
                        self.run_dir,
                        table,
                        writer_id=worker_id(),
                        flush_interval=self.flush_interval,
                        autoflush=self.flusher is None,
                    )
                    self._writers[table] = writer
                    if self.flusher is not None and self._flusher_pid != os.getpid():
                        self._flusher_pid = os.getpid()
                        self.flusher(self.flush_interval, self.flush)
        return writer

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int | None = None,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        """Locust's `events.request` listener."""
        ctx = context or {}
        if ctx.get("record") is False:
            return
        head = ctx.get("head")
        if head is not None:
            self._writer("heads").append({**head, "worker": worker_id()})
            return
        writer = self._writer("requests")
        entries = ctx.get("entries") or [
            {
                "method": ctx.get("method", name),
                "ok": exception is None,
                "error_class": None if exception is None else ctx.get("error_class", "other"),
                "rpc_code": ctx.get("rpc_code"),
            }
        ]
        # Service time from the actual send (Locust's response_time); response time from the intended
        # send (the open model's schedule; the closed model sends when it means to). A request the
        # in-flight cap kept back (`not_sent`) has no service time: its response time runs to its refusal.
        intended = ctx.get("intended_ts")
        if intended is None:
            intended = start_time
        if start_time is None or intended is None:
            response_ms = response_time
        else:
            response_ms = (start_time - intended) * 1000 + (response_time or 0.0)
        common = {
            "ts": start_time,
            "intended_ts": to_timestamp(intended),
            "response_ms": response_ms,
            "client": ctx.get("client"),
            "transport": ctx.get("transport", "http"),
            "latency_ms": response_time,
            "http_status": ctx.get("http_status"),
            "provider": ctx.get("provider"),
            "attempts": ctx.get("attempts"),
            "batch_id": ctx.get("batch_id"),
            "batch_size": len(entries) if ctx.get("batch_id") else None,
            "worker": worker_id(),
        }
        for entry in entries:
            writer.append({**common, **entry})

    def flush(self) -> None:
        for writer in list(self._writers.values()):
            writer.flush()

    def close(self) -> None:
        for writer in list(self._writers.values()):
            writer.close()
        self._writers = {}


_installed: Recorder | None = None


def warm_up() -> None:
    """Write one row of each table to memory: the first parquet write of a process initialises pyarrow's
    codecs and pools (close to a second on a busy machine), which would otherwise stall the load at its
    first flush. Done at install, before Locust forks its worker processes."""
    for schema in TABLES.values():
        row = pa.table({name: [None] for name in schema.names}, schema=schema)
        pq.write_table(row, io.BytesIO(), compression="zstd")


def _flush_off_the_event_loop(interval: float, flush: Callable[[], None]) -> None:
    """Every `interval`, `flush` in gevent's pool of real threads (Locust's process runs on gevent; its
    threading is patched into greenlets, so a writer's own flush thread would block the event loop
    while it builds and compresses a part: at thousands of requests a second, tens of milliseconds of
    schedule lag each second). pyarrow releases the GIL while it encodes and writes."""
    import gevent

    def loop() -> None:
        pool = gevent.get_hub().threadpool
        while True:
            gevent.sleep(interval)
            pool.apply(flush)

    gevent.spawn(loop)


def install(events: Any, run_dir: str | os.PathLike[str] | None) -> Recorder | None:
    """Record this Locust process's requests into `run_dir` (once per process, whatever the number of
    locustfiles calling it). Returns the recorder, or None when there is no run directory."""
    global _installed
    if run_dir is None:
        return None
    if _installed is None:
        _installed = Recorder(run_dir, flusher=_flush_off_the_event_loop)
        warm_up()
        events.request.add_listener(_installed.on_request)
        events.quitting.add_listener(lambda **_: _installed.close() if _installed else None)
        atexit.register(_installed.close)
    return _installed
