"""The gateway's configuration file, rendered from the topology and the port plan: every upstream URL is
a Toxiproxy listener, never a provider itself. One renderer per `GatewaySpec.config_format`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from lab.topology.ports import PortPlan
from lab.topology.specs import TopologySpec


def _providers_section(spec: TopologySpec, plan: PortPlan) -> list[dict[str, Any]]:
    entries = []
    for index, provider in enumerate(spec.providers, start=1):
        proxies = plan.proxies_of(provider.id)
        entries.append(
            {
                "id": provider.id,
                "url": proxies["http"].gateway_url,
                "ws_url": proxies["ws"].gateway_url,
                "priority": provider.priority if provider.priority is not None else index,
            }
        )
    return entries


def _profile_document(front: dict[str, Any], body: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + yaml.safe_dump(body, sort_keys=False)


def _render_lab_profile(spec: TopologySpec, plan: PortPlan) -> str:
    chain = {"chain_id": spec.chain_id, "providers": _providers_section(spec, plan)}
    body: dict[str, Any] = {"chains": {spec.chain: chain}}
    if spec.gateway.settings:
        body["gateway"] = spec.gateway.settings
    return _profile_document({"name": spec.gateway.profile_name, "slug": spec.gateway.profile_slug}, body)


def _render_lasso_profile(spec: TopologySpec, plan: PortPlan) -> str:
    block_time_ms = round(min(p.block_time for p in spec.providers) * 1000)
    chain = {
        "chain_id": spec.chain_id,
        "block_time_ms": block_time_ms,
        "providers": _providers_section(spec, plan),
    }
    front = {"name": spec.gateway.profile_name, "slug": spec.gateway.profile_slug}
    return _profile_document(front, {"chains": {spec.chain: chain}})


CONFIG_RENDERERS: dict[str, Callable[[TopologySpec, PortPlan], str]] = {
    "lab": _render_lab_profile,
    "lasso": _render_lasso_profile,
}


def render_gateway_config(spec: TopologySpec, plan: PortPlan) -> str:
    return CONFIG_RENDERERS[spec.gateway.config_format](spec, plan)
