"""The run record survives its writer: parts are atomic, torn event lines are skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.eventually import wait_for_value
from lab.record import EventLog, RunDir, TableWriter, iter_events, read_table


def test_rows_round_trip_with_nulls_and_float_timestamps(tmp_path: Path) -> None:
    with TableWriter(tmp_path, "requests", autoflush=False) as writer:
        writer.append({"ts": 1_700_000_000.25, "method": "eth_blockNumber", "latency_ms": 3.5, "ok": True})
        writer.append({"ts": 1_700_000_001.0, "method": "eth_call", "ok": False, "error_class": "timeout"})
    df = read_table(tmp_path, "requests")
    assert list(df["method"]) == ["eth_blockNumber", "eth_call"]
    assert df["ts"].iloc[0].timestamp() == pytest.approx(1_700_000_000.25)
    assert df["error_class"].isna().tolist() == [True, False]
    assert df["provider"].isna().all()


def test_each_flush_closes_one_part_and_empty_flush_writes_nothing(tmp_path: Path) -> None:
    writer = TableWriter(tmp_path, "heads", writer_id="w1", autoflush=False)
    assert writer.flush() is None
    writer.append({"ts": 1.0, "block_number": 1})
    first = writer.flush()
    writer.append({"ts": 2.0, "block_number": 2})
    second = writer.flush()
    assert first is not None and second is not None and first != second
    assert sorted(p.name for p in (tmp_path / "heads").iterdir()) == [
        "part-w1-000001.parquet",
        "part-w1-000002.parquet",
    ]
    assert read_table(tmp_path, "heads")["block_number"].tolist() == [1, 2]


def test_missing_table_reads_as_empty_frame_with_schema(tmp_path: Path) -> None:
    df = read_table(tmp_path, "requests")
    assert df.empty and "latency_ms" in df.columns


def test_unknown_table_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown table 'request'"):
        TableWriter(tmp_path, "request")


def test_torn_last_event_line_is_skipped_but_corruption_elsewhere_is_not(tmp_path: Path) -> None:
    with EventLog(tmp_path, "faults") as log:
        log.append({"event": "start", "fault_id": "f1", "ts": 1.0})
    path = tmp_path / "faults.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"event": "end", "fau')  # the writer died mid-line
    assert [e["fault_id"] for e in iter_events(tmp_path, "faults")] == ["f1"]

    path.write_bytes(b'{"event": "start"\n{"event": "end"}\n')
    with pytest.raises(ValueError, match="corrupt line"):
        list(iter_events(tmp_path, "faults"))


def test_manifest_is_rewritten_atomically(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "run-1")
    run.write_manifest({"scenario": "smoke", "started": 1.0})
    run.write_manifest({"scenario": "smoke", "started": 1.0, "ended": 2.0})
    manifest = run.read_manifest()
    assert manifest["ended"] == 2.0 and manifest["schema_version"] == 1
    assert not list(run.path.glob("*.tmp"))


def test_autoflush_closes_parts_without_further_appends(tmp_path: Path) -> None:
    writer = TableWriter(tmp_path, "requests", flush_interval=0.01)
    try:
        writer.append({"ts": 1.0, "method": "m", "ok": True})
        wait_for_value(
            lambda: list((tmp_path / "requests").glob("part-*.parquet")),
            timeout=10,
            message="a part closed by the flush thread",
        )
    finally:
        writer.close()
    assert read_table(tmp_path, "requests")["method"].tolist() == ["m"]


def test_run_killed_with_sigkill_keeps_every_closed_part(tmp_path: Path) -> None:
    # The writer closes a part every 500 rows and announces it; the test kills it at an arbitrary point
    # after the third, possibly mid-write of the next part.
    script = textwrap.dedent(
        f"""
        import sys
        from lab.record import TableWriter
        writer = TableWriter({str(tmp_path)!r}, "requests", autoflush=False)
        for i in range(1_000_000):
            writer.append({{"ts": float(i), "method": "m", "ok": True, "attempts": i}})
            if i % 500 == 499:
                writer.flush()
                print(i, flush=True)
        sys.exit("the test should have killed this writer long ago")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for _ in range(3):
            assert proc.stdout.readline().strip()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    df = read_table(tmp_path, "requests")
    # Parts are prefixes of the sequence: no row lost inside what was flushed, none duplicated.
    assert len(df) >= 1500 and len(df) % 500 == 0
    assert df["attempts"].tolist() == list(range(len(df)))


