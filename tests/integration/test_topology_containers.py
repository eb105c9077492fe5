"""The lab in real containers: wiring through Toxiproxy, loopback-only ports, labels, and teardown on
every kind of exit (normal, exception, SIGTERM, a whole pytest session, `lab up` / `lab down`)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
import yaml

from lab.eventually import wait_for_value
from lab.topology import Lab, TopologySpec
from lab.topology.cleanup import OWNER_PID, RUN_ID, label_filters
from tests.integration.processes import ctrl_c_reaches_it

pytestmark = [pytest.mark.integration, pytest.mark.containers]

REPO = Path(__file__).resolve().parents[2]


def leftovers(client: Any, label: str) -> dict[str, list[str]]:
    """Containers, networks and volumes carrying `label` (e.g. `lab.run-id=...`)."""
    filters = {"label": [label]}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
        "volumes": [v.name for v in client.volumes.list(filters=filters)],
    }


NOTHING: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}


def test_the_gateway_reaches_providers_only_through_toxiproxy(lab_isolated: Lab):
    assert lab_isolated.rpc("eth_blockNumber").result.startswith("0x")

    proxies = lab_isolated.toxiproxy.proxies()
    for provider in lab_isolated.spec.providers:
        for transport in ("http", "ws"):
            proxy = proxies[f"{provider.id}_{transport}"]
            assert proxy.upstream == f"{provider.id}:8545" and proxy.enabled

    # The configuration inside the gateway container names only Toxiproxy listeners.
    spec = lab_isolated.spec.gateway
    stream, _ = lab_isolated.container("gateway").get_archive(spec.config.path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    body = list(yaml.safe_load_all(text))[1]
    for provider in body["chains"][lab_isolated.spec.chain]["providers"]:
        assert urlparse(provider["url"]).hostname == "toxiproxy"
        assert urlparse(provider["ws_url"]).hostname == "toxiproxy"


def test_each_proxy_leads_to_its_own_provider(lab_isolated: Lab):
    for provider in lab_isolated.endpoints.providers.values():
        response = requests.post(
            provider.proxy_urls["http"],
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=5,
        )
        assert response.headers["X-Lab-Provider"] == provider.id
        assert response.json()["result"] == hex(lab_isolated.spec.chain_id)


def test_ports_are_published_on_loopback_only_and_everything_is_labelled(lab_isolated: Lab):
    client = lab_isolated.docker
    containers = client.containers.list(filters=label_filters(lab_isolated.run_id))
    assert len(containers) == len(lab_isolated.spec.providers) + 2
    for container in containers:
        bindings = [b for bs in container.attrs["NetworkSettings"]["Ports"].values() if bs for b in bs]
        assert bindings, container.name
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, container.name
        assert container.labels[OWNER_PID] == str(os.getpid())
    network = client.networks.get(lab_isolated.network_name)
    assert network.attrs["Labels"][RUN_ID] == lab_isolated.run_id


def test_a_lab_is_removed_when_its_block_raises(lab_images: Any, lab_topology: Lab):
    lab = Lab(TopologySpec.with_providers(1), images=lab_images)
    with pytest.raises(RuntimeError, match="boom"), lab:
        assert leftovers(lab.docker, f"{RUN_ID}={lab.run_id}")["containers"]
        raise RuntimeError("boom")
    assert leftovers(lab_topology.docker, f"{RUN_ID}={lab.run_id}") == NOTHING


def test_sigterm_tears_a_lab_down(lab_images: Any, lab_topology: Lab):
    script = textwrap.dedent(
        f"""
        import threading
        from lab.images import ImageSet
        from lab.topology import Lab, TopologySpec
        images = ImageSet(**{json.dumps(dataclasses.asdict(lab_images))})
        with Lab(TopologySpec.with_providers(1), images=images) as lab:
            print("READY", lab.run_id, flush=True)
            threading.Event().wait(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        run_id = line.split()[1]
        assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}")["containers"]
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}") == NOTHING


def start_child_lab(lab_images: Any, wait_for: str) -> tuple[subprocess.Popen[str], str]:
    """A child process starting a two-provider lab, returned once it printed `wait_for` (a start-up
    step such as "toxiproxy ready", or "READY" once started) and has containers up."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        from lab.images import ImageSet
        from lab.topology import Lab, TopologySpec
        images = ImageSet(**{json.dumps(dataclasses.asdict(lab_images))})
        lab = Lab(TopologySpec.with_providers(2), images=images, progress=lambda m: print(m, flush=True))
        print("RUN_ID", lab.run_id, flush=True)
        with lab:
            print("READY", flush=True)
            threading.Event().wait(120)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=ctrl_c_reaches_it,
    )
    lines = []
    for line in child.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if line.startswith(wait_for):
            break
    else:
        pytest.fail(f"the child lab never printed {wait_for!r}: {lines}")
    return child, lines[0].split()[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_start_up_leaves_nothing(lab_images: Any, lab_topology: Lab, sig: signal.Signals):
    child, run_id = start_child_lab(lab_images, "toxiproxy ready")  # providers and gateway still to come
    try:
        assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}")["containers"]
        child.send_signal(sig)
        assert child.wait(timeout=60) != 0
    finally:
        if child.poll() is None:
            child.kill()
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}") == NOTHING


def test_lab_down_removes_a_killed_run_and_leaves_live_labs(lab_images: Any, lab_topology: Lab):
    child, run_id = start_child_lab(lab_images, "READY")
    child.kill()  # SIGKILL: no teardown runs
    child.wait(timeout=30)
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}")["containers"]
    down = subprocess.run(
        [sys.executable, "-m", "lab", "down", "--json"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert down.returncode == 0, down.stderr
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}") == NOTHING
    # This session's lab belongs to a live process: `lab down` without --all leaves it.
    assert leftovers(lab_topology.docker, f"{RUN_ID}={lab_topology.run_id}")["containers"]
    assert lab_topology.rpc("eth_blockNumber").status == 200


def test_a_pytest_session_leaves_no_container_network_or_volume(
    tmp_path: Path, lab_topology: Lab, lab_images: Any
):
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture(scope="session")
            def lab_spec():
                from lab.topology import TopologySpec
                return TopologySpec.with_providers(2)

            @pytest.fixture(scope="session")
            def lab_images():  # the outer session's, so that this one does not build
                import json, os
                from lab.images import ImageSet
                return ImageSet(**json.loads(os.environ["OUTER_LAB_IMAGES"]))

            def test_survives_a_kill(lab_isolated):
                print("RUN_ID", lab_isolated.run_id)
                with lab_isolated.faults.kill("p1"):
                    assert lab_isolated.rpc("eth_blockNumber").status == 200
            """
        )
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OUTER_LAB_IMAGES": json.dumps(dataclasses.asdict(lab_images))},
    )
    output, _ = child.communicate(timeout=240)
    assert child.returncode == 0, output
    run_id = output.split("RUN_ID ", 1)[1].split()[0]
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}") == NOTHING
    assert leftovers(lab_topology.docker, f"{OWNER_PID}={child.pid}") == NOTHING


