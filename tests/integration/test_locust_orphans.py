"""`lab run` killed with SIGKILL takes its Locust process (and Locust's `--processes` workers) with it:
real processes, no containers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.eventually import wait_for_value

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]

# A locustfile that loads nothing: one idle user, forever (until Locust is stopped).
IDLE_LOCUSTFILE = """
from locust import User, constant, task

class Idle(User):
    wait_time = constant(0.5)

    @task
    def nothing(self) -> None:
        pass
"""

# `lab run`'s part that matters here: a LocustProcess started from the main thread, then the parent lives
# on (printing Locust's pid) until it is killed.
PARENT = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from lab.run.locust_process import LocustProcess
from lab.scenario import load_scenario

endpoints = SimpleNamespace(
    gateway_url="http://127.0.0.1:9", gateway_rpc_url="http://127.0.0.1:9/rpc",
    gateway_ws_url="ws://127.0.0.1:9/ws", toxiproxy_url="http://127.0.0.1:9", providers={},
)
locust = LocustProcess(Path(sys.argv[1]), load_scenario(sys.argv[2]), endpoints, int(sys.argv[3])).start()
print(locust.process.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("workers", [1, 2])
def test_locust_dies_with_a_sigkilled_lab_run(tmp_path: Path, workers: int) -> None:
    locustfile = tmp_path / "idle.py"
    locustfile.write_text(textwrap.dedent(IDLE_LOCUSTFILE))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(run_dir), str(ROOT / "toxics" / "smoke.yml"), str(workers)],
        env={**os.environ, "LAB_LOCUSTFILE": str(locustfile)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    locust_pid = 0
    try:
        assert parent.stdout is not None
        locust_pid = int(parent.stdout.readline())
        expected = 1 + (workers if workers > 1 else 0)
        wait_for_value(
            lambda: len(group_members(locust_pid)) >= expected or None,
            timeout=60,
            message=f"Locust and its {workers} worker(s) running",
        )
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for_value(
            lambda: not group_members(locust_pid) or None,
            timeout=30,
            message="Locust gone after its lab run was SIGKILLed",
        )
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in group_members(locust_pid) if locust_pid else []:
            os.kill(pid, signal.SIGKILL)
    log = (run_dir / "locust" / "locust.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-2000:]
