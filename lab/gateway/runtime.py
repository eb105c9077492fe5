"""The live state built from a configuration: profiles → chains → providers, with their breakers,
latency and head tracking, and the resolved policy of each chain."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from lab.gateway import events as ev
from lab.gateway.breaker import BreakerState, CircuitBreaker
from lab.gateway.config import (
    BreakerSettings,
    ChainConfig,
    GatewayConfig,
    GatewaySettings,
    ProviderConfig,
    Strategy,
)
from lab.gateway.health import HEAD_SENSITIVE_METHODS, HeadTracker, InFlight, LatencyStats
from lab.gateway.metrics import ChainMetrics, Metrics
from lab.gateway.upstream import JSON_HEADERS

TRANSPORTS = ("http", "ws")
_DEFAULT_SILENCE_S = 35.0  # Lasso's new_heads_timeout_ms default, while the block time is unknown
_SILENCE_BLOCKS = 3  # the silence timeout, in block times, when none is configured
_MIN_MEASURED_SILENCE_S = 1.0  # floor of a silence timeout derived from a measured block time


@dataclass(frozen=True, slots=True)
class ChainPolicy:
    """The gateway settings of a profile with the chain's own Lasso overrides applied."""

    default_strategy: Strategy
    breaker: BreakerSettings
    retries: int
    attempt_timeout_s: float
    deadline_s: float
    slow_call_s: float | None
    lag_check: bool
    max_lag_blocks: int
    head_poll_interval_s: float
    chain_id_check: bool
    chain_check_interval_s: float
    answer_check: bool
    block_time_s: float | None
    gap_filling: bool
    follow_reorgs: bool
    max_backfill_blocks: int
    backfill_timeout_s: float
    silence_timeout_s: float | None  # None: 3 measured block times (ChainRuntime.silence_timeout_s)
    max_body_bytes: int
    max_batch_size: int
    test_leak_bytes_per_request: int

    @classmethod
    def resolve(cls, settings: GatewaySettings, chain: ChainConfig) -> ChainPolicy:
        block_time_s = chain.block_time_ms / 1000 if chain.block_time_ms else None
        silence: float | None
        if chain.websocket.new_heads_timeout_ms is not None:
            silence = chain.websocket.new_heads_timeout_ms / 1000
        elif settings.silence_timeout_s is not None:
            silence = settings.silence_timeout_s
        else:
            silence = _SILENCE_BLOCKS * block_time_s if block_time_s else None
        failover = chain.websocket.failover
        return cls(
            default_strategy=settings.default_strategy,
            breaker=settings.breaker,
            retries=settings.retries,
            attempt_timeout_s=settings.attempt_timeout_s,
            deadline_s=settings.deadline_s,
            slow_call_s=settings.slow_call_s,
            lag_check=settings.lag_check,
            max_lag_blocks=_first(chain.selection.max_lag_blocks, settings.max_lag_blocks),
            head_poll_interval_s=(
                chain.monitoring.probe_interval_ms / 1000
                if chain.monitoring.probe_interval_ms
                else settings.head_poll_interval_s
            ),
            chain_id_check=settings.chain_id_check,
            chain_check_interval_s=settings.chain_check_interval_s,
            answer_check=settings.answer_check,
            block_time_s=block_time_s,
            gap_filling=settings.gap_filling,
            follow_reorgs=settings.follow_reorgs,
            max_backfill_blocks=_first(failover.max_backfill_blocks, settings.max_backfill_blocks),
            backfill_timeout_s=(
                failover.backfill_timeout_ms / 1000 if failover.backfill_timeout_ms else settings.deadline_s
            ),
            silence_timeout_s=silence,
            max_body_bytes=settings.max_body_bytes,
            max_batch_size=settings.max_batch_size,
            test_leak_bytes_per_request=settings.test_leak_bytes_per_request,
        )


def _first(override: int | None, default: int) -> int:
    return default if override is None else override


class ProviderRuntime:
    """One provider of one chain: where it is, its breakers per transport and its measured latency."""

    __slots__ = (
        "breakers",
        "http_headers",
        "http_target",
        "id",
        "in_flight",
        "latency",
        "priority",
        "url",
        "weight",
        "ws_headers",
        "ws_url",
    )

    def __init__(self, config: ProviderConfig, breakers: dict[str, CircuitBreaker]) -> None:
        self.id = config.id
        self.url = config.url
        self.http_target = URL(config.url) if config.url else None  # parsed once, not per request
        self.ws_url = config.ws_url
        self.priority = config.priority
        self.weight = config.weight
        self.http_headers = {**JSON_HEADERS, **config.headers}
        self.ws_headers = dict(config.headers)
        self.breakers = breakers
        self.latency = LatencyStats()
        self.in_flight = InFlight()  # HTTP attempts waiting for an answer

    @property
    def http_breaker(self) -> CircuitBreaker:
        return self.breakers["http"]

    @property
    def ws_breaker(self) -> CircuitBreaker:
        return self.breakers["ws"]


