"""Sessions of the web UI: each swarm start → stop (or the master's shutdown) is a run of its own.

Locust's processes (the workers, in the compose lab) record every request and head into LAB_RUN_DIR, the
*inbox*; the master files each closed part file from there into the run directory of the session it
belongs to (`<reports>/<run id>/`, beside the inbox), so every session is a complete run record:

- its own manifest: `started`, `ended`, the load as set in the web UI's start form (and its later edits);
- its own `faults.jsonl`, whose fault ids are unique within it (failed actions as `failed` events; the
  faults still active at stop lifted, their end events written before the session ends);
- its `requests` and `heads` tables.

Parts are moved, never copied (a rename on the same volume: atomic); a part that arrives after the stop
(the workers close a part about once a second) is the tail of the last session, so the inbox always
drains into the latest session. A session left running by a master that died is closed when the next
master starts (`recover`): it ends at its last record, and its faults get end events saying so.

While a session runs, the filed request parts also feed per-second figures (requests/s, errors/s, p50
and p95 of the successful requests' latency: the report's timeline, live) for the Faults tab's charts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lab.record import EventLog, RunDir, iter_events, new_run_id

log = logging.getLogger(__name__)

SOURCE = "webui-session"
FILED_TABLES = ("requests", "heads")
SCENARIO = {
    "name": "compose-session",
    "description": "a session of the Locust web UI: the record from a swarm's start to its stop",
}
LIVE_SECONDS = 3600  # the charts keep the last hour of per-second figures


SETTLE_S = (
    10  # a second's parts have all arrived this much later: its percentiles are kept, not its latencies
)


@dataclass
class SecondBin:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # of the successful requests (ms), until settled
    settled: tuple[float | None, float | None] | None = None  # (p50, p95) once settled

    def percentiles(self) -> tuple[float | None, float | None]:
        if self.settled is not None:
            return self.settled
        if not self.latencies:
            return None, None
        p50, p95 = np.percentile(self.latencies, [50, 95])
        return float(p50), float(p95)

    def settle(self) -> None:
        """Keep the percentiles only: an hour of seconds at a thousand requests each stays small."""
        if self.settled is None:
            self.settled, self.latencies = self.percentiles(), []


class Session:
    """One session's run directory, its manifest, fault log and live figures."""

    def __init__(self, run_dir: RunDir, manifest: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.faults = run_dir.event_log("faults")
        self.windows: dict[str, dict[str, Any]] = {}  # fault id -> {action, target, start, end, failed}
        self.bins: dict[int, SecondBin] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Session:
        """A session recorded earlier (by this master or another), its fault windows read back."""
        run_dir = RunDir(path)
        session = cls(run_dir, run_dir.read_manifest())
        for event in iter_events(path, "faults"):
            session._window(event)
        return session

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def running(self) -> bool:
        return self.manifest.get("ended") is None

    def save(self, **fields: Any) -> None:
        self.manifest.update(fields)
        try:
            self.run_dir.write_manifest(self.manifest)
        except OSError as exc:  # the last good manifest stays; the page says so through the log
            log.error("the session's manifest cannot be written: %s", exc)

    def record(self, event: Mapping[str, Any]) -> None:
        self.faults.append(event)
        self._window(event)

    def _window(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            fault_id = str(event.get("fault_id"))
            kind, ts = event.get("event"), event.get("ts")
            if kind in ("start", "failed"):
                self.windows.setdefault(
                    fault_id,
                    {
                        "fault_id": fault_id,
                        "action": event.get("action"),
                        "target": event.get("target"),
                        "start": ts,
                        "end": ts if kind == "failed" else None,
                        "failed": kind == "failed",
                    },
                )
            elif kind == "end" and fault_id in self.windows and self.windows[fault_id]["end"] is None:
                self.windows[fault_id]["end"] = ts

    def add_requests(self, ts_s: np.ndarray, latency_ms: np.ndarray, ok: np.ndarray) -> None:
        if not len(ts_s):
            return
        started = float(self.manifest["started"])
        seconds = np.floor(ts_s - started).astype(np.int64)  # bins from the session's start
        with self._lock:
            for second in np.unique(seconds):
                inside = seconds == second
                bin_ = self.bins.setdefault(int(second), SecondBin())
                bin_.requests += int(inside.sum())
                bin_.errors += int((~ok[inside]).sum())
                good = latency_ms[inside & ok]
                bin_.latencies.extend(float(v) for v in good[np.isfinite(good)])
            latest = max(self.bins)
            for second in [s for s in self.bins if s < latest - LIVE_SECONDS]:
                del self.bins[second]
            for second, old in self.bins.items():
                if second < latest - SETTLE_S:
                    old.settle()

    def live(self, now: float) -> dict[str, Any]:
        """Per-second figures and the fault windows, in seconds from the session's start."""
        started = float(self.manifest["started"])
        ended = self.manifest.get("ended")
        # While running, the last second or two are still arriving (parts close about once a second).
        complete = math.floor(now - started) - 2 if ended is None else None
        with self._lock:
            rows = []
            for second in sorted(self.bins):
                if complete is not None and second > complete:
                    break
                b = self.bins[second]
                p50, p95 = b.percentiles()
                rows.append([second, b.requests, b.errors, p50, p95])
            windows = [
                {
                    **w,
                    "start": round(float(w["start"]) - started, 3),
                    "end": None if w["end"] is None else round(float(w["end"]) - started, 3),
                }
                for w in self.windows.values()
            ]
        return {
            "run_id": self.run_id,
            "started": started,
            "ended": ended,
            "running": ended is None,
            "elapsed": round((float(ended) if ended is not None else now) - started, 3),
            "columns": ["t", "requests_per_s", "errors_per_s", "p50_ms", "p95_ms"],
            "rows": rows,
            "faults": windows,
        }

    def close(self) -> None:
        self.faults.close()


class Sessions:
    """The sessions of one web UI (one Locust master): starts, stops and files the record into them."""

    def __init__(
        self,
        inbox: Path,
        root: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.inbox = Path(inbox)
        self.root = Path(root) if root is not None else self.inbox.parent
        self.clock = clock
        self.settings = dict(settings or {})  # the load's settings from the environment (methods, ...)
        self.current: Session | None = None
        self.latest: Session | None = None
        self.form: dict[str, Any] = {}  # the web UI's last start form
        self._skip: set[Path] = set()  # parts no session owns (recorded before any session here)
        self._lock = threading.RLock()

    # --- the life of a session ---------------------------------------------------------------------
    def note_form(self, form: Mapping[str, Any]) -> None:
        """The web UI's start (or edit) form, as submitted: what the manifest calls the load."""
        with self._lock:
            self.form = dict(form)
            if self.current is not None:
                changes = [*self.current.manifest.get("load_changes", []), {"ts": self.clock(), **self.form}]
                self.current.save(load=self._load(), load_changes=changes)

    def _load(self, runner: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The load set in the UI: users and spawn rate (Locust's, else the form's), the form as sent,
        and the traffic's settings from the environment (the method mix, subscribers, timeout)."""
        runner = dict(runner or {})
        form = dict(self.form)
        for key, field_name, kind in (("users", "user_count", int), ("spawn_rate", "spawn_rate", float)):
            if runner.get(key) is None and form.get(field_name) not in (None, ""):
                with contextlib.suppress(ValueError):
                    runner[key] = kind(form[field_name])
        if runner.get("host") is None and form.get("host"):
            runner["host"] = form["host"]
        return {**runner, "form": form, "settings": self.settings}

    def start(self, runner: Mapping[str, Any] | None = None) -> Session:
        """A new session (a swarm started): ends a running one first, files the inbox's tail."""
        with self._lock:
            if self.current is not None:
                self.stop(outcome="replaced")
            self.file_parts()
            now = self.clock()
            run_id = new_run_id("compose")
            run_dir = RunDir.create(self.root, run_id)
            session = Session(
                run_dir,
                {
                    "run_id": run_id,
                    "source": SOURCE,
                    "scenario": dict(SCENARIO),
                    "load": self._load(runner),
                    "load_changes": [],
                    "inbox": str(self.inbox),
                    "plan": [],
                    "played": [],
                    "outcome": "running",
                    "started": now,
                    "ended": None,
                },
            )
            session.save()
            self.current = self.latest = session
            return session

    def stop(self, *, outcome: str = "stopped") -> Session | None:
        """End the running session (its faults must be lifted before: their ends belong to it)."""
        with self._lock:
            session, self.current = self.current, None
            if session is None:
                return None
            self.file_parts()
            session.save(ended=self.clock(), outcome=outcome)
            return session

    def record(self, event: Mapping[str, Any]) -> None:
        """A fault event, into the running session (else the latest: a late lift belongs to it)."""
        with self._lock:
            session = self.current or self.latest
        if session is None:
            log.warning("fault event %s outside any session: not recorded", event.get("fault_id"))
            return
        session.record(event)

    # --- the record ----------------------------------------------------------------------------------
    def file_parts(self) -> int:
        """Move the closed parts in the inbox into the latest session; returns how many were moved."""
        import pyarrow.parquet as pq

        with self._lock:
            session = self.latest
            if session is None:
                return 0
            moved = 0
            for table in FILED_TABLES:
                for part in sorted((self.inbox / table).glob("part-*.parquet")):
                    if part in self._skip:
                        continue
                    target = _move(part, session.path / table)
                    if target is None:
                        continue
                    moved += 1
                    if table == "requests":
                        try:
                            data = pq.read_table(target, columns=["ts", "latency_ms", "ok"])
                        except (OSError, ValueError) as exc:  # the report will say; the chart goes on
                            log.warning("cannot read %s for the live charts: %s", target, exc)
                            continue
                        session.add_requests(
                            data.column("ts").cast("int64").to_numpy() / 1e6,
                            data.column("latency_ms").fill_null(math.nan).to_numpy(zero_copy_only=False),
                            data.column("ok").fill_null(False).to_numpy(zero_copy_only=False),
                        )
            return moved

    def recover(self) -> list[dict[str, Any]]:
        """At the master's start: close the sessions a previous master left running (the inbox's tail
        filed into the latest first; each ends at its last record, its active faults ended there with
        the reason). Returns the faults those sessions left active (what the next master undoes)."""
        left_active: list[dict[str, Any]] = []
        with self._lock:
            sessions = sorted(_session_dirs(self.root), key=lambda pm: float(pm[1].get("started") or 0))
            if not sessions:  # parts from before any session: no session owns them
                self._skip = {p for t in FILED_TABLES for p in (self.inbox / t).glob("part-*.parquet")}
                return []
            for table in FILED_TABLES:
                for part in sorted((self.inbox / table).glob("part-*.parquet")):
                    _move(part, sessions[-1][0] / table)
            for path, manifest in sessions:
                if manifest.get("ended") is None:
                    left_active += _close_interrupted(path, manifest)
            self.latest = Session.open(sessions[-1][0])
        return left_active

    def close(self) -> None:
        with self._lock:
            if self.latest is not None:
                self.latest.close()


def _move(part: Path, directory: Path) -> Path | None:
    """Rename `part` into `directory` without replacing a part of the same name (a worker restarted in
    the same container reuses its writer id); None when it vanished meanwhile."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        target = directory / (part.name if not attempt else f"{part.stem}-{attempt}.parquet")
        try:
            os.link(part, target)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        except OSError:  # no hard links here: a rename (same volume), after checking the name is free
            if target.exists():
                continue
            os.replace(part, target)
            return target
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        return target
    raise OSError(f"no free name for {part.name} in {directory}")


def _session_dirs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for manifest_path in root.glob("*/manifest.json"):
        try:
            manifest = orjson.loads(manifest_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(manifest, dict) and manifest.get("source") == SOURCE:
            found.append((manifest_path.parent, manifest))
    return found


def _close_interrupted(path: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """End a session whose master died: at its last record, every fault it left active ended there."""
    from lab.faults.journal import fault_event

    events = list(iter_events(path, "faults"))
    ended = max([float(manifest.get("started") or 0.0), *_last_ts(path), *_event_times(events)])
    ends = {e.get("fault_id") for e in events if e.get("event") == "end"}
    active = [e for e in events if e.get("event") == "start" and e.get("fault_id") not in ends]
    with EventLog(path, "faults") as faults:
        for start in active:
            faults.append(
                fault_event(
                    "end",
                    fault_id=str(start.get("fault_id")),
                    name=str(start.get("name") or start.get("fault_id")),
                    action=str(start.get("action")),
                    target=str(start.get("target")),
                    ts=ended,
                    params=dict(start.get("params") or {}),
                    source=SOURCE,
                    reason="the Locust master stopped during the session: the fault's real end is not "
                    "known (the session ends at its last record; the next master resets Toxiproxy)",
                )
            )
    RunDir(path).write_manifest({**manifest, "ended": ended, "outcome": "interrupted"})
    return active


def _event_times(events: list[dict[str, Any]]) -> list[float]:
    return [float(e["ts"]) for e in events if isinstance(e.get("ts"), int | float)]


def _last_ts(path: Path) -> list[float]:
    """The latest `ts` of each filed table (from the parts' statistics, else their data)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    latest = []
    for table in FILED_TABLES:
        for part in (path / table).glob("part-*.parquet"):
            try:
                column = pq.read_table(part, columns=["ts"]).column("ts").cast("int64")
            except (OSError, ValueError):
                continue
            top = pc.max(column).as_py()
            if top is not None:
                latest.append(top / 1e6)
    return latest


def runner_load(environment: Any) -> dict[str, Any]:
    """What Locust's runner says of the load it was asked for (the start form's resolved values)."""
    runner = getattr(environment, "runner", None)
    return {
        "users": getattr(runner, "target_user_count", None),
        "spawn_rate": getattr(runner, "spawn_rate", None),
        "host": getattr(environment, "host", None),
    }


def settings_from(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The traffic's settings from the environment (LAB_LOAD_*: the mix, subscribers, timeout, ...).
    Without LAB_LOAD, users, spawn rate and duration are the web UI's: their defaults are left out."""
    from lab.load.settings import SettingsError, settings_from_env

    try:
        settings = dict(orjson.loads(settings_from_env(env).load.model_dump_json()))
    except SettingsError as exc:
        return {"error": str(exc)}
    if not env.get("LAB_LOAD"):
        for key in ("users", "spawn_rate", "duration"):
            settings.pop(key, None)
    return settings
