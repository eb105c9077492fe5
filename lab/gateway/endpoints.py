"""Lasso's RPC URL scheme: which profile, chain, strategy and provider a path names.

After `/rpc/` (or `/ws/rpc/`), optionally `profile/:profile/`, then one of:
    :chain                      the profile's default strategy
    :strategy/:chain            fastest | load-balanced | round-robin | latency-weighted | priority
    provider/:provider_id/:chain
    :chain/:provider_id         (Lasso's other spelling of the provider override)
`:chain` is a configured chain name or its decimal chain id. Routes without a profile use `public`
(`default` is an alias), or the only profile when there is just one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab import jsonrpc
from lab.gateway.config import PROFILE_ALIASES, STRATEGY_SLUGS, Strategy
from lab.gateway.runtime import ChainRuntime, ProfileRuntime, ProviderRuntime, Registry


@dataclass(frozen=True, slots=True)
class Target:
    chain: ChainRuntime
    strategy: Strategy
    provider: ProviderRuntime | None  # a provider override: one provider, no failover

    @property
    def strategy_label(self) -> str:
        return "provider" if self.provider is not None else self.strategy.value


class RouteError(Exception):
    """A path that names nothing configured: an HTTP status and a JSON-RPC error body."""

    def __init__(self, status: int, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.body = jsonrpc.error(None, jsonrpc.INVALID_PARAMS, message, data)


class Endpoints:
    """`resolve` with the paths already seen remembered (the configuration does not change at run time)."""

    _MAX_CACHED = 4096

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._cache: dict[str, Target] = {}

    def resolve(self, tail: str) -> Target:
        target = self._cache.get(tail)
        if target is None:
            target = resolve(self._registry, tail)
            if len(self._cache) < self._MAX_CACHED:
                self._cache[tail] = target
        return target


def resolve(registry: Registry, tail: str) -> Target:
    """The target of the path after /rpc/ or /ws/rpc/; RouteError when it names nothing configured."""
    segments = [s for s in tail.split("/") if s]
    if len(segments) >= 2 and segments[0] == "profile":
        profile = _profile(registry, segments[1])
        segments = segments[2:]
    else:
        if registry.default_profile is None:
            raise RouteError(404, "No default profile: use /rpc/profile/:profile/:chain", {"profile": None})
        profile = registry.profiles[registry.default_profile]
    match segments:
        case [chain]:
            found = _chain(profile, chain)
            return Target(found, found.policy.default_strategy, None)
        case ["provider", provider_id, chain]:
            found = _chain(profile, chain)
            return Target(found, found.policy.default_strategy, _provider(found, provider_id))
        case [first, second]:
            strategy = STRATEGY_SLUGS.get(first)
            if strategy is not None:
                return Target(_chain(profile, second), strategy, None)
            chain_found = profile.find_chain(first)
            if chain_found is not None:
                return Target(
                    chain_found, chain_found.policy.default_strategy, _provider(chain_found, second)
                )
            raise RouteError(
                400,
                f"Unknown strategy: {first}",
                {"strategy": first, "strategies": sorted(STRATEGY_SLUGS)},
            )
    raise RouteError(404, "Not found", {"path": tail})


def _profile(registry: Registry, slug: str) -> ProfileRuntime:
    profile = registry.profiles.get(slug) or registry.profiles.get(PROFILE_ALIASES.get(slug, slug))
    if profile is None:
        raise RouteError(
            404, f"Profile not found: {slug}", {"profile": slug, "profiles": sorted(registry.profiles)}
        )
    return profile


def _chain(profile: ProfileRuntime, name_or_id: str) -> ChainRuntime:
    chain = profile.find_chain(name_or_id)
    if chain is None:
        raise RouteError(
            404,
            f"Unsupported chain: {name_or_id}",
            {"chain": name_or_id, "profile": profile.slug, "chains": sorted(profile.chains)},
        )
    return chain


def _provider(chain: ChainRuntime, provider_id: str) -> ProviderRuntime:
    provider = chain.by_id.get(provider_id)
    if provider is None:
        raise RouteError(
            400,
            f"Unknown provider: {provider_id}",
            {"provider": provider_id, "chain": chain.name, "providers": sorted(chain.by_id)},
        )
    return provider
