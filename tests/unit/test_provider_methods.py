"""The Ethereum methods: answers, param validation (-32602) and the eth_getLogs limits."""

from __future__ import annotations

from typing import Any

import pytest

from lab.jsonrpc import EXECUTION_REVERTED, INVALID_PARAMS, LIMIT_EXCEEDED, SERVER_ERROR, JsonRpcError
from lab.provider.chain import CONTRACT_ADDRESSES, TRANSFER_TOPIC, Chain
from lab.provider.methods import (
    METHODS,
    REVERT_SELECTOR,
    NodeConfig,
    View,
    requested_block,
    requested_log_span,
)

HEAD = 1000
ADDRESS = "0x" + "ab" * 20


def view(head: int = HEAD, lag: int = 0, **node: Any) -> View:
    return View(Chain(1, 1_700_000_000, 1.0), NodeConfig("p1", **node), head, lag)


def call(method: str, params: Any = None, v: View | None = None) -> Any:
    return METHODS[method](params, v or view())


def error_of(method: str, params: Any, v: View | None = None) -> JsonRpcError:
    with pytest.raises(JsonRpcError) as caught:
        call(method, params, v)
    return caught.value


def test_identity_methods() -> None:
    assert call("eth_chainId", []) == "0x1"
    assert call("net_version") == "1"
    assert call("web3_clientVersion", []).endswith("/p1")
    assert call("eth_syncing", []) is False


def test_block_number_and_tags_follow_the_served_head() -> None:
    assert call("eth_blockNumber", []) == hex(HEAD)
    lagging = view(lag=10)
    assert call("eth_blockNumber", [], lagging) == hex(HEAD - 10)
    for tag, expected in [
        ("latest", 990),
        ("pending", 990),
        ("safe", 958),
        ("finalized", 926),
        ("earliest", 0),
    ]:
        assert call("eth_getBlockByNumber", [tag, False], lagging)["number"] == hex(expected)
    assert call("eth_getBlockByNumber", [hex(995), False], lagging) is None  # not seen yet
    assert call("eth_syncing", [], lagging) == {
        "startingBlock": hex(990),
        "currentBlock": hex(990),
        "highestBlock": hex(HEAD),
    }


def test_blocks_by_number_and_hash_agree_and_full_flag_expands_transactions() -> None:
    by_number = call("eth_getBlockByNumber", [hex(500), True])
    by_hash = call("eth_getBlockByHash", [by_number["hash"], True])
    assert by_number == by_hash
    short = call("eth_getBlockByHash", [by_number["hash"]])
    assert short["transactions"] == [tx["hash"] for tx in by_number["transactions"]]
    assert call("eth_getBlockByHash", [view().chain.block_hash(HEAD + 1), False]) is None
    assert call("eth_getBlockByHash", ["0x" + "00" * 32, False]) is None


def test_transactions_and_receipts_by_hash() -> None:
    chain = view().chain
    number = next(n for n in range(1, 100) if chain.tx_count(n))
    tx = call("eth_getBlockByNumber", [hex(number), True])["transactions"][0]
    assert call("eth_getTransactionByHash", [tx["hash"]]) == tx
    receipt = call("eth_getTransactionReceipt", [tx["hash"]])
    assert receipt["status"] == "0x1" and receipt["blockHash"] == tx["blockHash"]
    future = next(n for n in range(HEAD + 1, HEAD + 100) if chain.tx_count(n))
    assert call("eth_getTransactionByHash", [chain.tx_hash(future, 0)]) is None


def test_state_methods_are_deterministic_and_reject_unknown_blocks() -> None:
    assert call("eth_getBalance", [ADDRESS, "latest"]) == call(
        "eth_getBalance", [ADDRESS.upper().replace("0X", "0x")]
    )
    assert call("eth_getTransactionCount", [ADDRESS, hex(5)]).startswith("0x")
    assert call("eth_getCode", [ADDRESS, "latest"]) == "0x"
    assert call("eth_getCode", [CONTRACT_ADDRESSES[0], "latest"]).startswith("0x6080")
    missing = error_of("eth_getBalance", [ADDRESS, hex(HEAD + 1)])
    assert (missing.code, missing.message) == (SERVER_ERROR, "header not found")
    by_hash = call("eth_getBalance", [ADDRESS, {"blockHash": view().chain.block_hash(10)}])
    assert by_hash == call("eth_getBalance", [ADDRESS, "latest"])


def test_call_estimate_and_fees() -> None:
    tx = {"to": CONTRACT_ADDRESSES[1], "data": "0x70a08231" + "00" * 32}
    result = call("eth_call", [tx, "latest"])
    assert result == call("eth_call", [tx, "latest"]) and len(result) == 66
    assert int(call("eth_estimateGas", [tx]), 16) > 21_000
    assert call("eth_estimateGas", [{"to": ADDRESS}]) == hex(21_000)
    assert int(call("eth_gasPrice", []), 16) > int(call("eth_maxPriorityFeePerGas", []), 16)
    history = call("eth_feeHistory", ["0x4", "latest", [10, 90]])
    assert history["oldestBlock"] == hex(HEAD - 3)
    assert len(history["baseFeePerGas"]) == 5 and len(history["reward"]) == 4
    assert call("eth_feeHistory", [2, hex(1)])["oldestBlock"] == "0x0"


