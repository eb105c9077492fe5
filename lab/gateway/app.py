"""The gateway process: its state (`Gateway`) and its aiohttp application (`create_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from lab import jsonrpc
from lab.gateway.admin import Admin
from lab.gateway.chain_check import ChainIdChecker
from lab.gateway.config import GatewayConfig
from lab.gateway.endpoints import Endpoints
from lab.gateway.events import EventBus
from lab.gateway.health import HeadPoller
from lab.gateway.http_api import HttpRpc
from lab.gateway.metrics import Metrics
from lab.gateway.router import Router
from lab.gateway.runtime import ChainRuntime, Registry
from lab.gateway.subscriptions import SubscriptionManager, WsPool
from lab.gateway.upstream import NETWORK_ERRORS, http_post, new_session
from lab.gateway.ws_api import WsRpc

_BLOCK_NUMBER = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
_CHAIN_ID = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})


class Gateway:
    """Everything one running gateway holds. `start()` and `stop()` run inside the event loop."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.events = EventBus()
        self.metrics = Metrics()
        self.registry = Registry(config, self.events, self.metrics)
        self.endpoints = Endpoints(self.registry)
        self.started_at = time.time()
        self._session: aiohttp.ClientSession | None = None
        self._router: Router | None = None
        self.subscriptions: dict[ChainRuntime, SubscriptionManager] = {}
        self._pollers: list[HeadPoller] = []
        self._chain_checkers: list[ChainIdChecker] = []
        self.leaked: list[bytes] = []  # GatewaySettings.test_leak_bytes_per_request (test only)

    @property
    def router(self) -> Router:
        assert self._router is not None, "the gateway is not started"
        return self._router

    async def start(self) -> None:
        session = self._session = new_session()
        self._router = Router(session, self.events, self.registry.rng)
        await self._check_chain_ids()
        for chain in self.registry.chains():
            pool = WsPool(session, chain.policy.attempt_timeout_s)
            self.subscriptions[chain] = SubscriptionManager(chain, self._router, pool, self.registry.rng)
            poller = HeadPoller(
                chain.observe_heads,
                (p.id for p in chain.http_providers),
                functools.partial(self._fetch_head, chain),
                chain.policy.head_poll_interval_s,
            )
            poller.start()
            self._pollers.append(poller)

    async def _check_chain_ids(self) -> None:
        """Verify every provider's chain id before serving anything (bounded by the attempt timeout: a
        provider down now stays unverified, used only if no verified one is left, until it answers)."""
        checkers = [
            ChainIdChecker(chain, self._fetch_chain_id)
            for chain in self.registry.chains()
            if chain.policy.chain_id_check
        ]
        if checkers:
            timeout = max(c.chain.policy.attempt_timeout_s for c in checkers)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(c.check_due() for c in checkers))
        for checker in checkers:
            checker.start()
        self._chain_checkers = checkers

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self._chain_checkers))
        await asyncio.gather(*(p.stop() for p in self._pollers))
        await asyncio.gather(*(m.close() for m in self.subscriptions.values()))
        await asyncio.gather(*(m.pool.close() for m in self.subscriptions.values()))
        if self._session is not None:
            await self._session.close()

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    async def _fetch_head(self, chain: ChainRuntime, provider_id: str) -> int | None:
        """One provider's head, asked directly (no breaker: probes watch providers the router avoids)."""
        provider = chain.by_id[provider_id]
        assert self._session is not None and provider.url is not None
        timeout = min(chain.policy.attempt_timeout_s, chain.policy.head_poll_interval_s)
        started = time.perf_counter()
        try:
            status, raw = await http_post(
                self._session, provider.url, _BLOCK_NUMBER, provider.http_headers, timeout
            )
            body = orjson.loads(raw) if status == 200 else None
        except (*NETWORK_ERRORS, ValueError):  # down, or not answering JSON
            return None
        number = jsonrpc.quantity(body.get("result")) if isinstance(body, dict) else None
        if number is not None:
            provider.latency.record("http", "eth_blockNumber", time.perf_counter() - started)
        return number

    async def _fetch_chain_id(self, chain: ChainRuntime, provider_id: str) -> int | None:
        """One provider's eth_chainId, asked directly (no breaker), or None when it gave none."""
        provider = chain.by_id[provider_id]
        assert self._session is not None and provider.url is not None
        try:
            status, raw = await http_post(
                self._session, provider.url, _CHAIN_ID, provider.http_headers, chain.policy.attempt_timeout_s
            )
            body = orjson.loads(raw) if status == 200 else None
        except (*NETWORK_ERRORS, ValueError):
            return None
        return jsonrpc.quantity(body.get("result")) if isinstance(body, dict) else None

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "uptime_s": round(time.time() - self.started_at, 3),
            "profiles": sorted(self.registry.profiles),
            "default_profile": self.registry.default_profile,
        }


def create_app(config: GatewayConfig) -> web.Application:
    gateway = Gateway(config)
    largest_body = max(c.policy.max_body_bytes for c in gateway.registry.chains())
    # aiohttp's own limit only guards against bodies larger than every profile allows; each profile's
    # limit is checked by the handler, which answers with a JSON-RPC error body.
    app = web.Application(client_max_size=largest_body + 1)
    app[GATEWAY_KEY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)
    http, ws, admin = HttpRpc(gateway), WsRpc(gateway), Admin(gateway)

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(gateway.health()), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=gateway.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_routes(
        [
            web.post("/rpc/{tail:.+}", http.handle),
            web.get("/ws/rpc/{tail:.+}", ws.handle),
            web.get("/api/health", health),
            web.get("/metrics", metrics),
            *admin.routes(),
        ]
    )
    return app


GATEWAY_KEY = web.AppKey("gateway", Gateway)
