"""A deterministic simulated chain: every block, transaction and log is a pure function of
(chain id, number), and the head is a pure function of (genesis time, block time, now).

So several providers started with the same chain id, genesis time and block time agree on every block
without talking to each other, as real nodes of one chain do. Hashes are built so that they can be
inverted (a hash names its block or transaction) without storing anything: the first bytes are a digest,
the last bytes hold the number XOR-masked by the digest, and a lookup recomputes the digest to verify.

Reorgs: `reorg(fork_block)` replaces every block from `fork_block` on by a sibling branch, named by its
fork block (branch 0 is the original chain). A block's contents and hash are a pure function of (chain id,
number, branch), and a hash names its branch too, so the checker can tell a block of the new branch from
one of the orphaned branch or from a damaged one. The chain keeps its forks (`forks`), newest last: block n
is on the branch of the highest fork ≤ n. Providers given the same reorgs agree on every block again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

ZERO_HASH = "0x" + "00" * 32
EMPTY_BLOOM = "0x" + "00" * 256
EMPTY_UNCLES_HASH = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
EMPTY_TRIE_ROOT = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
GAS_LIMIT = 30_000_000
GWEI = 10**9
SAFE_DEPTH = 32  # "safe" trails the head by about one epoch, "finalized" by about two
FINALIZED_DEPTH = 64
MAX_TXS_PER_BLOCK = 4
MAX_LOGS_PER_TX = 2

# Event signatures gateways and indexers filter on (keccak of the event declaration).
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
SWAP_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
SYNC_TOPIC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
EVENT_TOPICS = (TRANSFER_TOPIC, APPROVAL_TOPIC, SWAP_TOPIC, SYNC_TOPIC)


def digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _address(*parts: object) -> str:
    return _hex(digest("address", *parts)[:20])


# The contracts that emit every log on every lab chain (the same on all chains, so tests can name them).
CONTRACT_ADDRESSES = tuple(_address("contract", k) for k in range(8))


def _topic_of_address(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


# Tables indexed by one byte of a transaction's seed, so building a block's logs costs few digests.
_SENDERS = tuple(_address("sender", b) for b in range(256))
_EOAS = tuple(_address("eoa", b) for b in range(256))
_RECIPIENT_TOPICS = tuple(_topic_of_address(_address("recipient", b)) for b in range(256))


class Chain:
    """The blocks of one simulated chain, with LRU caches (thread-safe: eth_getLogs runs in threads)."""

    def __init__(
        self,
        chain_id: int,
        genesis_time: float,
        block_time: float,
        cache_blocks: int = 4096,
    ) -> None:
        if block_time <= 0:
            raise ValueError("block_time must be positive")
        self.chain_id = chain_id
        self.genesis_time = genesis_time
        self.block_time = block_time
        self._block_time_us = max(1, round(block_time * 1e6))
        self.forks: tuple[int, ...] = ()  # fork blocks of the branches in force, ascending
        # Cached by (number, branch, ...): the public methods below name the branch in force.
        self._block = lru_cache(maxsize=cache_blocks)(self._build_block)
        self._header_json = lru_cache(maxsize=256)(self._build_header_json)
        self._transactions = lru_cache(maxsize=cache_blocks)(self._build_transactions)
        self._logs = lru_cache(maxsize=cache_blocks)(self._build_logs)

    # --- blocks of the branches in force (`branch` given: that branch's, for the checker) -----------

    def block(self, number: int, full_transactions: bool, branch: int | None = None) -> dict[str, Any]:
        return self._block(number, self.branch_of(number) if branch is None else branch, full_transactions)

    def header_json(self, number: int) -> bytes:
        """The newHeads notification body of a block, serialised once for every subscriber."""
        return self._header_json(number, self.branch_of(number))

    def transactions(self, number: int, branch: int | None = None) -> tuple[dict[str, Any], ...]:
        return self._transactions(number, self.branch_of(number) if branch is None else branch)

    def logs(self, number: int, branch: int | None = None) -> tuple[dict[str, Any], ...]:
        """A block's logs, without building its transactions (eth_getLogs scans thousands of blocks)."""
        return self._logs(number, self.branch_of(number) if branch is None else branch)

    # --- time -------------------------------------------------------------------------------------

    def head_at(self, now: float) -> int:
        """The number of the newest block at wall time `now` (0 before and at genesis)."""
        if now <= self.genesis_time:
            return 0
        # Whole microseconds: a float Unix time is only exact to ~0.2 µs, and a block boundary must not
        # fall one block short of n * block_time through rounding.
        return round((now - self.genesis_time) * 1e6) // self._block_time_us

    def time_of(self, number: int) -> float:
        """The wall time at which block `number` appears."""
        return self.genesis_time + number * self._block_time_us / 1e6

    def timestamp(self, number: int) -> int:
        return int(self.time_of(number))

    # --- hashes -----------------------------------------------------------------------------------

    def branch_of(self, number: int) -> int:
        """The branch block `number` is on now: the highest fork at or below it (0: the original chain)."""
        forks = self.forks
        if not forks or number < forks[0]:
            return 0
        return max(f for f in forks if f <= number)

    def reorg(self, fork_block: int) -> bool:
        """Replace block `fork_block` and every later block by a sibling branch (False: already on it)."""
        if fork_block < 1:
            raise ValueError("the genesis block cannot be replaced: fork_block must be at least 1")
        forks = (*(f for f in self.forks if f < fork_block), fork_block)
        if forks == self.forks:
            return False
        self.forks = forks  # one assignment: readers in other threads see the old or the new tuple
        for cached in (self._block, self._header_json, self._transactions, self._logs):
            cached.cache_clear()  # a fork block's parent hash depends on the forks before it
        return True

    def _key(self, number: int, branch: int) -> tuple[object, ...]:
        """What every digest of a block derives from (the original chain's keeps its historical form)."""
        return (self.chain_id, number) if branch == 0 else (self.chain_id, number, "branch", branch)

    def block_hash(self, number: int, branch: int | None = None) -> str:
        branch = self.branch_of(number) if branch is None else branch
        if branch == 0:
            prefix = digest("block", self.chain_id, number)[:24]
            return _hex(prefix + (number ^ _mask(prefix, 8)).to_bytes(8, "big"))
        prefix = digest("block", *self._key(number, branch))[:16]
        return _hex(prefix + (((branch << 64) | number) ^ _mask(prefix, 16)).to_bytes(16, "big"))

    def block_id_of(self, block_hash: str) -> tuple[int, int] | None:
        """(number, branch) of the block with this hash on this chain, on any branch, or None."""
        raw = _unhex32(block_hash)
        if raw is None:
            return None
        lowered = block_hash.lower()
        number = int.from_bytes(raw[24:], "big") ^ _mask(raw[:24], 8)
        if self.block_hash(number, 0) == lowered:
            return number, 0
        packed = int.from_bytes(raw[16:], "big") ^ _mask(raw[:16], 16)
        number, branch = packed & 0xFFFF_FFFF_FFFF_FFFF, packed >> 64
        if branch and self.block_hash(number, branch) == lowered:
            return number, branch
        return None

    def block_number_of(self, block_hash: str) -> int | None:
        """The number of the block with this hash on this chain's current branches (mined or not), or None
        (an orphaned block's hash names no block)."""
        found = self.block_id_of(block_hash)
        if found is None or self.branch_of(found[0]) != found[1]:
            return None
        return found[0]

    def tx_hash(self, number: int, index: int, branch: int | None = None) -> str:
        branch = self.branch_of(number) if branch is None else branch
        if branch == 0:
            prefix = digest("tx", self.chain_id, number, index)[:22]
            return _hex(prefix + (((number << 16) | index) ^ _mask(prefix, 10)).to_bytes(10, "big"))
        prefix = digest("tx", *self._key(number, branch), index)[:14]
        packed = (branch << 80) | (number << 16) | index
        return _hex(prefix + (packed ^ _mask(prefix, 18)).to_bytes(18, "big"))

    def tx_id_of(self, tx_hash: str) -> tuple[int, int, int] | None:
        """(block number, index, branch) of the transaction with this hash on any branch, or None."""
        raw = _unhex32(tx_hash)
        if raw is None:
            return None
        lowered = tx_hash.lower()
        packed = int.from_bytes(raw[22:], "big") ^ _mask(raw[:22], 10)
        number, index, branch = packed >> 16, packed & 0xFFFF, 0
        if self.tx_hash(number, index, 0) != lowered:
            packed = int.from_bytes(raw[14:], "big") ^ _mask(raw[:14], 18)
            number, index, branch = (packed >> 16) & 0xFFFF_FFFF_FFFF_FFFF, packed & 0xFFFF, packed >> 80
            if not branch or self.tx_hash(number, index, branch) != lowered:
                return None
        if index >= self.tx_count(number, branch):
            return None
        return number, index, branch

    def tx_position_of(self, tx_hash: str) -> tuple[int, int] | None:
        """(block number, index) of the transaction with this hash on this chain's current branches, or
        None (an orphaned block's transactions are not found, as they were never re-included)."""
        found = self.tx_id_of(tx_hash)
        if found is None or self.branch_of(found[0]) != found[2]:
            return None
        return found[0], found[1]

    # --- contents ---------------------------------------------------------------------------------

    def tx_count(self, number: int, branch: int | None = None) -> int:
        if number == 0:
            return 0
        branch = self.branch_of(number) if branch is None else branch
        return digest("txcount", *self._key(number, branch))[0] % (MAX_TXS_PER_BLOCK + 1)

    def base_fee(self, number: int, branch: int | None = None) -> int:
        branch = self.branch_of(number) if branch is None else branch
        return 10 * GWEI + int.from_bytes(digest("basefee", *self._key(number, branch))[:4], "big") % (
            20 * GWEI
        )

    def _tx_seed(self, number: int, index: int, branch: int) -> bytes:
        """The bytes every field of a transaction and its logs derive from (see the byte map below)."""
        return digest("tx", *self._key(number, branch), index)

    # Seed bytes: 0 emits logs (unless % 3 == 0), 1 recipient contract or EOA, 2 tip, 3 sender, 4 gas,
    # 5-20 input, 6-8 nonce, 9-16 value, 17 parity, 22 log count, 23-24 log topics, 25-26 log recipients.

    def _build_transactions(self, number: int, branch: int) -> tuple[dict[str, Any], ...]:
        block_hash = self.block_hash(number, branch)
        base_fee = self.base_fee(number, branch)
        txs = []
        for index in range(self.tx_count(number, branch)):
            seed = self._tx_seed(number, index, branch)
            emits_logs = seed[0] % 3 != 0
            tip = GWEI + seed[2] * GWEI // 100
            txs.append(
                {
                    "blockHash": block_hash,
                    "blockNumber": hex(number),
                    "from": _SENDERS[seed[3]],
                    "gas": hex(21_000 + seed[4] * 1000),
                    "gasPrice": hex(base_fee + tip),
                    "maxFeePerGas": hex(2 * base_fee + tip),
                    "maxPriorityFeePerGas": hex(tip),
                    "hash": self.tx_hash(number, index, branch),
                    "input": "0xa9059cbb" + seed[5:21].hex() if emits_logs else "0x",
                    "nonce": hex(int.from_bytes(seed[6:9], "big") % 100_000),
                    "to": CONTRACT_ADDRESSES[seed[1] % len(CONTRACT_ADDRESSES)]
                    if emits_logs
                    else _EOAS[seed[1]],
                    "transactionIndex": hex(index),
                    "value": hex(int.from_bytes(seed[9:17], "big") % 10**18),
                    "type": "0x2",
                    "accessList": [],
                    "chainId": hex(self.chain_id),
                    "v": hex(seed[17] & 1),
                    "yParity": hex(seed[17] & 1),
                    "r": _hex(digest("r", seed)),
                    "s": _hex(digest("s", seed)),
                }
            )
        return tuple(txs)

    def _build_logs(self, number: int, branch: int) -> tuple[dict[str, Any], ...]:
        logs: list[dict[str, Any]] = []
        block_hash = None
        for index in range(self.tx_count(number, branch)):
            seed = self._tx_seed(number, index, branch)
            if seed[0] % 3 == 0:
                continue  # a plain transfer: no logs
            block_hash = block_hash or self.block_hash(number, branch)
            tx_hash = self.tx_hash(number, index, branch)
            address = CONTRACT_ADDRESSES[seed[1] % len(CONTRACT_ADDRESSES)]
            sender_topic = _topic_of_address(_SENDERS[seed[3]])
            for k in range(1 + seed[22] % MAX_LOGS_PER_TX):
                logs.append(
                    {
                        "address": address,
                        "topics": [
                            EVENT_TOPICS[seed[23 + k] % len(EVENT_TOPICS)],
                            sender_topic,
                            _RECIPIENT_TOPICS[seed[25 + k]],
                        ],
                        "data": _hex(seed[k:] + seed[:k]),
                        "blockNumber": hex(number),
                        "blockHash": block_hash,
                        "transactionHash": tx_hash,
                        "transactionIndex": hex(index),
                        "logIndex": hex(len(logs)),
                        "removed": False,
                    }
                )
        return tuple(logs)

    def _build_block(self, number: int, branch: int, full_transactions: bool) -> dict[str, Any]:
        txs = self._transactions(number, branch)
        gas_used = sum(int(tx["gas"], 16) * 9 // 10 for tx in txs)
        header = self._header(number, branch, gas_used)
        header["size"] = hex(600 + 150 * len(txs))
        header["transactions"] = list(txs) if full_transactions else [tx["hash"] for tx in txs]
        header["uncles"] = []
        header["withdrawals"] = []
        return header

    def parent_hash(self, number: int, branch: int) -> str:
        """The parent of block `number` of `branch`: a fork block's parent is on the branch below it."""
        if number == 0:
            return ZERO_HASH
        return self.block_hash(number - 1, self.branch_of(number - 1) if number == branch else branch)

    def _header(self, number: int, branch: int, gas_used: int) -> dict[str, Any]:
        seed = digest("header", *self._key(number, branch))
        return {
            "number": hex(number),
            "hash": self.block_hash(number, branch),
            "parentHash": self.parent_hash(number, branch),
            "nonce": "0x0000000000000000",
            "sha3Uncles": EMPTY_UNCLES_HASH,
            "logsBloom": EMPTY_BLOOM,
            "transactionsRoot": _hex(digest("txroot", seed)),
            "stateRoot": _hex(digest("stateroot", seed)),
            "receiptsRoot": _hex(digest("receiptsroot", seed)),
            "miner": _address("miner", seed[0] % 16),
            "difficulty": "0x0",
            "totalDifficulty": "0x0",
            "extraData": "0x" + b"lab".hex(),
            "gasLimit": hex(GAS_LIMIT),
            "gasUsed": hex(gas_used),
            "timestamp": hex(self.timestamp(number)),
            "baseFeePerGas": hex(self.base_fee(number, branch)),
            "mixHash": _hex(digest("mix", seed)),
            "withdrawalsRoot": EMPTY_TRIE_ROOT,
            "blobGasUsed": "0x0",
            "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": _hex(digest("beacon", seed)),
        }

    def _build_header_json(self, number: int, branch: int) -> bytes:
        block = self._block(number, branch, False)
        return orjson.dumps({k: v for k, v in block.items() if k not in _BODY_FIELDS})

    def receipt(self, number: int, index: int, branch: int | None = None) -> dict[str, Any]:
        branch = self.branch_of(number) if branch is None else branch
        txs = self._transactions(number, branch)
        tx = txs[index]
        gas_used = int(tx["gas"], 16) * 9 // 10
        cumulative = sum(int(t["gas"], 16) * 9 // 10 for t in txs[: index + 1])
        return {
            "blockHash": tx["blockHash"],
            "blockNumber": tx["blockNumber"],
            "contractAddress": None,
            "cumulativeGasUsed": hex(cumulative),
            "effectiveGasPrice": tx["gasPrice"],
            "from": tx["from"],
            "gasUsed": hex(gas_used),
            "logs": [log for log in self._logs(number, branch) if log["transactionHash"] == tx["hash"]],
            "logsBloom": EMPTY_BLOOM,
            "status": "0x1",
            "to": tx["to"],
            "transactionHash": tx["hash"],
            "transactionIndex": tx["transactionIndex"],
            "type": tx["type"],
        }


_BODY_FIELDS = frozenset({"transactions", "uncles", "size", "withdrawals", "totalDifficulty"})


def _mask(prefix: bytes, size: int) -> int:
    """Random-looking bits that hide the number in a hash's tail (recomputable from its head)."""
    return int.from_bytes(hashlib.blake2b(prefix, digest_size=size).digest(), "big")


def _unhex32(value: str) -> bytes | None:
    if len(value) != 66 or not value.startswith("0x"):
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None
