"""A newHeads subscription whose upstream provider is partitioned from the lab network, on real
containers: Toxiproxy keeps the gateway's connection open while nothing comes through, so only the
gateway's silence watchdog can tell within a few blocks (the WebSocket heartbeat takes 10 to 15 s). The
lab configures the gateway without `block_time_ms`: the watchdog runs on the measured block time."""

from __future__ import annotations

from typing import Any

import pytest

from lab.eventually import wait_for_value
from lab.topology import Lab, TopologySpec
from tests.integration.heads import new_heads

pytestmark = [pytest.mark.integration, pytest.mark.containers]


def test_a_subscription_leaves_a_partitioned_provider_within_three_block_times(lab_images: Any) -> None:
    spec = TopologySpec.with_providers(3)  # 1 s blocks
    with (
        Lab(spec, images=lab_images, started_by="test_subscription_partition_containers") as lab,
        lab.events() as events,
    ):
        with new_heads(lab.endpoints.gateway_ws_url) as heads:
            # Four heads: the chain advanced three blocks, so the gateway knows its block time.
            wait_for_value(lambda: len(heads), lambda n: n >= 4, timeout=20, message="four heads")
            held = events.wait_for(lambda e: e["type"] == "subscribed", timeout=10, message="subscribed")
            mark = events.mark()
            with lab.faults.apply({"type": "partition"}, held["provider"]) as fault:
                resubscribed = events.wait_for(
                    lambda e: e["type"] == "resubscribed",
                    timeout=10,
                    after=mark,
                    message="resubscribed away from the partitioned provider",
                )
                assert fault.started_at is not None
                moved_after_s = resubscribed["ts"] - fault.started_at
                last = heads[-1]["block_number"]
                wait_for_value(
                    lambda: heads[-1]["block_number"], lambda n: n >= last + 3, timeout=10, message="heads"
                )
            silent = events.matching(lambda e: e["type"] == "upstream_silent", after=mark)
            assert [e["provider"] for e in silent] == [held["provider"]], events.events[mark:]
            # 3 block times after the last head, as the gateway measured them (0.8 s has been seen)
            assert 2.0 <= silent[0]["silent_s"] < 4.5, silent
            assert (resubscribed["from"], resubscribed["reason"]) == (held["provider"], "silent")
            assert resubscribed["to"] != held["provider"]
            assert moved_after_s < 5.0, moved_after_s  # 15 s with the 35 s default, by the heartbeat
        numbers = [h["block_number"] for h in heads]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # the gap was filled
