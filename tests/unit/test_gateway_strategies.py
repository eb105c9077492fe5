"""Selection strategies order providers as documented (seeded randomness, so the counts are fixed)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from lab.gateway.config import Strategy
from lab.gateway.health import LatencyStats
from lab.gateway.strategies import rank


@dataclass
class Provider:
    id: str
    priority: int = 100
    weight: float = 1.0
    latency: LatencyStats = field(default_factory=LatencyStats)

    def measured(self, seconds: float, method: str = "eth_call") -> Provider:
        self.latency.record("http", method, seconds)
        return self


def first_choices(strategy: Strategy, providers: list[Provider], draws: int = 4000) -> Counter[str]:
    rng = random.Random(7)
    return Counter(rank(strategy, providers, "eth_call", "http", rng)[0].id for _ in range(draws))


def test_priority_orders_by_priority_then_configuration_order() -> None:
    providers = [Provider("a", 2), Provider("b", 1), Provider("c", 2), Provider("d", 0)]
    ordered = rank(Strategy.PRIORITY, providers, "eth_call", "http", random.Random(1))
    assert [p.id for p in ordered] == ["d", "b", "a", "c"]


def test_fastest_tries_unmeasured_first_then_by_latency_of_the_method() -> None:
    slow = Provider("slow").measured(0.050)
    fast = Provider("fast").measured(0.005)
    # Fast at another method, slow at this one: this method's latency decides.
    mixed = Provider("mixed").measured(0.001, method="eth_getLogs").measured(0.100)
    # Never served this method: its all-method average ranks it.
    logs_only = Provider("logs_only").measured(0.020, method="eth_getLogs")
    new = Provider("new")
    ordered = rank(
        Strategy.FASTEST, [slow, fast, mixed, logs_only, new], "eth_call", "http", random.Random(1)
    )
    assert [p.id for p in ordered] == ["new", "fast", "logs_only", "slow", "mixed"]


def test_load_balanced_spreads_by_weight() -> None:
    counts = first_choices(Strategy.LOAD_BALANCED, [Provider("a", weight=1), Provider("b", weight=3)])
    assert counts["b"] / counts["a"] == pytest.approx(3, rel=0.15)


def test_load_balanced_with_equal_weights_is_even_and_a_permutation() -> None:
    providers = [Provider("a"), Provider("b"), Provider("c")]
    counts = first_choices(Strategy.LOAD_BALANCED, providers, draws=3000)
    assert all(900 < counts[p] < 1100 for p in "abc")
    ordered = rank(Strategy.LOAD_BALANCED, providers, "eth_call", "http", random.Random(3))
    assert sorted(p.id for p in ordered) == ["a", "b", "c"]


def test_latency_weighted_favours_faster_providers_without_starving_slower_ones() -> None:
    providers = [Provider("fast").measured(0.010), Provider("slow").measured(0.040)]
    counts = first_choices(Strategy.LATENCY_WEIGHTED, providers)
    assert counts["fast"] / counts["slow"] == pytest.approx(4, rel=0.2)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_returns_each_provider_once(strategy: Strategy) -> None:
    providers = [Provider(str(i), priority=i % 3).measured(0.001 * (i + 1)) for i in range(6)]
    ordered = rank(strategy, providers, "eth_call", "http", random.Random(5))
    assert sorted(p.id for p in ordered) == sorted(p.id for p in providers)
