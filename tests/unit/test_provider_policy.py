"""Behaviour policies, driven with explicit elapsed times: every behaviour's decision, seeded and
composed."""

from __future__ import annotations

from typing import Any

import pytest

from lab.jsonrpc import LIMIT_EXCEEDED, SERVER_ERROR
from lab.provider.chain import Chain
from lab.provider.methods import NodeConfig, View
from lab.provider.policy import HEALTHY, SERVE, Action, Call, Outcome, Policy, compile_policy
from lab.provider.specs import parse_behavior

VIEW = View(Chain(1, 1_700_000_000, 1.0), NodeConfig("p1"), head=5000)


def policy(spec: Any, seed: int = 0) -> Policy:
    return compile_policy(parse_behavior(spec), seed)


def decide(
    p: Policy, elapsed: float = 0.0, method: str = "eth_blockNumber", params: Any = None, **kw: Any
) -> Outcome:
    return p.decide(Call(method, params, elapsed, VIEW, **kw))


def test_healthy_serves_at_once() -> None:
    assert policy("healthy") is HEALTHY
    assert decide(HEALTHY) is SERVE


def test_latency_is_fixed_plus_seeded_jitter() -> None:
    assert decide(policy({"type": "latency", "ms": 40})).delay_s == pytest.approx(0.04)
    jittery = [
        decide(policy({"type": "latency", "ms": 40, "jitter_ms": 10}, seed=7)).delay_s for _ in range(3)
    ]
    again = [decide(policy({"type": "latency", "ms": 40, "jitter_ms": 10}, seed=7)).delay_s for _ in range(3)]
    assert jittery == again
    p = policy({"type": "latency", "ms": 40, "jitter_ms": 10}, seed=7)
    delays = [decide(p).delay_s for _ in range(500)]
    assert all(0.03 <= d <= 0.05 for d in delays) and len(set(delays)) > 100


def test_always_fail_defaults_to_http_500_and_internal_error() -> None:
    outcome = decide(policy("always_fail"))
    assert outcome.action is Action.FAIL and outcome.http_status == 500
    assert outcome.error == {"code": -32603, "message": "Internal error"}
    custom = decide(
        policy({"type": "always_fail", "http_status": 200, "code": -32000, "message": "x", "data": [1]})
    )
    assert (custom.http_status, custom.error) == (200, {"code": -32000, "message": "x", "data": [1]})


def test_error_code_without_a_code_is_a_plain_http_error() -> None:
    outcome = decide(policy({"type": "error_code", "http_status": 502, "code": None}))
    assert outcome.plain_http and outcome.http_status == 502 and outcome.error["code"] == -32603


def test_always_timeout_holds_for_the_bound() -> None:
    outcome = decide(policy({"type": "always_timeout", "max_hold_s": 12}))
    assert (outcome.action, outcome.hold_s, outcome.http_status) == (Action.HANG, 12, 504)


def test_drop_connection_only_on_its_transports() -> None:
    p = policy({"type": "drop_connection", "transports": ["ws"]})
    assert decide(p, transport="ws").action is Action.DROP
    assert decide(p, transport="http") is SERVE


def test_degraded_performance_grows_from_when_it_was_set_up_to_the_cap() -> None:
    p = policy(
        {"type": "degraded_performance", "base_latency_ms": 100, "growth_ms_per_s": 50, "max_latency_ms": 400}
    )
    assert [decide(p, elapsed=t).delay_s for t in (0, 2, 6, 100)] == pytest.approx([0.1, 0.2, 0.4, 0.4])


def test_intermittent_failures_follow_the_success_rate_reproducibly() -> None:
    spec = {"type": "intermittent_failures", "success_rate": 0.7}
    runs = []
    for _ in range(2):
        p = policy(spec, seed=42)
        runs.append([decide(p).action for _ in range(2000)])
    assert runs[0] == runs[1]
    served = runs[0].count(Action.SERVE) / 2000
    assert 0.65 < served < 0.75
    assert set(runs[0]) == {Action.SERVE, Action.FAIL}
    other_seed = policy(spec, seed=43)
    assert [decide(other_seed).action for _ in range(2000)] != runs[0]


def test_intermittent_failure_can_be_any_behaviour() -> None:
    p = policy({"type": "intermittent_failures", "success_rate": 0.0, "failure": "always_timeout"})
    assert decide(p).action is Action.HANG


def test_rate_limited_counts_per_window_and_says_when_to_retry() -> None:
    p = policy({"type": "rate_limited", "limit": 3, "window_s": 2.0})
    assert [decide(p, elapsed=0.5).action for _ in range(3)] == [Action.SERVE] * 3
    limited = decide(p, elapsed=0.5)
    assert (limited.action, limited.http_status, limited.label) == (Action.FAIL, 429, "rate_limited")
    assert limited.error["code"] == LIMIT_EXCEEDED
    assert limited.retry_after_s == pytest.approx(1.5)
    assert decide(p, elapsed=2.1) is SERVE  # a new window
    fixed = policy({"type": "rate_limited", "limit": 0, "retry_after_s": 30})
    assert decide(fixed).retry_after_s == 30


def test_probes_consume_no_budget_and_no_randomness() -> None:
    p = policy({"type": "rate_limited", "limit": 1})
    for _ in range(5):
        assert decide(p, probe=True) is SERVE
    assert decide(p) is SERVE and decide(p).action is Action.FAIL
    a, b = (policy({"type": "intermittent_failures", "success_rate": 0.5}, seed=1) for _ in range(2))
    for _ in range(10):
        decide(a, probe=True)
    assert [decide(a).action for _ in range(50)] == [decide(b).action for _ in range(50)]


