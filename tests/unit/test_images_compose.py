"""docker-compose.yml and its configuration files agree with each other and with the lab's rules: every
published port on 127.0.0.1, the images `lab images` tags, every upstream behind a Toxiproxy listener."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lab.gateway.config import load

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CONFIG_DIR = ROOT / "lab" / "images" / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def proxies() -> dict[str, dict[str, Any]]:
    return {proxy["name"]: proxy for proxy in json.loads((CONFIG_DIR / "toxiproxy.json").read_text())}


def test_a_format_both_compose_versions_read(compose: dict[str, Any]) -> None:
    assert compose["version"] == "2.4"  # v1 needs it for depends_on conditions; v2 ignores it


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert len(published) == 6  # gateway, toxiproxy, locust web UI, three providers' control APIs
    for port in published:
        assert re.fullmatch(r"127\.0\.0\.1:(\$\{[A-Z0-9_]+:-\d+\}|\d+):\d+", port), port


def test_services_use_the_latest_tags_lab_images_makes_or_the_tags_given(compose: dict[str, Any]) -> None:
    images = {service["image"] for service in compose["services"].values()}
    assert images == {
        f"${{LAB_{name.upper()}_IMAGE:-lab-{name}:latest}}"
        for name in ("provider", "gateway", "locust", "toxiproxy")
    }


def test_every_service_restarts_by_itself_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["restart"] == "unless-stopped", name  # not `always`: a killed container stays down
        assert service["healthcheck"]["test"][0] == "CMD", name  # exec form: no image needs a shell
        assert service["healthcheck"]["retries"] >= 3, name


def test_only_the_control_service_holds_the_docker_socket_and_it_has_no_host_port(
    compose: dict[str, Any],
) -> None:
    socket = "/var/run/docker.sock:/var/run/docker.sock"
    holders = [name for name, service in compose["services"].items() if socket in service.get("volumes", [])]
    assert holders == ["control"]
    control = compose["services"]["control"]
    assert "ports" not in control
    assert control["entrypoint"] == ["lab", "control"]
    assert control["cap_drop"] == ["ALL"] and control["read_only"] is True
    services = set(control["command"][1::2])
    assert services == {"p1", "p2", "p3", "gateway"}  # never the Locust containers, nor itself
    for service in compose["services"].values():  # nothing needs the socket's group any more
        assert "group_add" not in service
    assert "LAB_DOCKER_GID" not in COMPOSE.read_text()


def test_services_start_after_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}"
            assert "healthcheck" in services[needed]
    assert set(services["locust-master"]["depends_on"]) == {"gateway", "control"}


def test_services_and_network_carry_the_managed_label(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["labels"]["lab.managed"] == "true", name
    assert compose["networks"]["lab"]["labels"]["lab.managed"] == "true"


def test_mounted_configuration_files_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # the project's own files, relative to the compose file
                assert (ROOT / source).exists(), volume
            elif not source.startswith("/"):  # a named volume; absolute paths are the host's (a socket)
                assert source in compose.get("volumes", {}), f"{volume}: undeclared named volume"


def test_each_provider_has_an_http_and_a_ws_proxy_to_its_service(
    compose: dict[str, Any], proxies: dict[str, dict[str, Any]]
) -> None:
    providers = sorted(name for name in compose["services"] if re.fullmatch(r"p\d+", name))
    assert providers == ["p1", "p2", "p3"]
    assert sorted(proxies) == sorted(f"{p}_{t}" for p in providers for t in ("http", "ws"))
    for name, proxy in proxies.items():
        assert proxy["upstream"] == f"{name.split('_')[0]}:8545"
        assert proxy["listen"].startswith("0.0.0.0:")
    listen_ports = [proxy["listen"].rsplit(":", 1)[1] for proxy in proxies.values()]
    assert len(set(listen_ports)) == len(listen_ports)


def test_the_gateway_reaches_every_provider_only_through_toxiproxy(
    proxies: dict[str, dict[str, Any]],
) -> None:
    config = load(CONFIG_DIR / "gateway.yml", environ={})
    assert config.default_profile == "public"
    (chain,) = config.profiles["public"].chains.values()
    assert chain.chain_id == 1
    listeners = {f"toxiproxy:{proxy['listen'].rsplit(':', 1)[1]}": name for name, proxy in proxies.items()}
    for provider in chain.providers:
        assert provider.url is not None and provider.ws_url is not None
        assert listeners[urlsplit(provider.url).netloc] == f"{provider.id}_http"
        assert listeners[urlsplit(provider.ws_url).netloc] == f"{provider.id}_ws"
    assert min(chain.providers, key=lambda p: p.priority).id == "p1"


def test_providers_share_one_chain(compose: dict[str, Any]) -> None:
    commands = [compose["services"][p]["command"] for p in ("p1", "p2", "p3")]
    settings = [dict(zip(c[::2], c[1::2], strict=True)) for c in commands]
    assert [s["--id"] for s in settings] == ["p1", "p2", "p3"]
    for option in ("--chain-id", "--block-time", "--genesis-time"):
        assert len({s[option] for s in settings}) == 1, option
