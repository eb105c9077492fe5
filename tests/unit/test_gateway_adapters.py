"""Gateway adapters (lab.topology.adapters): every shipped adapter loads and renders, the rendered
configurations have the structure their gateways' documentation gives (shared/reference/gateway-configs.md),
and errors in an adapter or its template name the file and the field or line, before any container."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from click.testing import CliRunner

from lab.topology import ProviderSpec, TopologySpec, load_gateway_spec
from lab.topology.adapters import (
    AdapterError,
    SpecError,
    load_adapter,
    parse_variable,
    shipped_adapters,
)
from lab.topology.cli import gateways_command
from lab.topology.gateway_config import render_gateway_config
from lab.topology.ports import plan_ports

SHIPPED = {"reference", "lasso", "haproxy", "nginx", "erpc", "dshackle", "web3-proxy"}


def rendered(
    name: str, variables: dict[str, object] | None = None, chain_id: int = 1
) -> tuple[str, set[int]]:
    """The adapter's configuration for a three-provider lab; and the Toxiproxy listen ports."""
    spec = TopologySpec(
        chain_id=chain_id,
        providers=[ProviderSpec(id="a"), ProviderSpec(id="b", weight=3), ProviderSpec(id="c", priority=9)],
        gateway=load_gateway_spec(name, variables),
    )
    plan = plan_ports(spec, lambda n: list(range(41000, 41000 + n)))
    return render_gateway_config(spec, plan), {p.listen_port for p in plan.proxies}


def assert_toxiproxy_url(url: str, listeners: set[int], scheme: str = "http") -> None:
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.hostname) == (scheme, "toxiproxy") and parsed.port in listeners, url


def test_the_shipped_adapters_are_the_seven_and_each_loads():
    assert set(shipped_adapters()) == SHIPPED
    for name in SHIPPED:
        spec = load_adapter(name)
        assert spec.name == name and spec.template_text
        assert spec.tested == (name in {"reference", "haproxy", "nginx"})
        assert spec.tested or spec.try_command, f"{name}: an untested adapter says how to try it"


