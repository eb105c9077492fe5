"""Starting providers from tests and benchmarks: as a real process (`start_provider_process`) or inside
the running event loop (`running_provider`, for fast tests that want a fake clock or the server object).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from lab import serving
from lab.provider.server import Clock, ProviderServer
from lab.provider.settings import ProviderSettings
from lab.provider.specs import dump_behavior, is_behavior


@dataclass(frozen=True, kw_only=True)
class ProviderEndpoint(serving.LocalServer):
    """Where a started provider listens. `server` is set for an in-process provider."""

    provider_id: str
    server: ProviderServer | None = None

    @property
    def url(self) -> str:
        return self.http_base + "/"

    @property
    def ws_url(self) -> str:
        return self.ws_base + "/ws"

    @property
    def control_url(self) -> str:
        return self.http_base + "/_lab/"


class FakeClock:
    """A wall clock for tests that moves only when told: `clock()` is now, `advance(s)` moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def serve(
    settings: ProviderSettings, clock: Clock = time.time, *, head_feed: bool = True
) -> tuple[web.AppRunner, ProviderServer, int]:
    """Start a provider on the running loop; returns its runner (to clean up), server and bound port."""
    server = ProviderServer(settings, clock, head_feed=head_feed)
    # handler_cancellation: a held request (always_timeout) ends when its client disconnects.
    runner, port = await serving.listen(
        server.app, settings.host, settings.port, backlog=1024, handler_cancellation=True
    )
    return runner, server, port


@contextlib.asynccontextmanager
async def running_provider(
    provider_id: str = "p1", *, clock: Clock = time.time, head_feed: bool = True, **options: Any
) -> AsyncIterator[ProviderEndpoint]:
    """An in-process provider on 127.0.0.1 and a free port; `options` are ProviderSettings fields."""
    options.setdefault("host", serving.LOCALHOST)
    options.setdefault("port", 0)
    settings = ProviderSettings(provider_id=provider_id, **options)
    runner, server, port = await serve(settings, clock, head_feed=head_feed)
    try:
        yield ProviderEndpoint(provider_id=provider_id, port=port, server=server)
    finally:
        await runner.cleanup()


def provider_args(provider_id: str, port: int, **options: Any) -> list[str]:
    """The `lab provider` arguments for these options (names as ProviderSettings / the CLI flags)."""
    args = ["--id", provider_id, "--port", str(port)]
    for name, value in options.items():
        if value is None:
            continue
        if is_behavior(value):
            value = orjson.dumps(dump_behavior(value)).decode()
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
    endpoint = ProviderEndpoint(provider_id=provider_id, port=port or serving.free_port())
    args = provider_args(provider_id, endpoint.port, host=endpoint.host, **options)
    with serving.start_process(
        ["provider", *args],
        endpoint.control_url + "health",
        f"provider {provider_id}",
        cpu=cpu,
        env=env,
        startup_timeout=startup_timeout,
    ) as pid:
        yield dataclasses.replace(endpoint, pid=pid)
