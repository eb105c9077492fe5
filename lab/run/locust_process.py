"""Locust headless in its own process, recording into the run directory (lab.load's locustfile).

Locust dies with `lab run`: it runs under lab/run/tether.py, which gets SIGTERM from Linux when `lab run`
dies (PR_SET_PDEATHSIG) and then stops Locust's whole process group (its `--processes` workers too). A
`lab run` killed with SIGKILL thus stops the load instead of leaving Locust loading the orphaned lab and
writing into the record. The death signal follows the thread that started the process: Locust is started
from `lab run`'s main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from lab.checker.answers import ENV_VAR as CHECK_CHAIN_VAR
from lab.checker.answers import chain_env
from lab.load import LOCUSTFILE, STARTED_MARKER
from lab.run.errors import LabFailed
from lab.scenario import Scenario
from lab.topology.specs import TopologySpec

LOCUST_STOP_TIMEOUT_S = 20.0
GENESIS_TIME: int = TopologySpec.model_fields["genesis_time"].default  # `lab run` keeps the default

TETHER = Path(__file__).with_name("tether.py")


def tied_to_parent(command: list[str]) -> list[str]:
    """`command` run so that it gets SIGTERM when this process dies (see the module docstring)."""
    return [sys.executable, str(TETHER), str(os.getpid()), *command]


class LocustProcess:
    """Locust headless in its own process group (it monkey-patches with gevent; never imported here)."""

    def __init__(self, run_dir: Path, scenario: Scenario, endpoints: Any, workers: int) -> None:
        self.run_dir = run_dir
        self.log_path = run_dir / "locust" / "locust.log"
        strategy = scenario.load.strategy
        rpc_url = endpoints.rpc_url(strategy=strategy) if strategy else endpoints.gateway_rpc_url
        self.env = {
            **os.environ,
            "LAB_RUN_DIR": str(run_dir),
            "LAB_LOAD": scenario.load.model_dump_json(),
            "LAB_CHAIN": scenario.topology.chain,
            "LAB_RPC_PATH": rpc_url.removeprefix(endpoints.gateway_url),
            "LAB_WS_URL": endpoints.gateway_ws_url,
            "LAB_SEED": str(scenario.seed),
            "LAB_TOXIPROXY_URL": endpoints.toxiproxy_url,
            "LAB_PROVIDERS": provider_env(endpoints),
            # The checker's chain: the scenario's, with the lab's shared genesis time (TopologySpec's).
            CHECK_CHAIN_VAR: chain_env(
                scenario.topology.chain_id, GENESIS_TIME, scenario.topology.block_time
            ),
        }
        self.command = [
            sys.executable, "-m", "locust",
            "-f", os.environ.get("LAB_LOCUSTFILE", str(LOCUSTFILE)),
            "--headless", "-H", endpoints.gateway_url,
            "--exit-code-on-error", "0",  # failures under faults are the point; the analysis judges
            "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        if workers > 1:
            self.command += ["--processes", str(workers)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocustProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                tied_to_parent(self.command), env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the orchestrator only; it stops Locust in order
            )  # fmt: skip
        return self

    def wait_started(self, timeout: float) -> float:
        """Unix time at which the load started (Locust's test_start); LabFailed if it never does."""
        marker = self.run_dir / STARTED_MARKER
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if marker.exists():
                with contextlib.suppress(orjson.JSONDecodeError, OSError, KeyError):
                    return float(orjson.loads(marker.read_bytes())["ts"])
            if self.process.poll() is not None:
                raise LabFailed(
                    f"Locust exited with {self.process.returncode} before the load started:\n{self.tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.1)  # the poll interval: returns early if Locust exits
        raise LabFailed(f"Locust did not start the load within {timeout:.0f}s:\n{self.tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for Locust to exit; True once it has."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> int | None:
        """SIGTERM to the whole group (Locust shuts down gracefully, flushing its records), then SIGKILL."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            if not self.wait(LOCUST_STOP_TIMEOUT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.wait(5)
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no Locust log)"


def provider_env(endpoints: Any) -> str:
    """LAB_PROVIDERS for the web UI's Faults tab: `id=http_proxy,ws_proxy,control_url;...`."""
    return ";".join(
        f"{p.id}={p.proxies.get('http', '')},{p.proxies.get('ws', '')},{p.control_url}"
        for p in endpoints.providers.values()
    )