class ChainRuntime:
    """One chain of one profile."""

    def __init__(
        self,
        profile: str,
        name: str,
        config: ChainConfig,
        policy: ChainPolicy,
        events: ev.EventBus,
        metrics: Metrics,
    ) -> None:
        self.profile = profile
        self.name = name
        self.chain_id = config.chain_id
        self.policy = policy
        self.events = events
        self.metrics = ChainMetrics(metrics, profile, name)
        self.providers = tuple(
            ProviderRuntime(p, {t: self._breaker(p.id, t) for t in TRANSPORTS}) for p in config.providers
        )
        self.by_id = {p.id: p for p in self.providers}
        self.http_providers = tuple(p for p in self.providers if p.url)
        self.ws_providers = tuple(p for p in self.providers if p.ws_url)
        self.heads = HeadTracker(
            (p.id for p in self.providers),
            max_lag_blocks=policy.max_lag_blocks,
            block_time_s=policy.block_time_s,
            on_lag_change=self._on_lag_change if policy.lag_check else None,
        )
        # Chain id verification (chain_id_check): providers serving another chain are never used; those
        # not verified yet (down since start) only when no verified provider is left.
        self.wrong_chain: set[str] = set()
        self.unverified: set[str] = {p.id for p in self.providers} if policy.chain_id_check else set()

    @property
    def silence_timeout_s(self) -> float:
        """How long a subscription's upstream may stay silent before the gateway resubscribes elsewhere:
        the configured timeout, else 3 block times (configured, else measured from the best head's
        progress, then at least 1 s), else 35 s until the block time is known. A profile without
        `block_time_ms` (the lab's) would otherwise wait 35 s, and a subscription on a partitioned provider
        would only move when the WebSocket heartbeat noticed, 10 to 15 s after its last head."""
        configured = self.policy.silence_timeout_s
        if configured is not None:
            return configured
        block_time_s = self.heads.block_time_s
        if block_time_s is None or block_time_s <= 0:
            return _DEFAULT_SILENCE_S
        return max(_SILENCE_BLOCKS * block_time_s, _MIN_MEASURED_SILENCE_S)

    def observe_head(self, provider_id: str, number: int) -> None:
        self.observe_heads([(provider_id, number)])

    def observe_heads(
        self, observations: list[tuple[str, int]], ages_s: Mapping[str, float] | None = None
    ) -> None:
        if self.wrong_chain or self.unverified:  # another chain's head says nothing about this one's
            excluded = self.wrong_chain | self.unverified
            observations = [(pid, number) for pid, number in observations if pid not in excluded]
            if not observations:
                return
        self.heads.observe_all(observations, ages_s)
        for provider_id, number in observations:
            self.metrics.head(provider_id, number)

    def chain_checked(self, provider_id: str, served_chain_id: int | None) -> None:
        """The chain id a provider answered (None: no answer, which changes nothing known)."""
        if served_chain_id is None:
            return
        if served_chain_id == self.chain_id:
            self.unverified.discard(provider_id)
            if provider_id in self.wrong_chain:
                self.wrong_chain.discard(provider_id)
                self.events.publish(
                    ev.PROVIDER_CHAIN_VERIFIED, profile=self.profile, chain=self.name, provider=provider_id
                )
            return
        self.mark_wrong_chain(provider_id, served_chain_id)

    def mark_wrong_chain(self, provider_id: str, served_chain_id: int | None) -> None:
        """Keep a provider out: it answered as a node of another chain."""
        self.unverified.discard(provider_id)
        if provider_id in self.wrong_chain:
            return
        self.wrong_chain.add(provider_id)
        self.heads.forget(provider_id)
        self.events.publish(
            ev.PROVIDER_CHAIN_MISMATCH,
            profile=self.profile,
            chain=self.name,
            provider=provider_id,
            expected=self.chain_id,
            got=served_chain_id,
        )

    def healthy_order(
        self, ranked: list[ProviderRuntime], transport: str, method: str, *, probe_first: bool = True
    ) -> list[ProviderRuntime]:
        """Lagging providers dropped for head-sensitive methods (unless that leaves none, or only providers
        whose breakers are open: then the lagging ones go first), then by breaker:
        half-open with a free probe slot first (a healed provider only closes its breaker if requests
        probe it; a failed probe costs one attempt and the request fails over), then closed, then the
        other half-open ones, then open (an open breaker refuses the attempt; it is listed so the error
        can name it, and for the last resort when every breaker is open). Long-lived subscriptions make
        poor probes, so they ask for closed breakers first (`probe_first=False`)."""
        if self.wrong_chain:
            ranked = [p for p in ranked if p.id not in self.wrong_chain]
        if self.unverified:
            verified = [p for p in ranked if p.id not in self.unverified]
            if verified:
                ranked = verified
        lagging = self.heads.lagging
        if lagging and self.policy.lag_check and method in HEAD_SENSITIVE_METHODS:
            fresh = [p for p in ranked if p.id not in lagging]
            # Unless every provider at the tip is shut (its breaker open, e.g. ejected as slow): handing it
            # all the traffic through panic routing would be worse than an answer a block behind, which
            # the answer check still judges. Then the lagging ones come first.
            if any(p.breakers[transport].state is not BreakerState.OPEN for p in fresh):
                ranked = fresh
            elif fresh:
                ranked = [p for p in ranked if p.id in lagging] + fresh
        closed: list[ProviderRuntime] = []
        others: list[ProviderRuntime] = []
        for provider in ranked:
            (closed if provider.breakers[transport].state is BreakerState.CLOSED else others).append(provider)
        slow_s = self.policy.slow_call_s
        if slow_s is not None and transport == "http":
            # Slow now (its oldest attempt in flight is past the slow-call threshold): after the others,
            # before the breaker has heard any slow answer.
            slow_now = [p for p in closed if p.in_flight.oldest_age_s() > slow_s]
            if slow_now:
                closed = [p for p in closed if p not in slow_now] + slow_now
        if not others:
            return closed
        probes = [p for p in others if probe_first and p.breakers[transport].probe_available]
        rest = [p for p in others if p not in probes]
        rest.sort(key=lambda p: p.breakers[transport].state is BreakerState.OPEN)  # half-open before open
        return probes + closed + rest

    def _breaker(self, provider_id: str, transport: str) -> CircuitBreaker:
        self.metrics.breaker(provider_id, transport, BreakerState.CLOSED.value, transition=False)

        def on_transition(before: BreakerState, after: BreakerState, reason: str) -> None:
            self.metrics.breaker(provider_id, transport, after.value)
            self.events.publish(
                ev.BREAKER,
                profile=self.profile,
                chain=self.name,
                provider=provider_id,
                transport=transport,
                **{"from": before.value, "to": after.value},
                reason=reason,
            )

        return CircuitBreaker(self.policy.breaker, on_transition=on_transition)

    def _on_lag_change(self, provider_id: str, lagging: bool, lag: int, best_head: int) -> None:
        self.metrics.lagging(provider_id, lagging)
        self.events.publish(
            ev.PROVIDER_LAG_EXCLUDED if lagging else ev.PROVIDER_LAG_INCLUDED,
            profile=self.profile,
            chain=self.name,
            provider=provider_id,
            lag=lag,
            best_head=best_head,
        )


