"""Starting providers from tests and benchmarks: as a real process (`start_provider_process`) or inside
the running event loop (`running_provider`, for fast tests that want a fake clock or the server object).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from lab.eventually import wait_for_value
from lab.provider.server import Clock, ProviderServer
from lab.provider.settings import ProviderSettings
from lab.provider.specs import dump_behavior


@dataclass(frozen=True)
class ProviderEndpoint:
    """Where a started provider listens. `server` is set for an in-process provider."""

    provider_id: str
    port: int
    host: str = "127.0.0.1"
    pid: int | None = None
    server: ProviderServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.port}/_lab/"


class FakeClock:
    """A wall clock for tests that moves only when told: `clock()` is now, `advance(s)` moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(
    settings: ProviderSettings, clock: Clock = time.time, *, head_feed: bool = True
) -> tuple[web.AppRunner, ProviderServer, int]:
    """Start a provider on the running loop; returns its runner (to clean up), server and bound port."""
    server = ProviderServer(settings, clock, head_feed=head_feed)
    # handler_cancellation: a held request (always_timeout) ends when its client disconnects.
    runner = web.AppRunner(server.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, server, int(runner.addresses[0][1])


@contextlib.asynccontextmanager
async def running_provider(
    provider_id: str = "p1", *, clock: Clock = time.time, head_feed: bool = True, **options: Any
) -> AsyncIterator[ProviderEndpoint]:
    """An in-process provider on 127.0.0.1 and a free port; `options` are ProviderSettings fields."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    settings = ProviderSettings(provider_id=provider_id, **options)
    runner, server, port = await serve(settings, clock, head_feed=head_feed)
    try:
        yield ProviderEndpoint(provider_id, port, server=server)
    finally:
        await runner.cleanup()


def provider_args(provider_id: str, port: int, **options: Any) -> list[str]:
    """The `lab provider` arguments for these options (names as ProviderSettings / the CLI flags)."""
    args = ["--id", provider_id, "--port", str(port)]
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            value = orjson.dumps(dump_behavior(value)).decode()  # type: ignore[arg-type]
        elif isinstance(value, dict | list):
            value = orjson.dumps(value).decode()
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


@contextlib.contextmanager
def start_provider_process(
    provider_id: str,
    port: int | None = None,
    *,
    cpu: int | None = None,
    env: dict[str, str] | None = None,
    startup_timeout: float = 20.0,
    **options: Any,
) -> Iterator[ProviderEndpoint]:
    """Run `python -m lab provider` on 127.0.0.1 until the block exits; `cpu` pins it with taskset,
    `env` adds environment variables (e.g. LAB_PROVIDER_BEHAVIOR).

    Waits for `/_lab/health`; raises with the provider's stderr if it exits or never answers.
    """
    port = port or free_port()
    args = provider_args(provider_id, port, host="127.0.0.1", **options)
    endpoint = ProviderEndpoint(provider_id, port)
    with local_process(
        ["provider", *args],
        endpoint.control_url + "health",
        f"provider {provider_id}",
        cpu,
        env,
        startup_timeout,
    ) as pid:
        yield replace(endpoint, pid=pid)


class ProcessExited(RuntimeError):
    """A `python -m lab` process ended before it became healthy."""


@contextlib.contextmanager
def local_process(
    lab_args: list[str],
    health_url: str,
    name: str,
    cpu: int | None,
    env: Mapping[str, str] | None,
    startup_timeout: float,
) -> Iterator[int]:
    """Run `python -m lab *lab_args` until the block exits (SIGTERM, then SIGKILL) and yield its pid once
    `health_url` answers `{"status": "ok"}`; raise with its stderr if it exits first. Shared by the
    provider and the gateway launchers."""
    command = [sys.executable, "-m", "lab", *lab_args]
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
        try:
            _wait_healthy(process, stderr, health_url, name, startup_timeout)
            yield process.pid
        finally:
            _stop(process)


def _wait_healthy(
    process: subprocess.Popen[bytes], stderr: Any, health_url: str, name: str, timeout: float
) -> None:
    def health() -> dict[str, Any]:
        if process.poll() is not None:
            stderr.seek(0)
            output = stderr.read().decode(errors="replace").strip()
            raise ProcessExited(f"{name} exited with {process.returncode}: {output}")
        with urllib.request.urlopen(health_url, timeout=1.0) as response:
            return orjson.loads(response.read())

    wait_for_value(
        health,
        lambda body: body.get("status") == "ok",
        timeout=timeout,
        message=f"{name} healthy at {health_url}",
        ignore=(OSError,),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