def test_a_revert_selector_gives_execution_reverted() -> None:
    for method in ("eth_call", "eth_estimateGas"):
        exc = error_of(method, [{"to": ADDRESS, "data": REVERT_SELECTOR}])
        assert exc.code == EXECUTION_REVERTED and exc.data.startswith("0x08c379a0")


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        ("eth_blockNumber", ["extra"], "too many arguments"),
        ("eth_getBalance", [], "missing value for required argument 0"),
        ("eth_getBalance", ["0x1234", "latest"], "invalid argument 0"),
        ("eth_getBalance", [1, "latest"], "invalid argument 0: json: cannot unmarshal non-string"),
        ("eth_getTransactionByHash", [7], "cannot unmarshal non-string into Go value of type common.Hash"),
        ("eth_getBalance", [ADDRESS, "0x01"], "invalid argument 1"),
        ("eth_getBalance", [ADDRESS, "newest"], "invalid argument 1"),
        ("eth_getBalance", {"address": ADDRESS}, "non-array args"),
        ("eth_getBlockByNumber", ["latest", "yes"], "invalid argument 1"),
        ("eth_getBlockByHash", ["0x12", False], "want 64"),
        ("eth_call", ["not an object"], "invalid argument 0"),
        ("eth_call", [{"to": ADDRESS, "data": "0xabc"}], "invalid hex data"),
        ("eth_feeHistory", ["0x0", "latest"], "blockCount"),
        ("eth_feeHistory", ["0x2", "latest", [50, 10]], "percentiles"),
        ("eth_getLogs", [{"topics": [1]}], "invalid argument 0"),
        ("eth_getLogs", [{"topics": [None] * 5}], "at most 4"),
        ("eth_getLogs", [{"blockHash": "0x" + "00" * 32, "fromBlock": "0x1"}], "cannot specify both"),
        ("eth_getTransactionByHash", [], "missing value"),
    ],
)
def test_bad_params_get_invalid_params(method: str, params: Any, fragment: str) -> None:
    exc = error_of(method, params)
    assert exc.code == INVALID_PARAMS
    assert fragment in exc.message


def test_get_logs_filters_by_address_and_topics() -> None:
    everything = call("eth_getLogs", [{"fromBlock": hex(1), "toBlock": hex(300)}])
    assert everything, "the chain must have logs"
    address = CONTRACT_ADDRESSES[2]
    by_address = call("eth_getLogs", [{"fromBlock": hex(1), "toBlock": hex(300), "address": address}])
    assert by_address == [log for log in everything if log["address"] == address]
    transfers = call(
        "eth_getLogs",
        [
            {
                "fromBlock": hex(1),
                "toBlock": hex(300),
                "address": [address, CONTRACT_ADDRESSES[3]],
                "topics": [[TRANSFER_TOPIC]],
            }
        ],
    )
    expected = [
        log
        for log in everything
        if log["address"] in (address, CONTRACT_ADDRESSES[3]) and log["topics"][0] == TRANSFER_TOPIC
    ]
    assert transfers == expected and transfers
    block_hash = everything[0]["blockHash"]
    assert call("eth_getLogs", [{"blockHash": block_hash}]) == [
        log for log in everything if log["blockHash"] == block_hash
    ]


def test_get_logs_upper_bound_is_the_served_head() -> None:
    logs = call("eth_getLogs", [{"fromBlock": hex(HEAD - 50), "toBlock": hex(HEAD + 50)}], view(lag=20))
    assert max(int(log["blockNumber"], 16) for log in logs) <= HEAD - 20
    assert call("eth_getLogs", [{"fromBlock": hex(HEAD + 5)}]) == []
    exc = error_of("eth_getLogs", [{"fromBlock": hex(20), "toBlock": hex(10)}])
    assert exc.code == SERVER_ERROR


def test_get_logs_block_range_limit_gives_the_real_world_error() -> None:
    small = view(logs_max_range=100)
    assert call("eth_getLogs", [{"fromBlock": hex(HEAD - 99), "toBlock": "latest"}], small) is not None
    exc = error_of("eth_getLogs", [{"fromBlock": hex(HEAD - 100), "toBlock": "latest"}], small)
    assert exc.code == LIMIT_EXCEEDED
    assert exc.data == {"limit": 100, "requested": 101}


def test_get_logs_result_limit_suggests_a_smaller_range() -> None:
    exc = error_of("eth_getLogs", [{"fromBlock": hex(1), "toBlock": hex(500)}], view(logs_max_results=50))
    assert exc.code == LIMIT_EXCEEDED and "more than 50 results" in exc.message
    narrower = call("eth_getLogs", [{"fromBlock": exc.data["from"], "toBlock": exc.data["to"]}])
    assert len(narrower) <= 50


def test_requested_block_and_span_helpers() -> None:
    v = view()
    assert requested_block("eth_getBalance", [ADDRESS, hex(7)], v) == 7
    assert requested_block("eth_getBalance", [ADDRESS], v) == HEAD
    assert requested_block("eth_getLogs", [{"fromBlock": hex(3), "toBlock": hex(9)}], v) == 3
    assert requested_block("eth_chainId", [], v) is None
    assert requested_block("eth_getBalance", ["bad"], v) == HEAD  # the address is checked by the method
    assert requested_log_span([{"fromBlock": hex(HEAD - 9)}], v) == 10
    assert requested_log_span(["garbage"], v) is None
