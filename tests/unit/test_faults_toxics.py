"""The typed toxic models: validation, Toxiproxy's wire form, parsing from mappings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lab.faults import (
    TOXIC_TYPES,
    Bandwidth,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    parse_toxic,
)


def test_every_toxiproxy_toxic_type_has_a_model():
    assert set(TOXIC_TYPES) == {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
    }


def test_api_body_has_toxiproxys_shape_and_default_name():
    body = Latency(latency=200, jitter=20).to_api()
    assert body == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 200, "jitter": 20},
    }


@pytest.mark.parametrize(
    ("toxic", "attributes"),
    [
        (Bandwidth(rate=0), {"rate": 0}),
        (SlowClose(delay=500), {"delay": 500}),
        (Timeout(timeout=1000), {"timeout": 1000}),
        (ResetPeer(timeout=5), {"timeout": 5}),
        (
            Slicer(average_size=8, size_variation=4, delay=10),
            {"average_size": 8, "size_variation": 4, "delay": 10},
        ),
        (LimitData(bytes=1024), {"bytes": 1024}),
    ],
)
def test_attributes_are_the_type_specific_fields(toxic, attributes):
    assert toxic.attributes() == attributes


def test_name_and_stream_choose_the_server_name():
    assert Latency(stream="upstream").toxic_name == "latency_upstream"
    assert Latency(name="slow-p1").toxic_name == "slow-p1"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Latency(latency=-1),
        lambda: Latency(jitter=-5),
        lambda: Latency(toxicity=1.5),
        lambda: Latency(toxicity=-0.1),
        lambda: Latency(stream="sideways"),
        lambda: Latency(name="has space"),
        lambda: Bandwidth(rate=-1),
        lambda: Slicer(average_size=0, size_variation=1),
        lambda: Slicer(average_size=1, size_variation=1),
        lambda: Slicer(average_size=4, size_variation=4),
        lambda: Slicer(average_size=4, size_variation=9),
        lambda: Slicer(average_size=64, size_variation=0),  # Go: rand.Intn(0) panics
        lambda: Slicer(average_size=64),  # no silent default that the Go server cannot run
        lambda: LimitData(bytes=-1),
        lambda: Timeout(timeout=10, latency=5),  # an attribute of another type
    ],
)
def test_invalid_toxics_are_refused(make):
    with pytest.raises(ValidationError):
        make()


def test_parse_picks_the_model_by_type():
    toxic = parse_toxic({"type": "timeout", "timeout": 250, "stream": "upstream", "toxicity": 0.5})
    assert isinstance(toxic, Timeout)
    assert (toxic.timeout, toxic.stream, toxic.toxicity) == (250, "upstream", 0.5)


def test_parse_accepts_toxiproxys_nested_attributes():
    toxic = parse_toxic({"type": "latency", "name": "x", "attributes": {"latency": 100, "jitter": 1}})
    assert toxic == Latency(name="x", latency=100, jitter=1)


def test_parse_refuses_unknown_types():
    with pytest.raises(ValidationError, match="latency"):  # the message lists the known tags
        parse_toxic({"type": "cosmic_rays"})


def test_toxics_are_immutable():
    toxic = Latency(latency=1)
    with pytest.raises(ValidationError):
        toxic.latency = 2  # type: ignore[misc]
