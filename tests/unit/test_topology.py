"""Topology specs, port planning, gateway configuration rendering and endpoints (no Docker)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from lab.gateway import config as gateway_config
from lab.topology import (
    Lab,
    ProviderSpec,
    SpecError,
    TopologySpec,
    load_gateway_spec,
    load_topology_spec,
)
from lab.topology.endpoints import build_endpoints
from lab.topology.gateway_config import render_gateway_config
from lab.topology.ports import allocate_host_ports, plan_ports


def counting_allocator(start: int = 40000):
    def allocate(count: int) -> list[int]:
        return list(range(start, start + count))

    return allocate


def three() -> TopologySpec:
    return TopologySpec.with_providers(3)


# --- specs -------------------------------------------------------------------------------------------


def test_default_spec_has_three_healthy_providers_and_the_reference_gateway():
    spec = TopologySpec()
    assert [p.id for p in spec.providers] == ["p1", "p2", "p3"]
    assert all(p.behavior == {"type": "healthy"} for p in spec.providers)
    assert spec.gateway.kind == "reference"


@pytest.mark.parametrize(
    ("providers", "fragment"),
    [
        ([{"id": "a"}, {"id": "a"}], "duplicate provider ids: ['a']"),
        ([{"id": "gateway"}], "reserved"),
        ([{"id": "Bad_Id"}], "should match pattern"),
        ([{"id": "a", "behavior": {"ms": 5}}], 'needs a "type"'),
        ([{"id": "a", "block_time": 0}], "greater than or equal to 0.01"),
        ([], "at least 1"),
    ],
)
def test_invalid_topologies_are_refused(providers, fragment):
    with pytest.raises(ValueError, match=None) as info:
        TopologySpec(providers=providers)
    assert fragment in str(info.value)


def test_topology_file_errors_name_the_file_and_the_field(tmp_path: Path):
    path = tmp_path / "topo.yml"
    path.write_text("providers:\n  - id: p1\n    block_time: -1\n")
    with pytest.raises(SpecError) as info:
        load_topology_spec(path)
    assert str(path) in str(info.value)
    assert "providers.0.block_time" in str(info.value)


def test_topology_file_with_a_named_gateway_profile(tmp_path: Path):
    path = tmp_path / "topo.yml"
    path.write_text(
        "chain: base\nchain_id: 8453\ngateway: lasso\nproviders: [{id: a}, {id: b, priority: 0}]\n"
    )
    spec = load_topology_spec(path)
    assert spec.gateway.kind == "lasso"
    assert spec.chain_id == 8453
    assert spec.provider("b").priority == 0


def test_topology_file_with_an_adapter_and_its_variables(tmp_path: Path):
    path = tmp_path / "topo.yml"
    path.write_text("gateway: {adapter: haproxy, variables: {fall: 5}}\n")
    spec = load_topology_spec(path)
    assert spec.gateway.name == "haproxy" and spec.gateway.values["fall"] == 5
    path.write_text("gateway: {adapter: haproxy, variables: {falls: 5}}\n")
    with pytest.raises(SpecError) as info:
        load_topology_spec(path)
    assert f"{path}: gateway.variables" in str(info.value) and "falls" in str(info.value)


def test_gateway_spec_from_a_name_is_a_fresh_copy():
    spec = load_gateway_spec("reference")
    spec.env["X"] = "1"
    assert "X" not in load_gateway_spec("reference").env


def test_gateway_spec_that_is_neither_adapter_nor_file():
    with pytest.raises(SpecError, match="neither a shipped adapter"):
        load_gateway_spec("no-such-gateway")


def test_reference_gateway_command_fills_placeholders():
    assert load_gateway_spec("reference").rendered_command() == [
        "--config",
        "/home/lab/gateway.yml",
        "--port",
        "4000",
    ]
    assert load_gateway_spec("lasso").rendered_command() is None


# --- ports -------------------------------------------------------------------------------------------


def test_plan_gives_one_proxy_per_provider_and_transport():
    plan = plan_ports(three(), counting_allocator())
    assert [p.name for p in plan.proxies] == ["p1_http", "p1_ws", "p2_http", "p2_ws", "p3_http", "p3_ws"]
    assert [p.listen_port for p in plan.proxies] == list(range(8666, 8672))
    assert {p.upstream for p in plan.proxies} == {"p1:8545", "p2:8545", "p3:8545"}


def test_plan_host_ports_are_all_distinct():
    plan = plan_ports(three(), counting_allocator())
    host_ports = [
        plan.toxiproxy_api,
        plan.gateway,
        *plan.providers.values(),
        *(p.host_port for p in plan.proxies),
    ]
    assert len(host_ports) == len(set(host_ports)) == 2 + 3 + 6


def test_plan_respects_the_listen_port_base():
    plan = plan_ports(TopologySpec.with_providers(1, toxiproxy_port_base=9000), counting_allocator())
    assert [p.listen_port for p in plan.proxies] == [9000, 9001]


def test_allocated_host_ports_are_distinct_and_free_on_loopback():
    ports = allocate_host_ports(12)
    assert len(set(ports)) == 12
    for port in ports:  # each can be bound right away
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


# --- gateway configuration ---------------------------------------------------------------------------


def test_reference_config_is_read_by_the_reference_gateway(tmp_path: Path):
    settings = {"retries": 1, "breaker": {"failure_threshold": 3}}
    spec = three().model_copy(update={"gateway": load_gateway_spec("reference", {"settings": settings})})
    plan = plan_ports(spec, counting_allocator())
    path = tmp_path / "gateway.yml"
    path.write_text(render_gateway_config(spec, plan))

    loaded = gateway_config.load(path, environ={})
    profile = loaded.profiles["lab"]
    chain = profile.chains["ethereum"]
    assert loaded.default_profile == "lab"
    assert chain.chain_id == 1
    assert [p.id for p in chain.providers] == ["p1", "p2", "p3"]
    assert [p.priority for p in chain.providers] == [1, 2, 3]
    assert profile.gateway.retries == 1 and profile.gateway.breaker.failure_threshold == 3


def test_every_upstream_url_points_at_a_toxiproxy_listener():
    spec = TopologySpec.with_providers(4)
    plan = plan_ports(spec, counting_allocator())
    listeners = {p.listen_port for p in plan.proxies}
    for name in ("reference", "lasso"):
        spec.gateway = load_gateway_spec(name)
        body = list(yaml.safe_load_all(render_gateway_config(spec, plan)))[1]
        for provider in body["chains"]["ethereum"]["providers"]:
            for key in ("url", "ws_url"):
                url = urlparse(provider[key])
                assert url.hostname == "toxiproxy", provider
                assert url.port in listeners
        assert "gateway" not in body


def test_lasso_profile_has_lassos_shape():
    spec = TopologySpec(
        providers=[ProviderSpec(id="a", block_time=2.0), ProviderSpec(id="b", priority=7)],
        gateway=load_gateway_spec("lasso"),
    )
    front, body = yaml.safe_load_all(render_gateway_config(spec, plan_ports(spec, counting_allocator())))
    assert front == {"name": "Lab", "slug": "public"}
    chain = body["chains"]["ethereum"]
    assert chain["block_time_ms"] == 1000
    assert [(p["id"], p["priority"]) for p in chain["providers"]] == [("a", 1), ("b", 7)]
    assert chain["providers"][0]["ws_url"].endswith("/ws")


# --- endpoints ---------------------------------------------------------------------------------------


def test_endpoints_are_on_loopback_and_name_every_proxy():
    spec = three()
    plan = plan_ports(spec, counting_allocator())
    endpoints = build_endpoints(spec, plan, "run1", "lab-run1")
    urls = [endpoints.gateway_rpc_url, endpoints.gateway_ws_url, endpoints.toxiproxy_url]
    for provider in endpoints.providers.values():
        urls += [provider.control_url, *provider.proxy_urls.values()]
    assert all(urlparse(u).hostname == "127.0.0.1" for u in urls)
    assert endpoints.providers["p2"].proxies == {"http": "p2_http", "ws": "p2_ws"}
    assert endpoints.providers["p2"].proxy_urls["http"] == f"http://127.0.0.1:{plan.proxies[2].host_port}"
    assert endpoints.gateway_ws_url == f"ws://127.0.0.1:{plan.gateway}/ws/rpc/ethereum"


def test_rpc_urls_for_strategies_and_provider_overrides():
    spec = three()
    endpoints = build_endpoints(spec, plan_ports(spec, counting_allocator()), "r", "lab-r")
    base = endpoints.gateway_url
    assert endpoints.rpc_url() == f"{base}/rpc/ethereum"
    assert endpoints.rpc_url(strategy="priority") == f"{base}/rpc/priority/ethereum"
    assert endpoints.rpc_url(provider="p1") == f"{base}/rpc/provider/p1/ethereum"


def test_endpoints_serialise_to_json():
    spec = three()
    endpoints = build_endpoints(spec, plan_ports(spec, counting_allocator()), "r", "lab-r")
    data = endpoints.model_dump()
    assert data["providers"]["p1"]["container"] == "lab-r-p1"
    assert data["gateway_events_url"].endswith("/admin/events")


def test_a_lab_knows_its_endpoints_before_it_starts():
    lab = Lab(three(), run_id="unit-1")
    assert lab.endpoints.run_id == "unit-1"
    assert lab.network_name == "lab-unit-1"
    with pytest.raises(RuntimeError, match="not running"):
        _ = lab.faults


def test_a_run_id_must_be_a_docker_friendly_name():
    with pytest.raises(SpecError, match="run id"):
        Lab(three(), run_id="Has Spaces")


def test_run_ids_have_a_timestamp_an_optional_name_and_a_random_suffix():
    from lab.record import new_run_id
    from lab.topology.lab import _RUN_ID

    plain, named = new_run_id(), new_run_id("smoke")
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", plain)
    assert re.fullmatch(r"\d{8}-\d{6}-smoke-[0-9a-f]{6}", named)
    long = new_run_id("a-very-long-scenario-name-" * 4)
    assert len(long) == 61 and _RUN_ID.match(long)
    assert new_run_id() != new_run_id()


@pytest.mark.parametrize(
    ("argv", "started_by"),
    [
        (["/venv/bin/lab", "run", "toxics/smoke.yml"], "lab run"),
        (["/src/lab/__main__.py", "run"], "lab run"),  # python -m lab run
        (["/venv/bin/pytest", "-q"], "test session"),
        (["/venv/lib/python3.11/site-packages/pytest/__main__.py"], "test session"),
        (["bench/startup.py"], "startup.py"),
        (["-c"], "python"),
    ],
)
def test_a_lab_says_what_started_it(monkeypatch: pytest.MonkeyPatch, argv: list[str], started_by: str):
    monkeypatch.setattr("sys.argv", argv)
    assert Lab(three()).started_by == started_by
    assert Lab(three(), detached=True).started_by == "lab up"
    assert Lab(three(), started_by="a notebook").started_by == "a notebook"