# --- a full disk: what was written stays, the failure is noted once, nothing raises into the writers ----


def no_space(path: object) -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_full_disk_stops_a_table_writer_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC in the flush thread: noted (and logged) once, nothing raised, the closed parts kept."""
    import threading

    import pyarrow.parquet as pq

    writer = TableWriter(tmp_path, "requests", writer_id="w", flush_interval=0.01)  # as Locust's recorder
    writer.append({"ts": 1.0, "method": "eth_call", "ok": True})
    kept = wait_for_value(lambda: list((tmp_path / "requests").glob("*.parquet")), timeout=10)
    real_write_table = pq.write_table
    attempts: list[Path] = []

    def full(table: object, where: Path, **kwargs: object) -> None:
        attempts.append(Path(where))
        Path(where).write_bytes(b"PAR1")  # half a part
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")  # pyarrow's

    thread_errors: list[object] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    monkeypatch.setattr(pq, "write_table", full)
    for second in range(2, 5):
        writer.append({"ts": float(second), "method": "eth_call", "ok": True})
        wait_for_value(lambda: writer.failure.is_set() or None, timeout=10)
    writer.close()
    monkeypatch.setattr(pq, "write_table", real_write_table)
    assert thread_errors == [], "nothing raised in the flush thread"
    assert len(attempts) == 1, "after the failure the writer stops writing"
    assert writer.failed and writer.dropped == 3
    assert sorted((tmp_path / "requests").iterdir()) == kept, "what was closed is kept; no .tmp left"
    assert len(read_table(tmp_path, "requests")) == 1
    assert writer.failure.describe() == f"No space left on device ({tmp_path / 'requests'})"
    assert [r.getMessage() for r in caplog.records if r.name == "lab.record"] == [
        f"the run record cannot be written: No space left on device ({tmp_path / 'requests'})"
    ]


def test_the_writers_of_a_run_dir_share_one_failure_for_its_owner_to_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = RunDir.create(tmp_path, "run")
    writer = run_dir.table_writer("metrics", autoflush=False)
    log = run_dir.event_log("gateway_events")
    assert writer.failure is log.failure is run_dir.failure
    run_dir.failure.note(run_dir.path / "metrics", no_space(run_dir.path / "metrics"))
    assert run_dir.failure.is_set() and not [r for r in caplog.records if r.name == "lab.record"]
    log.close()
    writer.close()


def test_a_full_disk_stops_an_event_log_cleanly(tmp_path: Path) -> None:
    run_dir = RunDir.create(tmp_path, "run")
    log = run_dir.event_log("faults")
    log.append({"event": "start", "fault_id": "a#0"})

    class FullFile:
        def write(self, data: bytes) -> int:
            raise no_space(log.path)

        def close(self) -> None:
            raise no_space(log.path)

    log._file = FullFile()  # type: ignore[assignment]
    log.append({"event": "end", "fault_id": "a#0"})
    log.append({"event": "start", "fault_id": "b#0"})
    log.close()  # does not raise either
    assert (log.failed, log.dropped) == (True, 2)
    assert [e["fault_id"] for e in iter_events(run_dir.path, "faults")] == ["a#0"]
    assert run_dir.failure.describe() == f"No space left on device ({log.path})"


def test_a_failed_manifest_write_keeps_the_previous_one_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = RunDir.create(tmp_path, "run")
    run_dir.write_manifest({"run_id": "run", "outcome": "running"})
    real_write_bytes = Path.write_bytes

    def full(path: Path, data: bytes) -> int:
        real_write_bytes(path, data[:10])
        raise no_space(path)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        run_dir.write_manifest({"run_id": "run", "outcome": "completed"})
    monkeypatch.undo()
    assert run_dir.read_manifest()["outcome"] == "running"
    assert sorted(p.name for p in run_dir.path.iterdir()) == ["manifest.json"]
