"""Toxiproxy's toxics in wire form: validation (Toxiproxy's own limits), the REST body, parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lab.faults import TOXIC_TYPES, Toxic, parse_toxic
from lab.faults.toxics import INT64_MAX, toxic_name


def test_every_toxiproxy_toxic_type_is_known():
    assert set(TOXIC_TYPES) == {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "noop",
    }


def test_api_body_has_toxiproxys_shape_and_default_name():
    body = Toxic(type="latency", latency=200, jitter=20).to_api()
    assert body == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 200, "jitter": 20},
    }


@pytest.mark.parametrize(
    ("given", "attributes"),
    [
        ({"type": "bandwidth", "rate": 0}, {"rate": 0}),
        ({"type": "slow_close", "delay": 500}, {"delay": 500}),
        ({"type": "timeout", "timeout": 1000}, {"timeout": 1000}),
        ({"type": "reset_peer"}, {"timeout": 0}),  # left out: Toxiproxy's default 0
        (
            {"type": "slicer", "average_size": 8, "size_variation": 4, "delay": 10},
            {"average_size": 8, "size_variation": 4, "delay": 10},
        ),
        ({"type": "limit_data", "bytes": 1024}, {"bytes": 1024}),
        ({"type": "latency", "latency": 5}, {"latency": 5, "jitter": 0}),
        ({"type": "noop"}, {}),
    ],
)
def test_attributes_are_completed_as_the_server_holds_them(given, attributes):
    assert Toxic.model_validate(given).attributes == attributes


def test_name_and_stream_choose_the_server_name():
    assert Toxic(type="latency", stream="upstream").toxic_name == "latency_upstream"
    assert Toxic(type="latency", name="slow-p1").toxic_name == "slow-p1"
    assert toxic_name("a very#long/name" * 10) == ("a_very_long_name" * 10)[:64]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "latency", "latency": -1}, "greater than or equal to 0"),
        ({"type": "latency", "jitter": -5}, "greater than or equal to 0"),
        ({"type": "latency", "latency": INT64_MAX + 1}, "less than or equal to 9223372036854775807"),
        ({"type": "latency", "toxicity": 1.5}, "toxicity"),
        ({"type": "latency", "toxicity": -0.1}, "toxicity"),
        ({"type": "latency", "stream": "sideways"}, "stream"),
        ({"type": "latency", "name": "has space"}, "name"),
        ({"type": "bandwidth", "rate": -1}, "rate"),
        ({"type": "slicer", "average_size": 0, "size_variation": 1}, "smaller than average_size"),
        ({"type": "slicer", "average_size": 1, "size_variation": 1}, "smaller than average_size"),
        ({"type": "slicer", "average_size": 4, "size_variation": 4}, "panics"),
        ({"type": "slicer", "average_size": 4, "size_variation": 9}, "panics"),
        ({"type": "slicer", "average_size": 64, "size_variation": 0}, "at least 1"),  # Go: rand.Intn(0)
        ({"type": "slicer", "average_size": 64}, "at least 1"),  # no default the Go server cannot run
        ({"type": "limit_data", "bytes": -1}, "bytes"),
        ({"type": "timeout", "timeout": 10, "latency": 5}, "unknown attribute"),  # another type's
        ({"type": "noop", "attributes": {"x": 1}}, "expected: none"),
    ],
)
def test_invalid_toxics_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        Toxic.model_validate(fields)


def test_parse_accepts_flat_and_nested_attributes():
    toxic = parse_toxic({"type": "timeout", "timeout": 250, "stream": "upstream", "toxicity": 0.5})
    assert (toxic.attributes, toxic.stream, toxic.toxicity) == ({"timeout": 250}, "upstream", 0.5)
    nested = parse_toxic({"type": "latency", "name": "x", "attributes": {"latency": 100, "jitter": 1}})
    assert nested == Toxic(type="latency", name="x", latency=100, jitter=1)


def test_parse_refuses_unknown_types_listing_the_known_ones():
    with pytest.raises(ValidationError, match="unknown toxic 'cosmic_rays'; expected one of: latency"):
        parse_toxic({"type": "cosmic_rays"})


def test_toxics_are_immutable():
    toxic = Toxic(type="latency", latency=1)
    with pytest.raises(ValidationError):
        toxic.type = "bandwidth"  # type: ignore[misc]
