"""The lab's Testcontainers classes without Docker: what each is configured with before it starts, and
their readiness (waits that retry, time out naming what they waited for, end when the lab stops, and
refuse ports published beyond 127.0.0.1)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lab.topology.containers import (
    GatewayContainer,
    LabError,
    LabNetwork,
    ProviderContainer,
    PublishedOnLoopback,
    ReadyWhen,
    Stopping,
    ToxiproxyContainer,
)
from lab.topology.specs import ProviderSpec, load_gateway_spec


def options(alias: str, **extra: Any) -> dict[str, Any]:
    return {
        "alias": alias,
        "name": f"lab-r1-{alias}",
        "network": LabNetwork("lab-r1", {"lab.run-id": "r1"}),
        "labels": {"lab.run-id": "r1"},
        "startup_timeout": 0.3,
        **extra,
    }


class FakeWrapped:
    name = "lab-r1-p1"

    def __init__(self, bindings: dict[str, Any]) -> None:
        self.attrs = {"NetworkSettings": {"Ports": bindings}, "State": {"Status": "running", "ExitCode": 0}}

    def reload(self) -> None:
        pass

    def logs(self, tail: int = 30) -> bytes:
        return b"last words\n"


class FakeTarget:
    """Enough of a started container for a wait strategy."""

    alias = "p1"

    def __init__(self, bindings: dict[str, Any] | None = None) -> None:
        self.wrapped = FakeWrapped(bindings or {})

    def get_wrapped_container(self) -> FakeWrapped:
        return self.wrapped


def test_each_service_binds_its_pinned_host_ports_and_knows_its_urls():
    toxiproxy = ToxiproxyContainer(
        "lab-toxiproxy", api_port=41000, proxy_ports={8666: 41001}, **options("toxiproxy")
    )
    assert toxiproxy.ports == {"8474": 41000, "8666": 41001}
    assert toxiproxy.api_url == "http://127.0.0.1:41000"

    provider = ProviderContainer(
        "lab-provider",
        ProviderSpec(id="p1", seed=7, block_time=0.5),
        chain_id=10,
        genesis_time=1,
        control_port=41002,
        **options("p1"),
    )
    assert provider.ports == {"8545": 41002}
    assert provider.control_url == "http://127.0.0.1:41002"
    assert provider.env["LAB_PROVIDER_CHAIN_ID"] == "10" and provider.env["LAB_PROVIDER_SEED"] == "7"

    gateway = GatewayContainer(
        "lab-gateway",
        load_gateway_spec("reference"),
        chain="ethereum",
        config=b"x",
        host_port=41003,
        **options("gateway"),
    )
    assert gateway.ports == {"4000": 41003}
    assert gateway.rpc_url == "http://127.0.0.1:41003/rpc/ethereum"
    assert gateway.health_url == "http://127.0.0.1:41003/api/health"


def test_a_gateway_config_to_mount_is_a_read_only_file_removed_with_the_container():
    reference = load_gateway_spec("reference")
    spec = reference.model_copy(
        update={
            "config": reference.config.model_copy(update={"delivery": "mount", "path": "/etc/gw/gateway.yml"})
        }
    )
    gateway = GatewayContainer(
        "lab-gateway", spec, chain="c", config=b"rendered", host_port=41003, **options("gateway")
    )
    assert gateway.config_dir is not None
    [(host_path, mount)] = gateway.volumes.items()
    assert Path(host_path).read_bytes() == b"rendered"
    assert mount == {"bind": "/etc/gw/gateway.yml", "mode": "ro"}
    gateway.stop()  # never started: only its files and client go
    assert not gateway.config_dir.exists()


def test_a_provider_head_that_is_not_a_block_number_is_an_error(monkeypatch: pytest.MonkeyPatch):
    provider = ProviderContainer(
        "lab-provider", ProviderSpec(id="p1"), chain_id=1, genesis_time=1, control_port=41002, **options("p1")
    )
    monkeypatch.setattr(provider, "health", lambda: {"status": "ok", "head": "0x1f"})
    assert provider.head() == 31
    monkeypatch.setattr(provider, "health", lambda: {"status": "ok", "head": "junk"})
    with pytest.raises(ValueError, match="not a block number: 'junk'"):
        provider.head()


def test_readiness_retries_until_the_probe_is_accepted():
    answers = iter([ConnectionError("refused"), {"status": "starting"}, {"status": "ok"}])

    def probe(_: Any) -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    step = ReadyWhen("healthy", probe, lambda h: h["status"] == "ok", timeout=5).with_poll_interval(0.01)
    step.wait_until_ready(FakeTarget())
    assert step.value == {"status": "ok"}


def test_readiness_times_out_naming_what_it_waited_for_and_the_last_error():
    def probe(_: Any) -> Any:
        raise ConnectionError("refused")

    step = ReadyWhen("its health endpoint answers ok", probe, timeout=0.2).with_poll_interval(0.01)
    with pytest.raises(LabError) as info:
        step.wait_until_ready(FakeTarget())
    message = str(info.value)
    assert message.startswith("p1: its health endpoint answers ok: not true after 0.2s")
    assert "ConnectionError: refused" in message and "last words" in message


def test_readiness_ends_at_once_when_the_lab_stops():
    stopping = threading.Event()
    stopping.set()
    step = ReadyWhen("never", lambda _: None, timeout=60, stopping=stopping)
    with pytest.raises(Stopping):
        step.wait_until_ready(FakeTarget())


def test_ports_published_beyond_loopback_fail_the_start():
    PublishedOnLoopback().wait_until_ready(
        FakeTarget({"8545/tcp": [{"HostIp": "127.0.0.1", "HostPort": "1"}]})
    )
    exposed = FakeTarget({"8545/tcp": [{"HostIp": "0.0.0.0", "HostPort": "1"}], "9/tcp": None})
    with pytest.raises(LabError, match=r"published beyond 127.0.0.1: 0.0.0.0:1"):
        PublishedOnLoopback().wait_until_ready(exposed)
