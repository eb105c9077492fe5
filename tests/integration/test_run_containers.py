"""`lab run` end to end in containers: the smoke scenario passes (with two Locust workers); an interrupted
run, and a run whose disk fills up, lift their faults, tear the lab down and keep their record, and are
INCOMPLETE."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lab.eventually import wait_for_value
from lab.record import iter_events, read_table
from tests.integration.processes import ctrl_c_reaches_it

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
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it,
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
    assert "INCOMPLETE: interrupted after" in stderr
    assert len(read_table(run_dir, "requests")) > 0
    report = subprocess.run(
        [sys.executable, "-m", "lab", "report", str(run_dir), "--no-html"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert report.returncode == 4 and "INCOMPLETE: the run was interrupted after" in report.stdout
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"lab.run-id={manifest['run_id']}"})
    finally:
        client.close()
    assert left == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs to fill (mounting needs root; CI runs as root)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as --out needs root (CI runs as root)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(disk: Path) -> None:
    """Write until the filesystem is full."""
    with (disk / ".filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                filler.write(b"\0")
        except OSError:
            return


def test_a_full_disk_stops_the_run_lifts_its_faults_and_keeps_the_record(
    lab_images: Any, small_disk: Path
) -> None:
    import docker

    process = subprocess.Popen(
        lab_run(str(ROOT / "toxics" / "smoke.yml"), "--out", str(small_disk)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_dir = wait_for_value(
            lambda: next((p for p in small_disk.iterdir() if p.is_dir()), None),
            timeout=60,
            message="the run directory",
        )
        wait_for_value(
            lambda: [e for e in iter_events(run_dir, "faults") if e["event"] == "start"],
            timeout=300,
            interval=0.2,
            message="the primary is slowed",
        )
        fill(small_disk)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 4, stderr[-3000:]  # INCOMPLETE: records were lost
    assert "Traceback" not in stderr, stderr[-3000:]
    [message] = [line for line in stderr.splitlines() if "No space left" in line]  # one message
    assert message.startswith("INCOMPLETE: the run record cannot be written: No space left on device")
    assert "the run was stopped, its faults lifted and the lab torn down" in message
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["started"] is not None, "the manifest written before the disk filled is kept whole"
    assert manifest["outcome"] == "record_lost", "the reserve let the manifest say how the run ended"
    assert not list(run_dir.rglob("*.tmp")), "no temporary file left behind"
    assert len(read_table(run_dir, "requests")) > 0, "what was recorded is kept"
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"lab.run-id={manifest['run_id']}"})
    finally:
        client.close()
    assert left == [], "the lab is torn down (and with it every fault)"
