"""Misbehaving providers that make wrong answers possible, through the reference gateway on a real lab:
a provider turned to another chain is kept out, a provider damaging its answers is failed over from,
and no client sees either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab.faults.actions import CorruptAction, WrongChainAction
from lab.gateway import answers
from lab.topology import Lab
from lab.topology.event_stream import Event

pytestmark = [pytest.mark.integration, pytest.mark.containers]

PRIMARY = "p1"  # priority 1 in the default topology: the first choice of the priority route


def test_a_provider_turned_to_another_chain_is_kept_out_and_let_back(
    lab_isolated: Lab, wait_for_event: Callable[..., Event]
) -> None:
    with lab_isolated.faults.apply(WrongChainAction(chain_id=5, head_offset=-100), PRIMARY):
        wait_for_event(
            lambda e: e["type"] == "provider_chain_mismatch" and e["provider"] == PRIMARY, timeout=15
        )
        for _ in range(10):
            for method, params in (("eth_chainId", []), ("eth_getBlockByNumber", ["latest", True])):
                result = lab_isolated.rpc(method, params, strategy="priority", include_meta=True)
                assert result.status == 200 and "result" in result.body, result.body
                assert result.headers["X-Lasso-Provider"] != PRIMARY
                assert answers.check_answer(method, params, result.body["result"], 1) is None
        named = lab_isolated.rpc("eth_chainId", provider=PRIMARY)  # not even when named
        assert named.body["error"]["data"]["reason"] == "wrong_chain", named.body
    wait_for_event(lambda e: e["type"] == "provider_chain_verified" and e["provider"] == PRIMARY, timeout=15)
    assert lab_isolated.rpc("eth_chainId", provider=PRIMARY).body["result"] == "0x1"


def test_damaged_answers_fail_over_and_never_reach_the_client(
    lab_isolated: Lab, wait_for_event: Callable[..., Event]
) -> None:
    requests: list[tuple[str, Any]] = [
        ("eth_blockNumber", []),
        ("eth_getBlockByNumber", ["latest", False]),
        ("eth_getBalance", ["0x" + "11" * 20, "latest"]),
    ]
    with lab_isolated.faults.apply(CorruptAction(rate=1.0, damage=["malformed"]), PRIMARY):
        for _ in range(5):
            for method, params in requests:
                result = lab_isolated.rpc(method, params, strategy="priority", include_meta=True)
                assert result.status == 200 and "result" in result.body, result.body
                assert answers.check_answer(method, params, result.body["result"], 1) is None
                assert result.headers["X-Lasso-Provider"] != PRIMARY
        event = wait_for_event(
            lambda e: e["type"] == "failover" and e["from"] == PRIMARY, timeout=10, after=0
        )
        assert event["reason"] == answers.MALFORMED
