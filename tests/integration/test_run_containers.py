"""`lab run` end to end in containers: the smoke scenario passes (with two Locust workers), and an
interrupted run lifts its faults, tears the lab down and keeps its record."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from lab.eventually import wait_for_value
from lab.record import iter_events, read_table

pytestmark = [pytest.mark.integration, pytest.mark.containers]

ROOT = Path(__file__).resolve().parents[2]


def lab_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", "run", *args]


def only_run_dir(out: Path) -> Path:
    [run_dir] = list(out.iterdir())
    return run_dir


def test_smoke_scenario_end_to_end(lab_images: Any, tmp_path: Path) -> None:
    result = subprocess.run(
        lab_run(
            str(ROOT / "toxics" / "smoke.yml"), "--duration", "20s", "--workers", "2", "--out", str(tmp_path)
        ),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert f"run record: {run_dir}" in result.stderr
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["outcome"] == "completed" and manifest["verdict"] == "pass"
    assert manifest["scenario"]["load"]["duration"] == 20
    assert manifest["ended"] - manifest["started"] == pytest.approx(20, abs=3)
    assert manifest["images"]["gateway"]["id"].startswith("sha256:")
    assert manifest["nemesis"]["applied"] == 1 and manifest["nemesis"]["failed"] == 0
    faults = list(iter_events(run_dir, "faults"))
    assert [(e["event"], e["fault_id"], e["target"]) for e in faults] == [
        ("start", "primary-slow#0", "primary"),
        ("end", "primary-slow#0", "primary"),
    ]
    assert faults[0]["ts"] - manifest["started"] == pytest.approx(10, abs=1.5)
    requests = read_table(run_dir, "requests")
    assert len(requests) > 200 and set(requests["provider"].dropna()) == {"primary", "secondary", "tertiary"}
    assert requests["worker"].nunique() == 2, "--workers 2: both Locust processes recorded"
    assert len(read_table(run_dir, "heads")) > 0
    assert len(read_table(run_dir, "provider_stats")) > 0 and len(read_table(run_dir, "metrics")) > 0
    assert (run_dir / "gateway_events.jsonl").exists()


def test_interrupted_run_lifts_faults_and_tears_down(lab_images: Any, tmp_path: Path) -> None:
    import docker

    process = subprocess.Popen(
        lab_run(str(ROOT / "toxics" / "primary-cut.yml"), "--duration", "60s", "--out", str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_dir = wait_for_value(lambda: only_run_dir(tmp_path), timeout=60, message="the run directory")
        wait_for_value(
            lambda: [e for e in iter_events(run_dir, "faults") if e["event"] == "start"],
            timeout=300,
            interval=0.2,
            message="the primary is cut",
        )
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    events = list(iter_events(run_dir, "faults"))
    assert [(e["event"], e["fault_id"]) for e in events] == [
        ("start", "primary-down#0"),
        ("end", "primary-down#0"),
    ]
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["outcome"] == "interrupted"
    assert len(read_table(run_dir, "requests")) > 0
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"lab.run-id={manifest['run_id']}"})
    finally:
        client.close()
    assert left == []
