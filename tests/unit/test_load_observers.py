"""The run's side records and live figures: provider stats rows, metric rows, the gateway event copy,
polling that survives failures, and the live view's rolling window over the record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from lab.eventually import wait_for_value
from lab.record import RunDir, TableWriter, iter_events
from lab.run.live import RecordTail, Snapshot
from lab.run.observers import GatewayEventsRecorder, Poller, metric_rows, stats_row


def test_provider_stats_row() -> None:
    stats = {
        "id": "alpha",
        "head": 120,
        "chain_head": 140,
        "requests": {"total": 50, "by_outcome": {"ok": 45, "failed": 5}},
        "served_per_second": [{"t": 1, "requests": 3, "ok": 3}] * 600,
    }
    row = stats_row("alpha", stats, 1.5)
    assert (row["provider"], row["head"], row["requests"], row["errors"], row["ts"]) == (
        "alpha",
        120,
        50,
        5,
        1.5,
    )
    stored = orjson.loads(row["stats_json"])
    assert "served_per_second" not in stored and stored["chain_head"] == 140
    assert stats_row("beta", {}, 2.0)["requests"] is None


def test_metric_rows_from_prometheus_text() -> None:
    text = (
        "# TYPE lab_requests_total counter\n"
        'lab_requests_total{provider="alpha",outcome="ok"} 12\n'
        "# TYPE lab_up gauge\nlab_up 1\n"
    )
    rows = metric_rows(text, 3.0)
    assert [(r["name"], orjson.loads(r["labels"]), r["value"]) for r in rows] == [
        ("lab_requests_total", {"provider": "alpha", "outcome": "ok"}, 12.0),
        ("lab_up", {}, 1.0),
    ]


class FakeStream:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False

    def mark(self) -> int:
        return len(self.events)

    def close(self) -> None:
        self.closed = True


def test_gateway_events_are_copied_as_they_arrive(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    stream = FakeStream()
    recorder = GatewayEventsRecorder(run_dir, lambda: stream, interval=3600)
    recorder._stream = stream  # not started: polled by hand
    stream.events += [{"type": "breaker", "seq": 1}, {"type": "breaker", "seq": 2}]
    recorder.poll()
    stream.events.append({"type": "subscribed", "seq": 3})
    recorder.finish()
    assert [e["seq"] for e in iter_events(tmp_path, "gateway_events")] == [1, 2, 3]
    assert stream.closed and recorder.report()["events"] == 3


class Flaky(Poller):
    name = "flaky"

    def __init__(self) -> None:
        super().__init__(interval=0.01)
        self.calls = 0

    def poll(self) -> None:
        self.calls += 1
        if self.calls % 2:
            raise ConnectionError("down")


def test_a_failing_poll_is_counted_and_polling_goes_on() -> None:
    poller = Flaky().start()
    try:
        wait_for_value(lambda: poller.calls, lambda calls: calls >= 6, timeout=5)
    finally:
        poller.close()
    report = poller.report()
    assert (
        report["failures"] >= 3 and report["polls"] >= 3 and "ConnectionError: down" in report["last_error"]
    )


def test_record_tail_rolls_a_window_over_new_parts(tmp_path: Path) -> None:
    now = time.time()
    writer = TableWriter(tmp_path, "requests", writer_id="w", autoflush=False)
    for i in range(100):  # 100 requests in the last 10 s, latencies 1..100 ms, every 10th failing
        writer.append({"ts": now - 9.5 + i * 0.09, "latency_ms": float(i + 1), "ok": i % 10 != 9,
                       "error_class": None if i % 10 != 9 else "timeout"})  # fmt: skip
    writer.append({"ts": now - 60, "latency_ms": 5000.0, "ok": True})  # long ago: outside the window
    writer.flush()
    heads = TableWriter(tmp_path, "heads", writer_id="w", autoflush=False)
    heads.append({"ts": now, "block_number": 1})
    heads.flush()
    tail = RecordTail(tmp_path)
    tail.refresh(now)
    rate, error_rate, p95 = tail.window(now)
    assert (tail.requests, tail.errors, tail.heads) == (101, 10, 1)
    assert rate == 10.0 and error_rate == 0.1
    assert 90 <= p95 <= 96
    assert tail.error_classes == {"timeout": 10}
    tail.refresh(now)  # nothing new: nothing counted twice
    assert tail.requests == 101
    later = now + 30
    tail.refresh(later)
    assert tail.window(later) == (0.0, 0.0, None)


def test_snapshot_line_reads_well() -> None:
    line = Snapshot(elapsed=12, duration=60, requests=1000, errors=5, rate=50, window_error_rate=0.01,
                    p95_ms=42.4, heads=30, faults=["cut on alpha"]).line()  # fmt: skip
    assert line.startswith("12s/1m  50 req/s  errors 1.0% (10s)  p95 42 ms  success 99.50% of 1,000")
    assert line.endswith("faults: cut on alpha")


def test_a_gateway_without_an_event_stream_does_not_stop_the_run(tmp_path: Path) -> None:
    def refuse() -> Any:
        raise TimeoutError("event stream: not connected")

    recorder = GatewayEventsRecorder(RunDir(tmp_path), refuse).start()
    recorder.close()
    assert recorder.report()["failures"] == 1 and "not connected" in recorder.report()["last_error"]
    assert list(iter_events(tmp_path, "gateway_events")) == []


def test_live_view_draws_a_panel_on_a_terminal_and_lines_elsewhere() -> None:
    import io

    from rich.console import Console

    from lab.run.live import LiveView

    snapshot = Snapshot(
        elapsed=12, duration=30, requests=1000, errors=3, rate=55, window_error_rate=0.002,
        p95_ms=42, heads=20, error_classes={"timeout": 3}, faults=["cut on primary"],
    )  # fmt: skip
    terminal = io.StringIO()
    with LiveView("smoke", console=Console(file=terminal, force_terminal=True, width=100)) as view:
        view.show(snapshot)
    assert "cut on primary" in terminal.getvalue() and "12s of 30s" in terminal.getvalue()
    log = io.StringIO()
    with LiveView("smoke", console=Console(file=log, force_terminal=False, width=200)) as view:
        view.show(snapshot)
        view.show(snapshot)  # within plain_every: not printed twice
    assert log.getvalue().count("smoke: 12s/30s") == 1
