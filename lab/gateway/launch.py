"""Starting the gateway from tests and benchmarks: as a real process (`start_gateway_process`) or inside
the running event loop (`running_gateway`, for fast tests that want the Gateway object)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from lab.eventually import wait_for_value
from lab.gateway.config import GatewayConfig, load


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


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayExited(RuntimeError):
    """The gateway process ended before it became healthy."""


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
    command = [sys.executable, "-m", "lab", "gateway", "--config", str(config_path), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
        endpoint = GatewayEndpoint(port, pid=process.pid)
        try:
            _wait_healthy(endpoint, process, stderr, startup_timeout)
            yield endpoint
        finally:
            _stop(process)


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


def _wait_healthy(
    endpoint: GatewayEndpoint, process: subprocess.Popen[bytes], stderr: Any, timeout: float
) -> None:
    def health() -> dict[str, Any]:
        if process.poll() is not None:
            stderr.seek(0)
            output = stderr.read().decode(errors="replace").strip()
            raise GatewayExited(f"gateway exited with {process.returncode}: {output}")
        with urllib.request.urlopen(endpoint.url + "/api/health", timeout=1.0) as response:
            return orjson.loads(response.read())

    try:
        wait_for_value(
            health,
            lambda body: body.get("status") == "ok",
            timeout=timeout,
            message=f"gateway healthy at {endpoint.url}/api/health",
            ignore=(OSError,),
        )
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
