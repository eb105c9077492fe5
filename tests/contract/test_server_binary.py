"""The lab's own server as a program: flags, start-up config, metrics, signals. Skipped when the
suite runs against another server (TOXIPROXY_URL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from .support import PROXY_HOST, Upstream, connect, free_port, local_binary, local_server, round_trip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(os.environ.get("TOXIPROXY_URL")), reason="tests the lab's own server binary"),
]


def test_version_flag() -> None:
    result = subprocess.run([str(local_binary()), "-version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("toxiproxy-server version 2.12.0")


def test_config_file_creates_proxies_at_start(tmp_path: Path, echo_upstream: Upstream) -> None:
    listen = f"{PROXY_HOST}:{free_port()}"
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps([{"name": "from-config", "listen": listen, "upstream": echo_upstream.address}])
    )
    with local_server(f"-config={config}", "-made-up-flag") as server:
        proxy = requests.get(f"{server.url}/proxies/from-config", timeout=5).json()
        assert (proxy["listen"], proxy["enabled"]) == (listen, True)
        with connect(proxy) as sock:
            assert round_trip(sock) < 1.0
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 404, "no metrics flag"
        assert "ignoring unknown flag" in server.log_text()


def test_proxy_metrics_count_bytes(echo_upstream: Upstream) -> None:
    with local_server("-proxy-metrics", "--runtime-metrics") as server:
        body = {"name": "metered", "listen": f"{PROXY_HOST}:0", "upstream": echo_upstream.address}
        proxy = requests.post(f"{server.url}/proxies", json=body, timeout=5).json()
        with connect(proxy) as sock:
            round_trip(sock, b"x" * 1000)
        text = requests.get(f"{server.url}/metrics", timeout=5).text
    sent = [line for line in text.splitlines() if line.startswith("toxiproxy_proxy_sent_bytes_total{")]
    downstream = [line for line in sent if 'direction="downstream"' in line and 'proxy="metered"' in line]
    assert len(downstream) == 1, text
    assert int(downstream[0].rsplit(" ", 1)[1]) == 1000


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_cleanly(signum: signal.Signals) -> None:
    with local_server() as server:
        server.process.send_signal(signum)
        assert server.process.wait(timeout=10) == 0
        assert "Shutdown finished" in server.log_text()
