"""The gateway's configuration file, rendered from its adapter's template and the topology: every upstream
URL is a Toxiproxy listener, never a provider itself. Inside the lab the gateway reaches them on the lab
network (`toxiproxy:<listen port>`); a gateway on the host (`lab up --expose-providers`) reaches the same
listeners through their ports published on 127.0.0.1."""

from __future__ import annotations

from lab.topology.adapters import RenderInput, Upstream, render_config
from lab.topology.ports import LOOPBACK, PortPlan
from lab.topology.specs import TOXIPROXY_ALIAS, TopologySpec


def render_input(spec: TopologySpec, plan: PortPlan, *, on_host: bool = False) -> RenderInput:
    """The template's data: each provider's Toxiproxy listeners, as the lab's gateway container reaches
    them, or (`on_host`) as a process on the host does."""
    upstreams = []
    for index, provider in enumerate(spec.providers, start=1):
        proxies = plan.proxies_of(provider.id)
        http, ws = proxies["http"], proxies["ws"]
        host = LOOPBACK if on_host else TOXIPROXY_ALIAS
        upstreams.append(
            Upstream(
                id=provider.id,
                index=index,
                priority=provider.priority if provider.priority is not None else index,
                weight=provider.weight,
                http_host=host,
                http_port=http.host_port if on_host else http.listen_port,
                ws_host=host,
                ws_port=ws.host_port if on_host else ws.listen_port,
            )
        )
    block_time = min(p.block_time for p in spec.providers)
    return RenderInput(chain=spec.chain, chain_id=spec.chain_id, block_time=block_time, upstreams=upstreams)


def render_gateway_config(spec: TopologySpec, plan: PortPlan, *, on_host: bool = False) -> str:
    """The gateway's configuration file; AdapterError (naming the template's line) when it cannot render."""
    return render_config(spec.gateway, render_input(spec, plan, on_host=on_host))
