"""Head tracking (lag detection, projection by block time) and latency averages, on a simulated clock."""

from __future__ import annotations

import asyncio

import pytest

from lab.gateway.health import LATENCY_EWMA_ALPHA, HeadPoller, HeadTracker, InFlight, LatencyStats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock, block_time_s: float | None = 1.0, max_lag: int = 2) -> tuple[HeadTracker, list]:
    changes: list[tuple[str, bool, int, int]] = []
    heads = HeadTracker(
        ["a", "b", "c"],
        max_lag_blocks=max_lag,
        block_time_s=block_time_s,
        clock=clock,
        on_lag_change=lambda *change: changes.append(change),
    )
    return heads, changes


def test_a_provider_behind_by_more_than_the_limit_is_lagging_until_it_catches_up() -> None:
    clock = Clock()
    heads, changes = tracker(clock)
    heads.observe("a", 100)
    heads.observe("b", 98)
    assert heads.lagging == frozenset() and heads.lag("b") == 2  # at the limit, not beyond
    heads.observe("c", 97)
    assert heads.lagging == {"c"}
    assert changes == [("c", True, 3, 100)]
    heads.observe("c", 99)
    assert heads.lagging == frozenset()
    assert changes[-1] == ("c", False, 1, 100)
    assert heads.best_head() == 100 and heads.head("c") == 99


def test_heads_observed_at_different_instants_are_compared_at_the_same_instant() -> None:
    clock = Clock()
    heads, changes = tracker(clock, block_time_s=0.1)
    heads.observe("a", 100)
    clock.now += 0.5  # five blocks later, "b" reports the head of that moment: in step with "a"
    heads.observe("b", 105)
    assert heads.lagging == frozenset() and heads.lag("a") == 0 and heads.lag("b") == 0
    clock.now += 0.5  # "a" is polled again and has not moved: a stalled node
    heads.observe("a", 100)
    assert heads.lagging == {"a"} and heads.lag("a") == 10
    assert changes == [("a", True, 10, 105)]


def test_without_a_configured_block_time_it_is_measured_from_the_best_head() -> None:
    clock = Clock()
    heads, _ = tracker(clock, block_time_s=None)
    for number in range(10, 14):
        heads.observe("a", number)
        clock.now += 0.25
    assert heads.block_time_s == pytest.approx(0.25)
    heads.observe("b", 14)  # fresh; "a" (13, observed 0.25 s ago) is projected to 14
    assert heads.lag("a") == 0


def test_a_provider_never_observed_is_not_lagging() -> None:
    heads, _ = tracker(Clock())
    heads.observe("a", 1000)
    assert heads.lag("b") is None and "b" not in heads.lagging


def test_poller_reports_each_answer_and_skips_failures() -> None:
    observed: list[tuple[str, int]] = []

    async def fetch(provider_id: str) -> int | None:
        if provider_id == "b":
            raise ConnectionError("down")
        return None if provider_id == "c" else 42

    poller = HeadPoller(lambda answers, _ages: observed.extend(answers), ["a", "b", "c"], fetch, 1.0)
    asyncio.run(poller.poll_once())
    assert observed == [("a", 42)]


def test_a_fast_answer_is_not_stamped_with_the_arrival_of_a_slow_one() -> None:
    """One round: "a" answers at once, "slow" a second later and a block further. Stamped each with its
    own arrival, "a" is in step; stamped both at the round's end, "a" would look two blocks behind."""
    clock = Clock()
    heads, changes = tracker(clock, block_time_s=0.5, max_lag=1)
    rounds: list[tuple[list[tuple[str, int]], dict[str, float]]] = []

    async def fetch(provider_id: str) -> int | None:
        if provider_id == "a":
            return 100
        await asyncio.sleep(0.2)  # the slow provider's answer comes last
        return 101

    poller = HeadPoller(lambda answers, ages: rounds.append((answers, ages)), ["a", "b"], fetch, 1.0)
    asyncio.run(poller.poll_once())
    ((answers, ages),) = rounds
    assert answers == [("a", 100), ("b", 101)] and ages["b"] < 0.1 and ages["a"] >= 0.2
    clock.now = 10.0
    heads.observe_all([("a", 100), ("b", 102)], {"a": 1.0, "b": 0.0})  # "a" answered a second earlier
    assert heads.lag("a") == 0 and heads.lagging == frozenset() and changes == []
    heads.observe_all([("a", 100), ("b", 102)])  # both stamped now: "a" looks 2 blocks behind
    assert heads.lagging == {"a"}


def test_a_poll_round_is_judged_together_while_the_block_time_is_unknown() -> None:
    clock = Clock()
    heads, changes = tracker(clock, block_time_s=None, max_lag=1)
    heads.observe_all([("a", 100), ("b", 100)])
    clock.now += 1.0  # next round: both moved on by 2 blocks; neither is behind the other
    heads.observe_all([("a", 102), ("b", 102)])
    assert heads.lagging == frozenset() and changes == []
    heads.observe_all([("a", 104), ("b", 102)])
    assert heads.lagging == {"b"} and changes == [("b", True, 2, 104)]


def test_latency_is_an_ewma_per_method_with_a_per_transport_fallback() -> None:
    stats = LatencyStats()
    stats.record("http", "eth_call", 0.010)
    stats.record("http", "eth_call", 0.020)
    expected = 0.010 + LATENCY_EWMA_ALPHA * (0.020 - 0.010)
    assert stats.get("http", "eth_call") == pytest.approx(expected)
    assert stats.get("http", "eth_getLogs") == pytest.approx(expected)  # the transport's average
    assert stats.get("ws", "eth_call") is None


def test_in_flight_tells_the_age_of_the_oldest_attempt_still_waiting() -> None:
    clock = Clock()
    in_flight = InFlight(clock)
    assert in_flight.oldest_age_s() == 0.0 and len(in_flight) == 0
    first = in_flight.start()
    clock.now = 0.5
    second = in_flight.start()
    clock.now = 0.8
    assert in_flight.oldest_age_s() == pytest.approx(0.8) and len(in_flight) == 2
    in_flight.end(first)
    assert in_flight.oldest_age_s() == pytest.approx(0.3)
    in_flight.end(second)
    in_flight.end(second)  # ending twice is harmless
    assert in_flight.oldest_age_s() == 0.0 and len(in_flight) == 0


def test_forgetting_a_transport_drops_its_averages_only() -> None:
    stats = LatencyStats()
    stats.record("http", "eth_call", 1.5)
    stats.record("ws", "eth_call", 0.2)
    stats.forget("http")
    assert stats.get("http", "eth_call") is None and stats.get("ws", "eth_call") == 0.2
    stats.record("http", "eth_call", 0.01)
    assert stats.get("http", "eth_call") == 0.01
