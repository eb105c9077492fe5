"""Where everything of a lab is, as seen from the host (`lab up --json` prints it), known before any
container starts."""

from __future__ import annotations

from urllib.parse import urlsplit

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
    gateway_kind: str  # the adapter's name
    gateway_external: bool = False  # a gateway the user runs (`lab run --gateway-url`), not a lab container
    gateway_url: str
    gateway_rpc_url: str
    gateway_ws_url: str
    gateway_health_url: str
    gateway_events_url: str | None
    gateway_strategy_path: str | None = None  # "/rpc/{strategy}/<chain>", where the gateway has one
    gateway_provider_path: str | None = None  # "/rpc/provider/{provider}/<chain>", where it has one
    toxiproxy_url: str
    providers: dict[str, ProviderEndpoints]

    def rpc_url(self, *, strategy: str | None = None, provider: str | None = None) -> str:
        """The gateway's HTTP route for a strategy (`/rpc/<strategy>/<chain>`) or a provider override."""
        if provider is not None:
            if self.gateway_provider_path is None:
                raise ValueError(f"the {self.gateway_kind} gateway has no provider override route")
            return self.gateway_url + self.gateway_provider_path.format(provider=provider)
        if strategy is not None:
            if self.gateway_strategy_path is None:
                raise ValueError(f"the {self.gateway_kind} gateway has no strategy routes")
            return self.gateway_url + self.gateway_strategy_path.format(strategy=strategy)
        return self.gateway_rpc_url


def build_endpoints(
    spec: TopologySpec, plan: PortPlan, run_id: str, network: str, *, external_url: str | None = None
) -> Endpoints:
    """Where everything is; `external_url` (`lab run --gateway-url`): the gateway is the user's, at that
    URL (its path, if any, is the RPC path), and the lab starts none."""
    gateway = spec.gateway
    chain, chain_id = spec.chain, spec.chain_id
    if external_url is not None:
        parts = urlsplit(external_url)
        gateway_url = f"{parts.scheme}://{parts.netloc}"
        rpc_path = parts.path or gateway.rpc_path(chain, chain_id)
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        ws_base = f"{ws_scheme}://{parts.netloc}"
    else:
        gateway_url = f"http://{LOOPBACK}:{plan.gateway}"
        rpc_path = gateway.rpc_path(chain, chain_id)
        ws_base = f"ws://{LOOPBACK}:{plan.gateway}"
    strategy = gateway.strategy_path("{strategy}", chain, chain_id) if gateway.paths.strategy else None
    provider_path = gateway.provider_path("{provider}", chain, chain_id) if gateway.paths.provider else None
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
        gateway_kind=gateway.name,
        gateway_external=external_url is not None,
        gateway_url=gateway_url,
        gateway_rpc_url=gateway_url + rpc_path,
        gateway_ws_url=ws_base + gateway.ws_path(chain, chain_id),
        gateway_health_url=gateway_url + (gateway.ready.path or rpc_path),
        gateway_events_url=f"{gateway_url}/admin/events" if gateway.admin_api else None,
        gateway_strategy_path=strategy,
        gateway_provider_path=provider_path,
        toxiproxy_url=f"http://{LOOPBACK}:{plan.toxiproxy_api}",
        providers=providers,
    )
