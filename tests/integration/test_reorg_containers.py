"""A reorg on real containers, seen through the reference gateway over HTTP and WebSocket: readers get
the new branch (the checker names it), subscribers the new branch's heads from the fork block, which
the subscription analysis counts as a reorg, not a duplicate or a head going backwards."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

from lab.analysis.subscriptions import analyse_subscriptions
from lab.checker import AnswerInspector
from lab.eventually import wait_for_value
from lab.topology import Lab, TopologySpec
from tests.integration.heads import new_heads

pytestmark = [pytest.mark.integration, pytest.mark.containers]


def test_a_reorg_is_seen_over_http_and_by_new_heads_subscribers(lab_images: Any) -> None:
    spec = TopologySpec.with_providers(2)
    with Lab(spec, images=lab_images, started_by="test_reorg_containers") as lab:
        with new_heads(lab.endpoints.gateway_ws_url) as heads:
            wait_for_value(lambda: len(heads), lambda n: n >= 3, timeout=20, message="three heads")
            faults = [lab.faults.apply({"type": "reorg", "depth": 2}, p.id) for p in spec.providers]
            forks = {f.params["fork_block"] for f in faults}
            assert len(forks) == 1, forks  # every provider forks at the same block
            fork = forks.pop()
            replaced = {h["block_number"]: h["block_hash"] for h in heads if h["block_number"] >= fork}

            inspector = AnswerInspector(spec.chain_id, spec.genesis_time, 1.0)
            for params in ([hex(fork), False], ["latest", True]):
                sent = time.time()
                answer = lab.rpc("eth_getBlockByNumber", params)
                row = inspector.inspect("eth_getBlockByNumber", params, answer.body["result"], sent)
                assert row["answer_branch"] == fork and row["check"] in ("ok", "stale"), row

            def new_branch() -> list[dict[str, Any]]:
                return [
                    h
                    for h in heads
                    if h["block_number"] in replaced and h["block_hash"] != replaced[h["block_number"]]
                ]

            wait_for_value(
                new_branch, lambda rows: len(rows) == len(replaced), timeout=20, message="new branch"
            )
            wait_for_value(lambda: heads[-1]["block_number"], lambda n: n > max(replaced), timeout=20)
        frame = pd.DataFrame(heads)
        frame["t"] = frame["ts"] - frame["ts"].iloc[0]
        summary = analyse_subscriptions(frame, float(frame["ts"].iloc[0]), float(frame["t"].iloc[-1]))
        assert summary["reorgs"] == len(replaced) and summary["regressions"] == 0
        assert summary["duplicates"] == 0 and summary["max_gap"] == 0