def test_lab_gateways_lists_them_and_checks_a_file(tmp_path: Path):
    result = CliRunner().invoke(gateways_command, [])
    assert result.exit_code == 0
    for name in SHIPPED:
        assert re.search(rf"^{re.escape(name)}\s", result.output, re.M), name
    assert "untested here: no registry" in result.output
    bad = tmp_path / "mine.yml"
    bad.write_text("name: mine\nport: 1\n")
    result = CliRunner().invoke(gateways_command, [str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "paths" in result.output


# --- the rendered configurations, against each gateway's documented structure --------------------------


def test_reference_and_lasso_profiles():
    text, listeners = rendered("lasso")
    front, body = yaml.safe_load_all(text)
    assert front["slug"] == "public"  # Lasso refuses to start without a `public` profile
    chain = body["chains"]["ethereum"]
    assert chain["chain_id"] == 1 and chain["block_time_ms"] == 1000
    assert [(p["id"], p["priority"]) for p in chain["providers"]] == [("a", 1), ("b", 2), ("c", 9)]
    for p in chain["providers"]:
        assert_toxiproxy_url(p["url"], listeners)
        assert_toxiproxy_url(p["ws_url"], listeners, "ws")
    text, _ = rendered("reference", {"settings": {"retries": 2}})
    front, body = yaml.safe_load_all(text)
    assert front == {"name": "Lab", "slug": "lab"} and body["gateway"] == {"retries": 2}


def test_erpc_config_has_erpcs_shape():
    text, listeners = rendered("erpc", chain_id=8453)
    config = yaml.safe_load(text)
    assert config["server"] == {"httpHostV4": "0.0.0.0", "httpPortV4": 4000}
    [project] = config["projects"]
    [network] = project["networks"]
    assert network["architecture"] == "evm" and network["evm"]["chainId"] == 8453
    assert all("circuitBreaker" not in entry for entry in network["failsafe"])  # upstream scope only
    assert [u["id"] for u in project["upstreams"]] == ["a", "b", "c"]
    for upstream in project["upstreams"]:
        assert_toxiproxy_url(upstream["endpoint"], listeners)  # HTTP only: eRPC proxies no WebSocket
        assert upstream["evm"]["chainId"] == 8453
        assert "circuitBreaker" in upstream["failsafe"][0]
    assert project["upstreams"][1]["routing"]["scoreMultipliers"][0]["overall"] == 3  # b's weight
    assert load_adapter("erpc").rpc_path("ethereum", 8453) == "/main/evm/8453"


def test_dshackle_config_has_dshackles_shape():
    text, listeners = rendered("dshackle")
    config = yaml.safe_load(text)
    assert config["version"] == "v1"
    assert config["proxy"]["port"] == 8545 and config["proxy"]["routes"] == [
        {"id": "eth", "blockchain": "ethereum"}
    ]
    assert config["health"]["host"] == "0.0.0.0"  # its default, 127.0.0.1, is unreachable in a container
    upstreams = config["cluster"]["upstreams"]
    assert [(u["id"], u["role"]) for u in upstreams] == [
        ("a", "primary"),
        ("b", "secondary"),
        ("c", "secondary"),
    ]
    for upstream in upstreams:
        connection = upstream["connection"]["ethereum"]
        assert_toxiproxy_url(connection["rpc"]["url"], listeners)
        assert_toxiproxy_url(connection["ws"]["url"], listeners, "ws")
        assert upstream["blockchain"] == "ethereum"


def test_web3_proxy_config_has_its_toml_shape():
    text, listeners = rendered("web3-proxy")
    config = tomllib.loads(text)
    assert config["app"]["chain_id"] == 1 and config["app"]["min_synced_rpcs"] == 1
    rpcs = config["balanced_rpcs"]
    assert list(rpcs) == ["a", "b", "c"]
    for rpc in rpcs.values():
        assert "url" not in rpc and "tier" not in rpc  # the keys are http_url/ws_url; tiers are measured
        assert_toxiproxy_url(rpc["http_url"], listeners)
        assert_toxiproxy_url(rpc["ws_url"], listeners, "ws")
    assert rpcs["b"]["soft_limit"] == 3


def test_haproxy_config_knobs():
    text, listeners = rendered("haproxy", {"inter": "500ms", "fall": 2, "retries": 3, "redispatch": True})
    assert "    retries 3\n" in text and "option redispatch 1" in text
    assert "default-server inter 500ms fall 2 rise 2" in text
    assert "http-check send meth POST uri / ver HTTP/1.1" in text and '"method":"eth_blockNumber"' in text
    servers = re.findall(r"^\s+server (\S+) toxiproxy:(\d+) weight (\d+) check$", text, re.M)
    assert [(s[0], s[2]) for s in servers] == [("a", "1"), ("b", "3"), ("c", "1")] * 2  # http, ws
    assert {int(s[1]) for s in servers} == listeners
    plain, _ = rendered("haproxy", {"health_check": False})
    assert "httpchk" not in plain and " check" not in plain.split("backend", 1)[1]
    assert "option redispatch" not in plain


def test_nginx_config_knobs():
    text, listeners = rendered("nginx", {"next_upstream": "off", "fail_timeout": "4s"})
    assert "proxy_next_upstream off;" in text
    servers = re.findall(r"server toxiproxy:(\d+) weight=(\d+) max_fails=1 fail_timeout=4s;", text)
    assert {int(port) for port, _ in servers} == listeners and len(servers) == 6
    assert text.count("{") == text.count("}")
    # YAML 1.1 reads `off` as false: the template still says off
    assert "proxy_next_upstream off;" in rendered("nginx", {"next_upstream": False})[0]


# --- errors name the file and the field or line ----------------------------------------------------------


def adapter_file(tmp_path: Path, template: str, **fields: str) -> Path:
    (tmp_path / "mine.conf.j2").write_text(template)
    text = {
        "name": "mine",
        "image": "mine:1",
        "port": "9000",
        "paths": "{rpc: /, ws: /ws}",
        "config": "{template: mine.conf.j2, path: /etc/mine.conf}",
        "variables": "{knob: {default: 1}}",
        **fields,
    }
    path = tmp_path / "mine.yml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in text.items()))
    return path


def test_an_adapter_file_renders_like_the_shipped_ones(tmp_path: Path):
    path = adapter_file(
        tmp_path, "{% for p in providers %}{{ p.id }}={{ p.http_url }} {{ vars.knob }}\n{% endfor %}"
    )
    spec = load_adapter(str(path), {"knob": 5})
    assert spec.source == str(path) and spec.values == {"knob": 5}
    text, _ = rendered(str(path))
    assert text.splitlines()[0].startswith("a=http://toxiproxy:")


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("line one\n{% for p in providers %}\n{{ p.id }\n", {}, r"mine\.conf\.j2:3: "),
        ("one\ntwo\n{{ vars.nope }}\n", {}, r"mine\.conf\.j2:3: 'dict object' has no attribute 'nope'"),
        ("{{ providers[0].http_uri }}\n", {}, r"mine\.conf\.j2:1: .*http_uri"),
        ("x\n", {"port": "0"}, r"mine\.yml: port: Input should be greater than or equal to 1"),
        ("x\n", {"colour": "red"}, r"mine\.yml: colour: Extra inputs are not permitted"),
        ("x\n", {"paths": "{rpc: /}"}, r"mine\.yml: paths\.ws: Field required"),
        ("x\n", {"command": '["{{ nope }}"]'}, r"mine\.yml: command\[0\]: 'nope' is undefined"),
        ("x\n", {"config": "{template: missing.j2, path: /x}"}, r"mine\.yml: config\.template: cannot read"),
        ("x\n", {"build": "haproxy"}, r"mine\.yml: .*image or build, not both"),
        ("x\n", {"port": "[1"}, r"mine\.yml:\d+: not valid YAML"),
    ],
)
def test_adapter_errors_name_the_file_and_the_field_or_line(
    tmp_path: Path, template: str, fields: dict[str, str], expected: str
):
    path = adapter_file(tmp_path, template, **fields)
    with pytest.raises(AdapterError) as info:
        load_adapter(str(path))
    assert re.search(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_variables_are_refused_with_the_known_ones():
    with pytest.raises(SpecError, match=r"--gateway-var: unknown variable\(s\) falls .*known: health_check"):
        load_adapter("haproxy", {"falls": 2}, variables_source="--gateway-var")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("inter=500ms", ("inter", "500ms")), ("fall=2", ("fall", 2)), ("redispatch=true", ("redispatch", True)),
     ("next_upstream=off", ("next_upstream", "off")), ("retry_on=404 503", ("retry_on", "404 503"))],
)  # fmt: skip
def test_gateway_vars_from_the_command_line(text: str, parsed: tuple[str, object]):
    assert parse_variable(text) == parsed


def test_a_gateway_var_needs_a_name():
    with pytest.raises(SpecError, match="NAME=VALUE"):
        parse_variable("=1")
