"""The admin API the lab drives and reads (not part of Lasso's API):

    GET  /admin/events                                  server-sent events (see events.py)
    GET  /admin/breakers                                every breaker (profile, chain, provider, transport)
    POST /admin/breakers/{chain}/{provider}/open        force open (stays open until reset)
    POST /admin/breakers/{chain}/{provider}/reset       close and clear
    POST /admin/breakers/reset                          reset every breaker
    GET  /admin/providers                               heads, lag, latency and breakers per provider
    GET  /admin/subscriptions                           upstream subscription groups and their providers

The breaker routes take optional query parameters `transport` (http or ws; default both) and `profile`
(default every profile with that chain); `{chain}` is a chain name or id. They answer with the
breakers they changed, or 404 when nothing matched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from lab.gateway.events import sse_handler

if TYPE_CHECKING:
    from lab.gateway.app import Gateway
    from lab.gateway.breaker import CircuitBreaker
    from lab.gateway.runtime import ChainRuntime


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class Admin:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/events", self.events),
            web.get("/admin/breakers", self.breakers),
            web.post("/admin/breakers/reset", self.reset_all),
            web.post("/admin/breakers/{chain}/{provider}/open", self.open_one),
            web.post("/admin/breakers/{chain}/{provider}/reset", self.reset_one),
            web.get("/admin/providers", self.providers),
            web.get("/admin/subscriptions", self.subscriptions),
        ]

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await sse_handler(request, self.gateway.events)

    async def breakers(self, request: web.Request) -> web.Response:
        return _json({"breakers": self.gateway.registry.breaker_snapshot()})

    async def open_one(self, request: web.Request) -> web.Response:
        return self._apply(request, lambda b: b.force_open("forced_by_admin"))

    async def reset_one(self, request: web.Request) -> web.Response:
        return self._apply(request, lambda b: b.reset("reset_by_admin"))

    async def reset_all(self, request: web.Request) -> web.Response:
        changed = []
        for chain, provider, transport, breaker in self.gateway.registry.breakers():
            breaker.reset("reset_by_admin")
            changed.append(_name(chain.profile, chain.name, provider.id, transport))
        return _json({"changed": changed})

    def _apply(self, request: web.Request, action: Callable[[CircuitBreaker], None]) -> web.Response:
        chain_key, provider_id = request.match_info["chain"], request.match_info["provider"]
        transport = request.query.get("transport")
        profile_slug = request.query.get("profile")
        if transport not in (None, "http", "ws"):
            return _json({"error": "transport must be http or ws"}, 400)
        changed = []
        for slug, profile in self.gateway.registry.profiles.items():
            if profile_slug is not None and slug != profile_slug:
                continue
            chain = profile.find_chain(chain_key)
            provider = chain.by_id.get(provider_id) if chain is not None else None
            if chain is None or provider is None:
                continue
            for name, breaker in provider.breakers.items():
                if transport is None or name == transport:
                    action(breaker)
                    changed.append(_name(slug, chain.name, provider_id, name))
        if not changed:
            return _json({"error": f"no breaker of provider {provider_id!r} on chain {chain_key!r}"}, 404)
        return _json({"changed": changed})

    async def providers(self, request: web.Request) -> web.Response:
        out = []
        for chain in self.gateway.registry.chains():
            heads = chain.heads.snapshot()
            for provider in chain.providers:
                out.append(
                    {
                        "profile": chain.profile,
                        "chain": chain.name,
                        "provider": provider.id,
                        "head": heads.get(provider.id),
                        "chain_id": _chain_status(chain, provider.id),
                        "latency": provider.latency.snapshot(),
                        "breakers": {t: b.snapshot() for t, b in provider.breakers.items()},
                    }
                )
        return _json({"providers": out})

    async def subscriptions(self, request: web.Request) -> web.Response:
        groups = [g for manager in self.gateway.subscriptions.values() for g in manager.snapshot()]
        return _json({"subscriptions": groups})


def _chain_status(chain: ChainRuntime, provider_id: str) -> str:
    """`wrong` (serves another chain), `unverified` (not answered yet, or not checked), `ok`."""
    if provider_id in chain.wrong_chain:
        return "wrong"
    if provider_id in chain.unverified or not chain.policy.chain_id_check:
        return "unverified"
    return "ok"


def _name(profile: str, chain: str, provider: str, transport: str) -> dict[str, str]:
    return {"profile": profile, "chain": chain, "provider": provider, "transport": transport}
