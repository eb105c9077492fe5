"""A gateway the user runs, under test: `lab up --expose-providers` renders the reference adapter's
configuration with the providers' Toxiproxy listeners on 127.0.0.1, a `lab gateway` process on the host
is started with it, and `lab run --gateway-url` drives load and the scenario's cut through it; the report
says "external", and the lab is left running for the next iteration."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from lab.eventually import wait_for_value

pytestmark = [pytest.mark.integration, pytest.mark.containers]

SCENARIO = Path(__file__).with_name("gateway-cut.yml")


def lab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def block_number(url: str) -> int | None:
    try:
        body = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}, timeout=2
        ).json()
    except (requests.RequestException, ValueError):
        return None
    return int(body["result"], 16) if isinstance(body, dict) and "result" in body else None


def test_a_gateway_on_the_host_under_test(lab_images: Any, tmp_path: Path) -> None:
    run_id = f"ext-{tmp_path.name[-8:].lower().replace('_', '-')}"
    config = tmp_path / "gateway.yml"
    up = lab(
        "up",
        "--expose-providers",
        "--scenario",
        str(SCENARIO),
        "--config-out",
        str(config),
        "--run-id",
        run_id,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    gateway = None
    try:
        exposed = orjson.loads(up.stdout)
        assert set(exposed["providers"]) == {"primary", "secondary", "tertiary"}
        assert exposed["config_file"] == str(config)
        for provider in exposed["providers"].values():
            assert provider["http"].startswith("http://127.0.0.1:") and provider["http"] in config.read_text()
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "lab", "gateway", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/rpc/ethereum"
        wait_for_value(lambda: block_number(url), lambda n: n is not None, timeout=30, message="host gateway")

        refused = lab(
            "run", str(ROOT / "toxics" / "production-chaos.yml"), "--lab", run_id, "--gateway-url", url
        )
        assert refused.returncode == 2 and "targets the gateway, which is external" in refused.stderr

        out = tmp_path / "runs"
        run = lab("run", str(SCENARIO), "--lab", run_id, "--gateway-url", url, "--out", str(out))
        assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
        [run_dir] = list(out.iterdir())
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        assert summary["gateway"]["external"] and summary["gateway"]["url"] == url
        assert "external" in (run_dir / "report.html").read_text()
        [cut] = summary["faults"]
        assert cut["target"] == "primary" and cut["failover"]["drained_s"] is not None  # the cut reached it
        assert summary["success_rate"] > 0.95
        assert block_number(url) is not None, "the lab stays up for the next run"
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=10)
        lab("down", "--run-id", run_id)


ROOT = Path(__file__).resolve().parents[2]
