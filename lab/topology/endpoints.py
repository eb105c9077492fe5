"""Where everything of a lab is, as seen from the host (`lab up --json` prints it), known before any
container starts."""

from __future__ import annotations

from pydantic import BaseModel

from lab.topology.ports import LOOPBACK, PortPlan
from lab.topology.specs import TopologySpec


def container_name(run_id: str, role: str) -> str:
    return f"lab-{run_id}-{role}"


class ProviderEndpoints(BaseModel):
    id: str
    container: str
    control_url: str  # the provider's own HTTP port: control API and JSON-RPC without Toxiproxy
    proxies: dict[str, str]  # transport -> Toxiproxy proxy name
    proxy_urls: dict[str, str]  # transport -> the proxy's listener as published on 127.0.0.1
    upstream_urls: dict[str, str]  # transport -> the URL the gateway is configured with


class Endpoints(BaseModel):
    """Where everything of a running lab is, as seen from the host. `lab up --json` prints this."""

    run_id: str
    network: str
    chain: str
    chain_id: int
    gateway_kind: str
    gateway_url: str
    gateway_rpc_url: str
    gateway_ws_url: str
    gateway_health_url: str
    gateway_events_url: str | None
    toxiproxy_url: str
    providers: dict[str, ProviderEndpoints]

    def rpc_url(self, *, strategy: str | None = None, provider: str | None = None) -> str:
        """The gateway's HTTP route for a strategy (`/rpc/<strategy>/<chain>`) or a provider override."""
        if provider is not None:
            return f"{self.gateway_url}/rpc/provider/{provider}/{self.chain}"
        if strategy is not None:
            return f"{self.gateway_url}/rpc/{strategy}/{self.chain}"
        return self.gateway_rpc_url


def build_endpoints(spec: TopologySpec, plan: PortPlan, run_id: str, network: str) -> Endpoints:
    gateway_url = f"http://{LOOPBACK}:{plan.gateway}"
    providers = {}
    for provider in spec.providers:
        proxies = plan.proxies_of(provider.id)
        providers[provider.id] = ProviderEndpoints(
            id=provider.id,
            container=container_name(run_id, provider.id),
            control_url=f"http://{LOOPBACK}:{plan.providers[provider.id]}",
            proxies={t: p.name for t, p in proxies.items()},
            proxy_urls={
                "http": f"http://{LOOPBACK}:{proxies['http'].host_port}",
                "ws": f"ws://{LOOPBACK}:{proxies['ws'].host_port}/ws",
            },
            upstream_urls={t: p.gateway_url for t, p in proxies.items()},
        )
    return Endpoints(
        run_id=run_id,
        network=network,
        chain=spec.chain,
        chain_id=spec.chain_id,
        gateway_kind=spec.gateway.kind,
        gateway_url=gateway_url,
        gateway_rpc_url=gateway_url + spec.gateway.rpc_path.format(chain=spec.chain),
        gateway_ws_url=f"ws://{LOOPBACK}:{plan.gateway}" + spec.gateway.ws_path.format(chain=spec.chain),
        gateway_health_url=gateway_url + spec.gateway.health_path,
        gateway_events_url=f"{gateway_url}/admin/events" if spec.gateway.admin_api else None,
        toxiproxy_url=f"http://{LOOPBACK}:{plan.toxiproxy_api}",
        providers=providers,
    )
