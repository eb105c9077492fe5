"""The analysis judges the response time (from the intended send), not the service time: a stall that
held requests before they could be sent counts in full, and the report says which latency it shows."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from lab.analysis.loading import load_run
from lab.analysis.report import overview_rows
from lab.analysis.summary import analyse
from lab.load.recorder import Recorder

ENTRY = {"method": "eth_call", "ok": True, "error_class": None, "rpc_code": None}


def write_stalled_run(path: Path) -> None:
    """100 requests at 10 ms service time; the last 10 were meant to go out 2 s before they could."""
    t0 = time.time() - 60
    recorder = Recorder(path, flush_interval=3600)
    for i in range(100):
        sent = t0 + i * 0.1
        intended = sent - (2.0 if i >= 90 else 0.0)
        context = {"entries": [ENTRY], "intended_ts": intended, "client": "c0"}
        recorder.on_request("POST", "eth_call", 10.0, 10, None, context, start_time=sent)
    recorder.close()
    manifest = {
        "run_id": path.name,
        "scenario": {"name": "stalled", "slos": {"p95_ms": 500}},
        "started": t0,
        "ended": t0 + 10,
    }
    (path / "manifest.json").write_bytes(orjson.dumps(manifest))


def test_the_headline_is_the_response_time_and_the_slo_judges_it(tmp_path: Path) -> None:
    write_stalled_run(tmp_path / "run")
    analysis = analyse(load_run(tmp_path / "run"))
    summary = analysis.summary
    assert summary["latency_ms"]["p50"] == pytest.approx(10.0)
    assert summary["latency_ms"]["max"] == pytest.approx(2010.0)
    assert summary["latency_ms"]["p95"] > 500, "the 10 held requests are in the headline"
    assert summary["service_ms"]["p95"] == pytest.approx(10.0), "the service time leaves the wait out"
    [check] = [c for c in analysis.slo.checks if c.name == "p95_ms"]
    assert not check.passed, "the SLO judges what clients saw"
    labels = [row[0] for row in overview_rows(summary)]
    assert "response time (from the intended send) p50 / p90 / p95 / p99" in labels
    assert any(str(label).startswith("service time (from the actual send)") for label in labels)


def test_a_record_without_response_times_falls_back_to_service_times(tmp_path: Path) -> None:
    path = tmp_path / "old"
    recorder = Recorder(path, flush_interval=3600)
    recorder.on_request("POST", "eth_call", 12.0, 10, None, {"entries": [ENTRY]}, start_time=time.time())
    recorder.close()
    (path / "manifest.json").write_bytes(orjson.dumps({"run_id": "old", "scenario": {"name": "old"}}))
    # an old record: the response_ms column was not written at all
    import pyarrow.parquet as pq

    [part] = list((path / "requests").glob("part-*.parquet"))
    pq.write_table(pq.read_table(part).drop_columns(["response_ms", "intended_ts"]), part)
    summary = analyse(load_run(path)).summary
    assert summary["latency_ms"]["p50"] == pytest.approx(12.0)
