"""The simulated chain: deterministic, agreeing across instances, invertible hashes, linked blocks."""

from __future__ import annotations

import pytest

from lab.provider.chain import CONTRACT_ADDRESSES, ZERO_HASH, Chain

GENESIS = 1_700_000_000


def test_head_follows_wall_time() -> None:
    chain = Chain(1, GENESIS, 0.05)
    assert chain.head_at(GENESIS - 10) == 0
    assert chain.head_at(GENESIS) == 0
    assert chain.head_at(GENESIS + 0.049) == 0
    assert chain.head_at(GENESIS + 0.05) == 1  # on the boundary despite float rounding
    assert chain.head_at(GENESIS + 1.0) == 20
    assert chain.time_of(20) == pytest.approx(GENESIS + 1.0)


def test_two_instances_with_the_same_settings_agree_on_every_block() -> None:
    a, b = Chain(1, GENESIS, 1.0), Chain(1, GENESIS, 1.0)
    for number in (0, 1, 2, 1000, 19_000_000):
        assert a.block(number, True) == b.block(number, True)
        assert a.logs(number) == b.logs(number)


def test_chains_with_different_ids_differ() -> None:
    assert Chain(1, GENESIS, 1.0).block_hash(5) != Chain(10, GENESIS, 1.0).block_hash(5)


def test_blocks_link_to_their_parent_and_carry_their_timestamp() -> None:
    chain = Chain(1, GENESIS, 12.0)
    assert chain.block(0, False)["parentHash"] == ZERO_HASH
    for number in range(1, 50):
        block = chain.block(number, False)
        assert block["parentHash"] == chain.block(number - 1, False)["hash"]
        assert int(block["timestamp"], 16) == GENESIS + 12 * number
        assert int(block["number"], 16) == number


@pytest.mark.parametrize("number", [0, 1, 17, 2**40])
def test_block_hashes_invert_to_their_number(number: int) -> None:
    chain = Chain(1, GENESIS, 1.0)
    block_hash = chain.block_hash(number)
    assert len(block_hash) == 66
    assert chain.block_number_of(block_hash) == number
    assert chain.block_number_of(block_hash.upper().replace("0X", "0x")) == number


def test_foreign_or_malformed_hashes_name_no_block() -> None:
    chain = Chain(1, GENESIS, 1.0)
    assert chain.block_number_of(Chain(2, GENESIS, 1.0).block_hash(7)) is None
    assert chain.block_number_of("0x" + "11" * 32) is None
    assert chain.block_number_of("0x1234") is None
    assert chain.block_number_of("0x" + "zz" * 32) is None
    assert chain.tx_position_of("0x" + "11" * 32) is None


def test_transactions_logs_and_receipts_are_consistent() -> None:
    chain = Chain(1, GENESIS, 1.0)
    seen_logs = 0
    for number in range(1, 200):
        block = chain.block(number, True)
        hashes = chain.block(number, False)["transactions"]
        assert [tx["hash"] for tx in block["transactions"]] == hashes
        for index, tx in enumerate(block["transactions"]):
            assert chain.tx_position_of(tx["hash"]) == (number, index)
            receipt = chain.receipt(number, index)
            assert receipt["transactionHash"] == tx["hash"]
            assert all(log["transactionHash"] == tx["hash"] for log in receipt["logs"])
        logs = chain.logs(number)
        assert [int(log["logIndex"], 16) for log in logs] == list(range(len(logs)))
        assert all(log["address"] in CONTRACT_ADDRESSES and log["blockHash"] == block["hash"] for log in logs)
        seen_logs += len(logs)
    assert seen_logs > 100  # enough logs for filters to be meaningful


def test_genesis_has_no_transactions_and_the_header_json_has_no_body() -> None:
    chain = Chain(1, GENESIS, 1.0)
    assert chain.block(0, True)["transactions"] == []
    header = chain.header_json(5)
    assert b'"transactions"' not in header and b'"parentHash"' in header
