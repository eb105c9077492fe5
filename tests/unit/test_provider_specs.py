"""Behaviour specs: validation errors name the field by its path in the input; dumps round-trip."""

from __future__ import annotations

from typing import Any

import pytest

from lab.provider.specs import BEHAVIOR_TYPES, BehaviorError, dump_behavior, parse_behavior

# One valid example per type: the README's catalogue uses the same shapes.
EXAMPLES: list[Any] = [
    {"type": "healthy"},
    {"type": "latency", "ms": 50, "jitter_ms": 10},
    {"type": "always_fail", "http_status": 503, "code": -32000, "message": "node is down"},
    {"type": "error_code", "http_status": 502, "code": None},
    {"type": "always_timeout", "max_hold_s": 30},
    {"type": "drop_connection", "transports": ["ws"]},
    {"type": "degraded_performance", "base_latency_ms": 100, "growth_ms_per_s": 20, "max_latency_ms": 2000},
    {"type": "intermittent_failures", "success_rate": 0.8, "failure": "always_timeout"},
    {"type": "rate_limited", "limit": 10, "window_s": 1},
    {"type": "node_out_of_sync", "lag": 5, "recovery_after_s": 30},
    {
        "type": "schedule",
        "repeat": True,
        "phases": [{"duration_s": 5, "behavior": "healthy"}, {"duration_s": 2, "behavior": "always_fail"}],
    },
    {"type": "cascading_failure", "healthy_s": 5, "degraded_s": 5, "failed_s": 5},
    {"type": "method_specific", "methods": {"eth_getLogs": "always_fail"}, "default": "healthy"},
    {
        "type": "param_sensitive",
        "rules": [{"block_range_over": 1000}, {"method": "eth_call", "block_older_than": 128}],
    },
    {
        "type": "all_of",
        "behaviors": [{"type": "latency", "ms": 20}, {"type": "intermittent_failures", "success_rate": 0.9}],
    },
    {"type": "wrong_chain", "chain_id": 5, "head_offset": 1000},
    {"type": "corrupt", "rate": 0.2, "damage": ["malformed", "missing"], "methods": ["eth_getLogs"]},
]


def test_every_type_has_an_example() -> None:
    assert sorted({example["type"] for example in EXAMPLES}) == sorted(BEHAVIOR_TYPES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e["type"])
def test_examples_validate_and_round_trip(example: dict[str, Any]) -> None:
    spec = parse_behavior(example)
    dumped = dump_behavior(spec)
    assert dumped["type"] == example["type"]
    assert parse_behavior(dumped) == spec


def test_a_bare_type_name_means_its_defaults_anywhere() -> None:
    assert dump_behavior(parse_behavior("always_fail")) == dump_behavior(
        parse_behavior({"type": "always_fail"})
    )
    nested = parse_behavior(
        {"type": "intermittent_failures", "success_rate": 0.5, "failure": "always_timeout"}
    )
    assert dump_behavior(nested)["failure"]["type"] == "always_timeout"


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ({"type": "intermittent_failures", "success_rate": 1.5}, "success_rate", "less than or equal to 1"),
        ({"type": "rate_limited"}, "limit", "Field required"),
        ({"type": "latency", "msec": 5}, "msec", "Extra inputs"),
        ({"type": "nope"}, "type", "does not match any of the expected tags"),
        ({}, "type", "discriminator"),
        ("always_fial", "type", "does not match"),
        (
            {
                "type": "schedule",
                "phases": [
                    {"duration_s": 1, "behavior": "healthy"},
                    {"duration_s": 0, "behavior": "healthy"},
                ],
            },
            "phases[1].duration_s",
            "greater than 0",
        ),
        (
            {"type": "method_specific", "methods": {"eth_call": {"type": "latency", "ms": -1}}},
            "methods.eth_call.ms",
            "greater than or equal to 0",
        ),
        (
            {"type": "all_of", "behaviors": ["healthy", {"type": "node_out_of_sync", "lag": 0}]},
            "behaviors[1].lag",
            "greater than 0",
        ),
        (
            {"type": "intermittent_failures", "success_rate": 0.5, "failure": {"type": "x"}},
            "failure.type",
            "tag",
        ),
        ({"type": "param_sensitive", "rules": [{"method": "eth_call"}]}, "rules[0]", "at least one of"),
        ({"type": "error_code", "code": None}, "(behavior)", "non-200"),
        ({"type": "always_fail", "http_status": 700}, "http_status", "less than or equal to 599"),
        (42, "(behavior)", "valid dictionary"),
    ],
)
def test_validation_errors_name_the_field(value: Any, field: str, fragment: str) -> None:
    with pytest.raises(BehaviorError) as caught:
        parse_behavior(value)
    problems = caught.value.problems
    assert any(p["field"] == field and fragment in p["message"] for p in problems), problems
    assert field in str(caught.value)