class ProfileRuntime:
    def __init__(self, slug: str, name: str, chains: dict[str, ChainRuntime]) -> None:
        self.slug = slug
        self.name = name
        self.chains = chains
        self.chains_by_id = {c.chain_id: c for c in chains.values()}

    def find_chain(self, name_or_id: str) -> ChainRuntime | None:
        chain = self.chains.get(name_or_id)
        if chain is None and name_or_id.isdigit():
            chain = self.chains_by_id.get(int(name_or_id))
        return chain


class Registry:
    """Every profile, chain and provider of a running gateway."""

    def __init__(self, config: GatewayConfig, events: ev.EventBus, metrics: Metrics) -> None:
        self.profiles = {
            slug: ProfileRuntime(
                slug,
                profile.name,
                {
                    name: ChainRuntime(
                        slug, name, chain, ChainPolicy.resolve(profile.gateway, chain), events, metrics
                    )
                    for name, chain in profile.chains.items()
                },
            )
            for slug, profile in config.profiles.items()
        }
        self.default_profile = config.default_profile
        self.rng = random.Random()

    def chains(self) -> Iterator[ChainRuntime]:
        for profile in self.profiles.values():
            yield from profile.chains.values()

    def breakers(self) -> Iterator[tuple[ChainRuntime, ProviderRuntime, str, CircuitBreaker]]:
        for chain in self.chains():
            for provider in chain.providers:
                for transport, breaker in provider.breakers.items():
                    yield chain, provider, transport, breaker

    def breaker_snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "profile": chain.profile,
                "chain": chain.name,
                "provider": provider.id,
                "transport": transport,
                **breaker.snapshot(),
            }
            for chain, provider, transport, breaker in self.breakers()
        ]
