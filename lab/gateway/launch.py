"""Starting the gateway from tests and benchmarks: as a real process (`start_gateway_process`) or inside
the running event loop (`running_gateway`, for fast tests that want the Gateway object)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.gateway.config import GatewayConfig, load
from lab.provider.launch import free_port, local_process


@dataclass(frozen=True)
class GatewayEndpoint:
    """Where a started gateway listens. `gateway` is set for an in-process gateway."""

    port: int
    host: str = "127.0.0.1"
    pid: int | None = None
    gateway: Any = None  # lab.gateway.app.Gateway, in process only

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def events_url(self) -> str:
        return self.url + "/admin/events"

    def rpc_url(self, chain: str, *, strategy: str | None = None, provider: str | None = None) -> str:
        return self.url + _rpc_path(chain, strategy, provider)

    def ws_url(self, chain: str, *, strategy: str | None = None, provider: str | None = None) -> str:
        return self.ws_base + "/ws" + _rpc_path(chain, strategy, provider)


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
    port = port or free_port()
    args = ["gateway", "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    health_url = GatewayEndpoint(port).url + "/api/health"
    with local_process(args, health_url, "gateway", cpu, env, startup_timeout) as pid:
        yield GatewayEndpoint(port, pid=pid)


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig | str | Path) -> AsyncIterator[GatewayEndpoint]:
    """An in-process gateway on 127.0.0.1 and a free port."""
    from lab.gateway.app import GATEWAY_KEY, create_app

    app = create_app(config if isinstance(config, GatewayConfig) else load(config))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        yield GatewayEndpoint(int(runner.addresses[0][1]), gateway=app[GATEWAY_KEY])
    finally:
        await runner.cleanup()
