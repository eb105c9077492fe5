"""The compose lab's container faults, for real: the Faults tab pauses, kills and restarts the lab's own
`p3` through the control service while an unrelated container named `p3` (a decoy) stays untouched; the
control service refuses what is not the lab's; a killed provider stays down (the restart policy leaves
it) until lifted; a worker rejoins a recreated master. One compose lab for the module (Compose v2 when
this machine has it, else v1), on free loopback ports under its own project name."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from lab.eventually import wait_for_value
from lab.images import ensure_images
from tests.integration.test_images_compose import any_compose_command, free_port, request

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = f"labcontrol{uuid.uuid4().hex[:8]}"
DECOY_LABEL = "lab.test-decoy"


@dataclass
class ComposeLab:
    command: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    client: Any  # docker.DockerClient

    @property
    def faults(self) -> str:
        return f"http://127.0.0.1:{self.ports['LOCUST']}/lab/faults/api"

    def compose(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.command, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), *args],
            cwd=ROOT, env=self.env, check=check, capture_output=True, timeout=300,
        )  # fmt: skip

    def container(self, service: str) -> Any:
        labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]
        (found,) = self.client.containers.list(all=True, filters={"label": labels})
        return found

    def apply(self, target: str, action: str, **params: Any) -> str:
        answer = request(f"{self.faults}/apply", {"target": target, "action": action, "params": params})
        assert answer["ok"], answer
        return str(answer["fault_id"])

    def lift(self, fault_id: str) -> None:
        answer = request(f"{self.faults}/lift", {"fault_id": fault_id})
        assert answer["ok"], answer


@pytest.fixture(scope="module")
def lab() -> Iterator[ComposeLab]:
    images = ensure_images()
    ports = {name: free_port() for name in ("GATEWAY", "TOXIPROXY", "LOCUST", "P1", "P2", "P3")}
    # the content-hash tags: another build on this host may move :latest meanwhile
    tags = {name: getattr(images, name) for name in ("provider", "gateway", "locust", "toxiproxy")}
    env = {
        **os.environ,
        **{f"LAB_{name}_PORT": str(port) for name, port in ports.items()},
        **{f"LAB_{name.upper()}_IMAGE": tag for name, tag in tags.items()},
    }
    client = docker.from_env()
    lab = ComposeLab(any_compose_command(), env, ports, client)
    try:
        lab.compose("up", "-d")
        wait_for_value(
            lambda: request(f"{lab.faults}/state"),
            lambda state: all(p["container"] for p in state["providers"]),
            timeout=60,
            message="the Faults tab with the providers' containers",
        )
        yield lab
    finally:
        lab.compose("down", "-v", "--timeout", "5", check=False)
        client.close()


@pytest.fixture
def decoy(lab: ComposeLab) -> Iterator[Any]:
    """A running container called `p3`, even labelled as service p3 of another compose project."""
    from docker.errors import APIError

    try:
        container = lab.client.containers.run(
            lab.env["LAB_PROVIDER_IMAGE"],
            ["--id", "decoy"],
            name="p3",
            detach=True,
            labels={
                DECOY_LABEL: PROJECT,
                "com.docker.compose.project": f"{PROJECT}-other",
                "com.docker.compose.service": "p3",
            },
        )
    except APIError as exc:
        if exc.status_code == 409:  # a shared host where a container already has the name: not ours to touch
            pytest.skip(f"a container named p3 already exists on this host: {exc.explanation}")
        raise
    try:
        wait_for_value(
            lambda: (container.reload(), container.status)[1], lambda s: s == "running", timeout=20
        )
        yield container
    finally:
        container.remove(force=True)


@pytest.fixture
def swarm(lab: ComposeLab) -> Iterator[None]:
    """A swarm running (the Faults tab records faults into the running session only): the compose file's
    subscribers and a light open-model load; stopped afterwards."""
    ui = f"http://127.0.0.1:{lab.ports['LOCUST']}"

    def post(path: str, form: dict[str, str]) -> Any:
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(urllib.request.Request(ui + path, data=data), timeout=30) as response:
            return json.load(response)

    wait_for_value(  # a distributed swarm starts only once a worker has joined
        lambda: request(f"{ui}/stats/requests")["worker_count"],
        lambda n: n >= 1,
        timeout=60,
        message="a Locust worker",
        ignore=(OSError, ValueError),
    )
    started = post("/swarm", {"user_count": "3", "spawn_rate": "3", "lab_rate": "10"})
    assert started.get("success"), started
    wait_for_value(
        lambda: request(f"{lab.faults}/state"),
        lambda state: bool((state.get("session") or {}).get("running")),
        timeout=30,
        message="the session running",
    )
    yield
    post("/stop", {})


def state_of(container: Any) -> tuple[str, str, int]:
    container.reload()
    state = container.attrs["State"]
    return state["Status"], state["StartedAt"], int(container.attrs["RestartCount"])


def wait_status(container: Any, status: str) -> None:
    wait_for_value(lambda: state_of(container)[0], lambda s: s == status, timeout=30, message=f"{status}")


def block_number(lab: ComposeLab) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return request(f"http://127.0.0.1:{lab.ports['GATEWAY']}/rpc/ethereum", body)


def test_pause_kill_and_restart_hit_the_labs_p3_and_never_the_decoy(
    lab: ComposeLab, decoy: Any, swarm: None
) -> None:
    p3 = lab.container("p3")
    decoy_before = state_of(decoy)
    _, started, _ = state_of(p3)

    paused = lab.apply("p3", "pause")
    wait_status(p3, "paused")
    assert state_of(decoy) == decoy_before
    lab.lift(paused)
    wait_status(p3, "running")

    killed = lab.apply("p3", "kill")
    wait_status(p3, "exited")
    # the gateway goes on through p1 and p2 meanwhile; and p3, killed on purpose, is not brought back
    for _ in range(5):
        assert "result" in wait_for_value(lambda: block_number(lab), lambda r: "result" in r, timeout=20)
    assert state_of(p3)[0] == "exited"
    assert state_of(decoy) == decoy_before
    lab.lift(killed)
    wait_status(p3, "running")
    assert state_of(p3)[2] == 0  # started by the lift, not by the restart policy

    lab.apply("p3", "restart", timeout="1s")
    status, restarted, _ = state_of(p3)
    assert status == "running" and restarted > started
    assert state_of(decoy) == decoy_before
    assert all(f["target"] != "p3" for f in request(f"{lab.faults}/state")["active"])


def test_the_control_service_refuses_what_is_not_the_labs(lab: ComposeLab) -> None:
    master = lab.container("locust-master")
    assert all(m["Destination"] != "/var/run/docker.sock" for m in master.attrs["Mounts"])  # no socket
    script = (
        "import json, sys, urllib.request as u, urllib.error as e\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        q = u.Request('http://control:8000' + path, data=b'{}', method='POST')\n"
        "        r = u.urlopen(q, timeout=10)\n"
        "        print(json.dumps([r.status, json.load(r)]))\n"
        "    except e.HTTPError as x:\n"
        "        print(json.dumps([x.code, json.load(x)]))\n"
    )
    paths = [
        "/services/locust-master/kill",
        "/services/control/stop",
        "/services/p3/remove",
        "/services/p9/kill",
    ]
    result = master.exec_run(["python3", "-c", script, *paths])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.decode().splitlines()]
    assert [status for status, _ in answers] == [403, 403, 400, 403]
    assert "unknown action 'remove'" in answers[2][1]["error"]
    for service in ("locust-master", "control", "p3"):
        assert state_of(lab.container(service))[0] == "running"


def test_every_service_becomes_healthy_and_a_worker_rejoins_a_recreated_master(lab: ComposeLab) -> None:
    def health() -> dict[str, str]:
        containers = lab.client.containers.list(filters={"label": f"com.docker.compose.project={PROJECT}"})
        return {
            c.labels["com.docker.compose.service"]: c.attrs["State"]["Health"]["Status"] for c in containers
        }

    services = {"p1", "p2", "p3", "toxiproxy", "gateway", "control", "locust-master", "locust-worker"}
    healthy = wait_for_value(
        health, lambda h: set(h) == services and set(h.values()) == {"healthy"}, timeout=60
    )
    assert set(healthy) == services

    def workers() -> int:
        return int(request(f"http://127.0.0.1:{lab.ports['LOCUST']}/stats/requests")["worker_count"])

    wait_for_value(
        workers, lambda n: n == 1, timeout=30, message="the worker joined", ignore=(OSError, ValueError)
    )
    old_master = lab.container("locust-master").id
    lab.compose("up", "-d", "--force-recreate", "--no-deps", "locust-master")
    assert lab.container("locust-master").id != old_master
    wait_for_value(
        workers, lambda n: n == 1, timeout=60, message="the worker rejoined", ignore=(OSError, ValueError)
    )