def test_node_out_of_sync_lags_until_recovery() -> None:
    p = policy({"type": "node_out_of_sync", "lag": 7, "recovery_after_s": 30})
    assert decide(p, elapsed=0).lag == 7 and decide(p, elapsed=29.9).lag == 7
    assert decide(p, elapsed=30) is SERVE
    assert decide(policy({"type": "node_out_of_sync", "lag": 3}), elapsed=1e6).lag == 3


def test_cascading_failure_walks_its_phases() -> None:
    p = policy({"type": "cascading_failure", "healthy_s": 10, "degraded_s": 5, "failed_s": 5})
    assert decide(p, elapsed=9.99) is SERVE
    assert decide(p, elapsed=10).delay_s == pytest.approx(1.0)  # the default degraded phase
    assert decide(p, elapsed=15).action is Action.FAIL
    assert decide(p, elapsed=20) is SERVE  # recovered for good
    assert decide(p, elapsed=10_000) is SERVE


def test_schedule_phases_have_their_own_clock_and_can_repeat() -> None:
    p = policy(
        {
            "type": "schedule",
            "repeat": True,
            "phases": [
                {
                    "duration_s": 2,
                    "behavior": {
                        "type": "degraded_performance",
                        "base_latency_ms": 0,
                        "growth_ms_per_s": 1000,
                    },
                },
                {"duration_s": 1, "behavior": "always_fail"},
            ],
        }
    )
    assert decide(p, elapsed=1.5).delay_s == pytest.approx(1.5)
    assert decide(p, elapsed=2.5).action is Action.FAIL
    assert decide(p, elapsed=3.5).delay_s == pytest.approx(0.5)  # second cycle, phase clock restarted
    once = policy(
        {
            "type": "schedule",
            "phases": [{"duration_s": 1, "behavior": "always_fail"}],
            "then": {"type": "node_out_of_sync", "lag": 2},
        }
    )
    assert decide(once, elapsed=0.5).action is Action.FAIL and decide(once, elapsed=5).lag == 2


def test_method_specific_picks_per_method_and_governs_pushes() -> None:
    p = policy(
        {
            "type": "method_specific",
            "methods": {"eth_getLogs": "always_fail", "eth_subscription": "always_timeout"},
        }
    )
    assert decide(p, method="eth_getLogs").action is Action.FAIL
    assert decide(p, method="eth_blockNumber") is SERVE
    assert decide(p, method="eth_subscription", probe=True).action is Action.HANG


def test_param_sensitive_rules() -> None:
    p = policy(
        {
            "type": "param_sensitive",
            "rules": [
                {"block_range_over": 100},
                {"block_older_than": 128},
                {
                    "method": "eth_call",
                    "params_prefix": [{"to": "0x" + "11" * 20}],
                    "then": {"type": "latency", "ms": 5},
                },
            ],
        }
    )
    wide = decide(p, method="eth_getLogs", params=[{"fromBlock": hex(4000), "toBlock": "latest"}])
    assert (
        wide.action is Action.FAIL
        and wide.error["code"] == LIMIT_EXCEEDED
        and wide.error["data"] == {"limit": 100}
    )
    assert decide(p, method="eth_getLogs", params=[{"fromBlock": hex(4950)}]) is SERVE
    old = decide(p, method="eth_getBalance", params=["0x" + "22" * 20, hex(10)])
    assert old.error["code"] == SERVER_ERROR and "missing trie node" in old.error["message"]
    assert decide(p, method="eth_getBalance", params=["0x" + "22" * 20, "latest"]) is SERVE
    assert decide(p, method="eth_call", params=[{"to": "0x" + "11" * 20}, "latest"]).delay_s == pytest.approx(
        0.005
    )
    assert decide(p, method="eth_call", params=[{"to": "0x" + "33" * 20}, "latest"]) is SERVE
    assert decide(p, method="eth_getLogs", params=["garbage"]) is SERVE  # the method itself answers -32602


def test_all_of_adds_delays_keeps_the_largest_lag_and_stops_at_the_first_failure() -> None:
    p = policy(
        {
            "type": "all_of",
            "behaviors": [
                {"type": "latency", "ms": 10},
                {"type": "node_out_of_sync", "lag": 4},
                {"type": "latency", "ms": 5},
                {"type": "rate_limited", "limit": 1},
            ],
        }
    )
    first = decide(p)
    assert (first.action, first.lag) == (Action.SERVE, 4) and first.delay_s == pytest.approx(0.015)
    second = decide(p)
    assert (
        second.action is Action.FAIL and second.http_status == 429 and second.delay_s == pytest.approx(0.015)
    )


def test_child_seeds_derive_from_the_parent_unless_given() -> None:
    def actions(spec: Any, seed: int) -> list[Action]:
        p = policy(spec, seed)
        return [decide(p).action for _ in range(200)]

    flaky = {"type": "intermittent_failures", "success_rate": 0.5}
    nested = {"type": "all_of", "behaviors": [flaky, flaky]}
    assert actions(nested, 1) == actions(nested, 1)
    assert actions(nested, 1) != actions(nested, 2)
    pinned = {"type": "all_of", "behaviors": [{**flaky, "seed": 9}]}
    assert actions(pinned, 1) == actions(pinned, 2) == actions({**flaky, "seed": 9}, 5)
