"""Starting the gateway from tests and benchmarks: as a real process (`start_gateway_process`) or inside
the running event loop (`running_gateway`, for fast tests that want the Gateway object)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from lab import serving
from lab.gateway.config import GatewayConfig, load

if TYPE_CHECKING:
    from lab.gateway.app import Gateway


@dataclass(frozen=True, kw_only=True)
class GatewayEndpoint(serving.LocalServer):
    """Where a started gateway listens. `gateway` is set for an in-process gateway."""

    gateway: Gateway | None = None

    @property
    def url(self) -> str:
        return self.http_base

    @property
    def events_url(self) -> str:
        return self.url + "/admin/events"

    def rpc_url(self, chain: str, *, strategy: str | None = None, provider: str | None = None) -> str:
        return self.url + _rpc_path(chain, strategy, provider)

    def ws_url(self, chain: str, *, strategy: str | None = None, provider: str | None = None) -> str:
        return self.ws_base + "/ws" + _rpc_path(chain, strategy, provider)


class Upstream(Protocol):
    """A provider a test profile routes to (a `lab.provider.launch.ProviderEndpoint`)."""

    @property
    def url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...


def profile_yaml(
    slug: str,
    providers: Mapping[str, Upstream],
    *,
    name: str | None = None,
    block_time_s: float | None,
    gateway: Mapping[str, Any] | None = None,
) -> str:
    """A Lasso profile file with one chain ("ethereum", chain id 1) served by `providers`, in priority
    order; `gateway` adds to its gateway settings (default strategy: priority). `block_time_s` None
    leaves `block_time_ms` out (the gateway measures it, as with the lab's own configuration)."""
    chain: dict[str, Any] = {
        "chain_id": 1,
        **({"block_time_ms": int(block_time_s * 1000)} if block_time_s is not None else {}),
        "providers": [
            {"id": provider_id, "url": p.url, "ws_url": p.ws_url, "priority": i}
            for i, (provider_id, p) in enumerate(providers.items())
        ],
    }
    body = {"chains": {"ethereum": chain}, "gateway": {"default_strategy": "priority", **(gateway or {})}}
    return f"---\nname: {name or slug}\nslug: {slug}\n---\n" + yaml.safe_dump(body)


def _rpc_path(chain: str, strategy: str | None, provider: str | None) -> str:
    if provider is not None:
        return f"/rpc/provider/{provider}/{chain}"
    if strategy is not None:
        return f"/rpc/{strategy}/{chain}"
    return f"/rpc/{chain}"


@contextlib.contextmanager
def start_gateway_process(
    config_path: str | Path,
    port: int | None = None,
    *,
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[GatewayEndpoint]:
    """Run `python -m lab gateway` on 127.0.0.1 until the block exits; `cpu` pins it with taskset.

    Waits for `/api/health`; raises with the gateway's stderr if it exits or never answers.
    """
    endpoint = GatewayEndpoint(port=port or serving.free_port())
    args = ["gateway", "--config", str(config_path), "--host", endpoint.host, "--port", str(endpoint.port)]
    with serving.start_process(
        args, endpoint.url + "/api/health", "gateway", cpu=cpu, env=env, startup_timeout=startup_timeout
    ) as pid:
        yield GatewayEndpoint(port=endpoint.port, pid=pid)


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig | str | Path) -> AsyncIterator[GatewayEndpoint]:
    """An in-process gateway on 127.0.0.1 and a free port."""
    from lab.gateway.app import GATEWAY_KEY, create_app

    app = create_app(config if isinstance(config, GatewayConfig) else load(config))
    runner, port = await serving.listen(app, serving.LOCALHOST, 0)
    try:
        yield GatewayEndpoint(port=port, gateway=app[GATEWAY_KEY])
    finally:
        await runner.cleanup()