def test_lab_up_then_lab_ps_then_lab_down(lab_topology: Lab):
    lab_cli = [sys.executable, "-m", "lab"]

    def lab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*lab_cli, *args], capture_output=True, text=True, timeout=240, cwd=REPO)

    up = lab("up", "--providers", "1", "--json")
    assert up.returncode == 0, up.stderr
    endpoints = json.loads(up.stdout)
    run_id = endpoints["run_id"]
    try:
        answer = requests.post(
            endpoints["gateway_rpc_url"],
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            timeout=5,
        ).json()
        assert answer["result"].startswith("0x")
        assert set(endpoints["providers"]["p1"]["proxies"].values()) == {"p1_http", "p1_ws"}

        ps = lab("ps", "--json")
        assert ps.returncode == 0, ps.stderr
        labs = {entry["run_id"]: entry for entry in json.loads(ps.stdout)}
        listed = labs[run_id]
        assert (listed["started_by"], listed["owner"]) == ("lab up", "detached")
        gateway_port = urlparse(endpoints["gateway_url"]).port
        assert {"host": f"127.0.0.1:{gateway_port}", "service": "gateway", "port": 4000, "name": None} in (
            listed["ports"]
        )
        assert {p["name"] for p in listed["ports"] if p["service"] == "toxiproxy"} == {
            "api",
            "p1_http",
            "p1_ws",
        }
        # This session's lab: started by a test session whose process runs.
        assert (labs[lab_topology.run_id]["started_by"], labs[lab_topology.run_id]["owner"]) == (
            "test session",
            "running",
        )

        # Without arguments, `lab down` removes only what dead runs left: the `lab up` lab stays.
        down_orphans = lab("down")
        assert down_orphans.returncode == 0, down_orphans.stderr
        assert f"{run_id} (detached)" in down_orphans.stdout
        assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}")["containers"]
    finally:
        down = lab("down", "--run-id", run_id, "--json")
    assert down.returncode == 0, down.stderr
    assert len(json.loads(down.stdout)["containers"]) == 3
    assert leftovers(lab_topology.docker, f"{RUN_ID}={run_id}") == NOTHING
    # The session lab was left alone.
    wait_for_value(lambda: lab_topology.rpc("eth_blockNumber").status, lambda s: s == 200, timeout=10)


def test_locust_runs_headless_against_the_lab_and_goes_with_it(lab_images: Any, lab_topology: Lab):
    with Lab(TopologySpec.with_providers(1), images=lab_images) as lab:
        locust = lab.locust(
            "--headless", "--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--only-summary"
        )
        locust.start()  # ready once Locust has started
        assert locust.exit_code(timeout=60) == 0  # Locust exits 1 when a request failed
        stdout, stderr = locust.get_logs()
        # The first "Aggregated" row is the request table's: type-less, then the request count.
        summary = [line for line in (stdout + stderr).decode().splitlines() if "Aggregated" in line]
        assert summary and int(summary[0].split()[1]) > 0, summary
        name = locust.get_wrapped_container().name
        assert name in leftovers(lab.docker, f"{RUN_ID}={lab.run_id}")["containers"]  # labelled as the lab
    assert leftovers(lab_topology.docker, f"{RUN_ID}={lab.run_id}") == NOTHING


def test_the_gateway_config_can_be_bind_mounted_instead_of_copied(lab_images: Any, lab_topology: Lab):
    spec = TopologySpec.with_providers(1)
    spec.gateway.config.delivery = "mount"
    spec.gateway.config.path = "/tmp/lab-gateway.yml"
    with Lab(spec, images=lab_images) as lab:
        mounts = lab.container("gateway").attrs["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/tmp/lab-gateway.yml", False)]
        assert lab.rpc("eth_blockNumber", provider="p1").result.startswith("0x")
    assert not Path(mounts[0]["Source"]).exists()  # the rendered file is removed with the lab
    assert leftovers(lab_topology.docker, f"{RUN_ID}={lab.run_id}") == NOTHING
