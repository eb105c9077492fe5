"""Failover shares count failed requests: a gateway's 503 that names no provider is "unattributed", and it
keeps a cut provider from counting as drained (planted records, issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.analysis.loading import load_run
from lab.analysis.summary import analyse
from lab.record import RunDir

T0 = 1_700_000_000.0
RATE = 100  # requests per second, evenly spread


def planted_run(tmp_path: Path, fails_until: float) -> Path:
    """Providers a and b take turns for 60 s; primary a is cut from 20 s to 40 s. Until `fails_until`
    every request the gateway still sends to a fails with a 503 naming no provider; after it, b serves
    everything until the cut ends."""
    run = RunDir.create(tmp_path, "run")
    run.write_manifest(
        {"scenario": {"name": "cut", "load": {"duration": 60}}, "started": T0, "ended": T0 + 60,
         "outcome": "completed"}
    )  # fmt: skip
    with run.table_writer("requests", autoflush=False) as writer:
        for i in range(60 * RATE):
            t = i / RATE
            row = {"ts": T0 + t, "method": "eth_blockNumber", "latency_ms": 5.0, "attempts": 1, "ok": True}
            to_a = i % 2 == 0
            if 20 <= t < 40 and to_a:
                if t < fails_until:
                    row |= {"ok": False, "error_class": "http_status", "http_status": 503}
                else:
                    row["provider"] = "b"
            else:
                row["provider"] = "a" if to_a else "b"
            writer.append(row)
    with run.event_log("faults") as log:
        for event, ts in (("start", T0 + 20), ("end", T0 + 40)):
            log.append({"event": event, "fault_id": "cut-a", "name": "cut-a", "action": "cut", "target": "a",
                        "ts": ts, "params": {}})  # fmt: skip
    return run.path


def test_a_gateway_503_naming_no_provider_is_unattributed_and_the_primary_never_drained(
    tmp_path: Path,
) -> None:
    """Half the requests still go to the cut primary and fail all through the cut: drained_s must not
    read 0 (as it did when failed requests without a provider were dropped from the shares)."""
    summary = analyse(load_run(planted_run(tmp_path, fails_until=40))).summary
    failover = summary["faults"][0]["failover"]
    assert failover["provider"] == "a" and failover["drained_s"] is None
    assert failover["during_unattributed_failed"] == 1000
    assert summary["providers"]["(unattributed)"] == pytest.approx(1000 / 6000)
    assert sum(summary["providers"].values()) == pytest.approx(1.0)
    [row] = [p for p in summary["failover"]["providers"] if p["provider"] == "(unattributed)"]
    assert row["requests"] == 1000 and row["success_rate"] == 0.0
    assert summary["failover"]["unattributed_failed"] == 1000 and summary["failover"]["unattributed"] == 0


def test_the_primary_drains_when_its_failures_stop(tmp_path: Path) -> None:
    summary = analyse(load_run(planted_run(tmp_path, fails_until=23))).summary
    failover = summary["faults"][0]["failover"]
    assert failover["drained_s"] == 3.0
    assert failover["returned_s"] == 0.0
