"""The checker's load side (lab.checker.AnswerInspector) with planted answers: right, stale, damaged,
another chain's, orphaned-branch answers; and its environment variable."""

from __future__ import annotations

import copy

import pytest

from lab.checker import AnswerInspector
from lab.checker.answers import ENV_VAR, chain_env
from lab.provider.chain import Chain

GENESIS = 1_700_000_000
SENT = GENESIS + 10_000.5  # the true head at send time is 10_000


@pytest.fixture
def inspector() -> AnswerInspector:
    return AnswerInspector(1, GENESIS, 1.0, clock=lambda: SENT + 0.2)


CHAIN = Chain(1, GENESIS, 1.0)


def test_head_answers_measure_staleness_and_a_head_from_the_future_is_wrong(
    inspector: AnswerInspector,
) -> None:
    assert inspector.inspect("eth_blockNumber", [], hex(10_000), SENT) == {
        "answer_block": 10_000,
        "stale_blocks": 0,
        "check": "ok",
    }
    stale = inspector.inspect("eth_blockNumber", [], hex(9_980), SENT)
    assert stale["check"] == "stale" and stale["stale_blocks"] == 20 and stale["answer_block"] == 9_980
    assert inspector.inspect("eth_blockNumber", [], hex(10_001), SENT)["check"] == "wrong"
    assert inspector.inspect("eth_blockNumber", [], "soon", SENT)["check"] == "wrong"
    latest = inspector.inspect("eth_getBlockByNumber", ["latest", False], CHAIN.block(9_999, False), SENT)
    assert latest["check"] == "stale" and latest["stale_blocks"] == 1 and latest["answer_branch"] == 0


def test_blocks_transactions_receipts_and_logs_match_the_chain(inspector: AnswerInspector) -> None:
    number = next(n for n in range(9_000, 9_100) if CHAIN.tx_count(n) >= 2)
    block = CHAIN.block(number, True)
    assert inspector.inspect("eth_getBlockByNumber", [hex(number), True], block, SENT)["check"] == "ok"
    assert inspector.inspect("eth_getBlockByHash", [block["hash"], True], block, SENT)["check"] == "ok"
    tx = block["transactions"][1]
    assert inspector.inspect("eth_getTransactionByHash", [tx["hash"]], tx, SENT)["check"] == "ok"
    receipt = CHAIN.receipt(number, 1)
    assert inspector.inspect("eth_getTransactionReceipt", [tx["hash"]], receipt, SENT) == {
        "answer_block": number,
        "answer_branch": 0,
        "check": "ok",
    }
    logs = [log for n in range(number - 3, number + 1) for log in CHAIN.logs(n)]
    assert inspector.inspect("eth_getLogs", [{}], logs, SENT)["check"] == "ok"
    assert inspector.inspect("eth_getBalance", ["0x" + "11" * 20, "latest"], "0x1", SENT)["check"] == "wrong"
    assert inspector.inspect("eth_chainId", [], "0x1", SENT) == {"check": "ok"}
    assert inspector.inspect("web3_clientVersion", [], "anything", SENT) == {}  # not checked


@pytest.mark.parametrize(
    ("field", "value"),
    [("gasUsed", "0x1"), ("miner", "0x" + "00" * 20), ("transactions", []), ("number", "0x1")],
)
def test_a_damaged_block_is_wrong_and_says_what_was_expected(
    inspector: AnswerInspector, field: str, value: object
) -> None:
    number = next(n for n in range(9_000, 9_100) if CHAIN.tx_count(n))
    block = copy.deepcopy(CHAIN.block(number, False))
    block[field] = value
    row = inspector.inspect("eth_getBlockByNumber", [hex(number), False], block, SENT)
    assert row["check"] == "wrong"
    assert "expected" in row["check_detail"] or "asked for" in row["check_detail"]


def test_another_chains_answers_are_wrong_chain(inspector: AnswerInspector) -> None:
    other = Chain(5, GENESIS, 1.0)
    assert inspector.inspect("eth_chainId", [], "0x5", SENT)["check"] == "wrong_chain"
    assert inspector.inspect("net_version", [], "5", SENT)["check"] == "wrong_chain"
    number = next(n for n in range(9_000, 9_100) if other.tx_count(n))
    row = inspector.inspect("eth_getBlockByNumber", [hex(number), True], other.block(number, True), SENT)
    assert row["check"] == "wrong_chain" and row["check_detail"] == "chain id: expected 0x1, got 0x5"
    empty = next(n for n in range(9_000, 9_100) if not other.tx_count(n))
    assert (
        inspector.inspect("eth_getBlockByNumber", [hex(empty), False], other.block(empty, False), SENT)[
            "check"
        ]
        == "wrong"
    )


def test_a_new_branch_answer_is_right_and_names_its_branch(inspector: AnswerInspector) -> None:
    reorged = Chain(1, GENESIS, 1.0)
    reorged.reorg(9_998)
    for number in (9_998, 9_999, 10_000):
        row = inspector.inspect(
            "eth_getBlockByNumber", [hex(number), True], reorged.block(number, True), SENT
        )
        assert row == {"answer_block": number, "answer_branch": 9_998, "check": "ok"}
    # A fork block whose parent is not the block below it on an earlier branch is wrong.
    fork = dict(reorged.block(9_998, False))
    fork["parentHash"] = reorged.block_hash(9_996)
    assert inspector.inspect("eth_getBlockByNumber", [hex(9_998), False], fork, SENT)["check"] == "wrong"


def test_nulls_for_blocks_that_exist_are_stale(inspector: AnswerInspector) -> None:
    assert inspector.inspect("eth_getBlockByNumber", [hex(9_990), False], None, SENT)["check"] == "stale"
    assert inspector.inspect("eth_getBlockByNumber", [hex(10_005), False], None, SENT)["check"] == "ok"
    assert inspector.inspect("eth_getTransactionByHash", ["0x" + "11" * 32], None, SENT) == {"check": "ok"}


def test_from_env() -> None:
    assert AnswerInspector.from_env({}) is None
    inspector = AnswerInspector.from_env({ENV_VAR: chain_env(10, GENESIS, 2.0)})
    assert inspector is not None and inspector.chain.chain_id == 10 and inspector.chain.block_time == 2.0
    with pytest.raises(ValueError, match=ENV_VAR):
        AnswerInspector.from_env({ENV_VAR: '{"chain_id": 1}'})
