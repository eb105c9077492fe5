"""Selection strategies: each orders a chain's providers for one request; the router then tries them in
that order (after dropping unhealthy and lagging ones).

- priority: by configured `priority` (lower first), configuration order on ties.
- fastest: by measured latency of this method on this transport (the provider's all-method average if
  the method was never measured); never-measured providers first, so every provider gets measured.
- load-balanced: weighted random order by configured `weight` (Lasso's default strategy).
- latency-weighted: weighted random order, weight = configured weight / measured latency, so faster
  providers get more traffic without taking all of it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

from lab.gateway.config import Strategy
from lab.gateway.health import LatencyStats

_MIN_LATENCY_S = 0.0005  # a floor, so one very fast sample does not take all latency-weighted traffic


class Ranked(Protocol):
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> float: ...
    @property
    def latency(self) -> LatencyStats: ...


P = TypeVar("P", bound=Ranked)


def rank(
    strategy: Strategy, providers: Sequence[P], method: str, transport: str, rng: random.Random
) -> list[P]:
    """The providers in the order the strategy would try them."""
    if len(providers) <= 1:
        return list(providers)
    if strategy is Strategy.LOAD_BALANCED:
        return _weighted_shuffle(providers, [p.weight for p in providers], rng)
    if strategy is Strategy.PRIORITY:
        return sorted(providers, key=lambda p: p.priority)
    latencies = [p.latency.get(transport, method) for p in providers]
    if strategy is Strategy.FASTEST:
        order = sorted(range(len(providers)), key=lambda i: latencies[i] or 0.0)
        return [providers[i] for i in order]
    if strategy is Strategy.LATENCY_WEIGHTED:
        known = [lat for lat in latencies if lat is not None]
        typical = sum(known) / len(known) if known else 1.0
        weights = [
            p.weight / max(lat if lat is not None else typical, _MIN_LATENCY_S)
            for p, lat in zip(providers, latencies, strict=True)
        ]
        return _weighted_shuffle(providers, weights, rng)
    raise ValueError(f"unknown strategy {strategy!r}")


def _weighted_shuffle(items: Sequence[P], weights: Sequence[float], rng: random.Random) -> list[P]:
    """A random order where each item comes first with probability proportional to its weight
    (Efraimidis–Spirakis: sort by u ** (1 / w), u uniform in (0, 1))."""
    if all(w == weights[0] for w in weights):
        return rng.sample(items, len(items))
    keys = [rng.random() ** (1.0 / w) for w in weights]
    order = sorted(range(len(items)), key=keys.__getitem__, reverse=True)
    return [items[i] for i in order]
