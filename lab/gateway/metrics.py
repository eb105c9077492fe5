"""Prometheus metrics of one gateway (its own registry, so several gateways can live in one process).

`ChainMetrics` is what the request path uses: one chain's metrics with their labelled children cached,
since looking up a child by its labels costs more than the observation itself.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_METHOD_LABELS = 200  # clients choose method names; past this many, the rest count as "other"

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

M = TypeVar("M", bound=MetricWrapperBase)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # process_resident_memory_bytes, process_open_fds, ...: the soak checks' raw data (Linux /proc;
        # absent elsewhere, which the analysis reports as not measurable)
        ProcessCollector(registry=r)
        self.requests = Counter(
            "gateway_requests",
            "JSON-RPC requests answered, by outcome (success, caller_error, error)",
            ["profile", "chain", "transport", "method", "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from receiving a JSON-RPC request to having its answer, all attempts included",
            ["profile", "chain", "transport"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "gateway_upstream_attempts",
            "Upstream attempts by provider and verdict (ok, caller_error, timeout, rate_limited, ...)",
            ["profile", "chain", "provider", "transport", "verdict"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Latency of answered upstream attempts",
            ["profile", "chain", "provider", "transport"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.failovers = Counter(
            "gateway_failovers",
            "Attempts moved to another provider",
            ["profile", "chain", "reason"],
            registry=r,
        )
        self.panic_attempts = Counter(
            "gateway_panic_attempts",
            "Last-resort attempts past an open breaker, made when every breaker refused",
            ["profile", "chain", "provider"],
            registry=r,
        )
        self.slow_calls = Counter(
            "gateway_slow_calls",
            "HTTP attempts answered after more than slow_call_s (counted against the provider's breaker)",
            ["profile", "chain", "provider"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["profile", "chain", "provider", "transport"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "gateway_breaker_transitions",
            "Circuit breaker transitions by target state",
            ["profile", "chain", "provider", "transport", "to"],
            registry=r,
        )
        self.provider_head = Gauge(
            "gateway_provider_head",
            "Last head block reported by a provider",
            ["profile", "chain", "provider"],
            registry=r,
        )
        self.provider_lagging = Gauge(
            "gateway_provider_lagging",
            "1 while a provider is excluded for lag",
            ["profile", "chain", "provider"],
            registry=r,
        )
        self.ws_clients = Gauge("gateway_ws_clients", "Open client WebSocket connections", registry=r)
        self.subscriptions = Gauge(
            "gateway_subscriptions", "Client subscriptions", ["profile", "chain", "kind"], registry=r
        )
        self.resubscriptions = Counter(
            "gateway_resubscriptions",
            "Upstream subscriptions moved",
            ["profile", "chain", "kind", "reason"],
            registry=r,
        )
        self.gap_filled_blocks = Counter(
            "gateway_gap_filled_blocks",
            "Blocks filled over HTTP after a resubscribe",
            ["profile", "chain", "kind"],
            registry=r,
        )
        self._methods: set[str] = set()

    def method_label(self, method: str) -> str:
        if method in self._methods:
            return method
        if len(self._methods) < _MAX_METHOD_LABELS:
            self._methods.add(method)
            return method
        return "other"

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Children(Generic[M]):
    """The children of one metric under fixed leading label values, cached by the remaining ones."""

    __slots__ = ("_cache", "_metric", "_prefix")

    def __init__(self, metric: M, *prefix: str) -> None:
        self._metric = metric
        self._prefix = prefix
        self._cache: dict[tuple[str, ...], M] = {}

    def get(self, *labels: str) -> M:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*self._prefix, *labels)
        return child


class ChainMetrics:
    """The metrics of one chain of one profile."""

    def __init__(self, metrics: Metrics, profile: str, chain: str) -> None:
        self.gateway = metrics
        labels = (profile, chain)
        self._requests = _Children(metrics.requests, *labels)
        self._request_duration = _Children(metrics.request_duration, *labels)
        self._attempts = _Children(metrics.attempts, *labels)
        self._upstream_latency = _Children(metrics.upstream_latency, *labels)
        self._failovers = _Children(metrics.failovers, *labels)
        self._panic_attempts = _Children(metrics.panic_attempts, *labels)
        self._slow_calls = _Children(metrics.slow_calls, *labels)
        self._breaker_state = _Children(metrics.breaker_state, *labels)
        self._breaker_transitions = _Children(metrics.breaker_transitions, *labels)
        self._provider_head = _Children(metrics.provider_head, *labels)
        self._provider_lagging = _Children(metrics.provider_lagging, *labels)
        self._subscriptions = _Children(metrics.subscriptions, *labels)
        self._resubscriptions = _Children(metrics.resubscriptions, *labels)
        self._gap_filled = _Children(metrics.gap_filled_blocks, *labels)

    def request(self, transport: str, method: str, outcome: str, seconds: float) -> None:
        self._requests.get(transport, self.gateway.method_label(method), outcome).inc()
        self._request_duration.get(transport).observe(seconds)

    def attempt(self, provider: str, transport: str, verdict: str, answered_in_s: float | None) -> None:
        self._attempts.get(provider, transport, verdict).inc()
        if answered_in_s is not None:
            self._upstream_latency.get(provider, transport).observe(answered_in_s)

    def failover(self, reason: str) -> None:
        self._failovers.get(reason).inc()

    def panic(self, provider: str) -> None:
        self._panic_attempts.get(provider).inc()

    def slow_call(self, provider: str) -> None:
        self._slow_calls.get(provider).inc()

    def breaker(self, provider: str, transport: str, state: str, transition: bool = True) -> None:
        self._breaker_state.get(provider, transport).set(BREAKER_STATE_VALUES[state])
        if transition:
            self._breaker_transitions.get(provider, transport, state).inc()

    def head(self, provider: str, number: int) -> None:
        self._provider_head.get(provider).set(number)

    def lagging(self, provider: str, lagging: bool) -> None:
        self._provider_lagging.get(provider).set(1 if lagging else 0)

    def subscriptions(self, kind: str, change: int) -> None:
        self._subscriptions.get(kind).inc(change)

    def resubscribed(self, kind: str, reason: str) -> None:
        self._resubscriptions.get(kind, reason).inc()

    def gap_filled(self, kind: str, blocks: int) -> None:
        self._gap_filled.get(kind).inc(blocks)
