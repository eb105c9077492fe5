"""The checker's load-side half: one answer, checked against the simulated chain at its send time.

The lab's chain is a pure function of (chain id, genesis time, block time), and every block and
transaction hash names its number and branch (see lab.provider.chain), so an answer is judged without
asking any provider:

- head answers (`eth_blockNumber`, `latest`/`pending` blocks): `stale_blocks` = blocks behind the true
  head at send time (`stale` when > 0); a head beyond the true head when the answer was read is `wrong`;
- blocks, transactions, receipts and logs: equal to the lab's block of the number and branch their hash
  names (`wrong` on any difference, `wrong_chain` when they carry another chain id); `answer_branch` is
  that branch, and the analysis judges it against the reorgs of the run (an orphaned branch's answer
  after a reorg is wrong);
- a null for a block that exists at send time is `stale` (a node behind the head);
- `eth_chainId` / `net_version`: the chain's id, else `wrong_chain`;
- state reads whose value does not depend on the head (balance, nonce, code, call, estimateGas, tip):
  the lab's value.

Other answers are not checked (`check` null). The environment variable LAB_CHECK_CHAIN names the chain:
`{"chain_id": 1, "genesis_time": 1700000000, "block_time": 1.0}` (JSON).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from lab.jsonrpc import JsonRpcError, quantity
from lab.provider.chain import Chain
from lab.provider.methods import METHODS, NodeConfig, View

ENV_VAR = "LAB_CHECK_CHAIN"
HEAD_TAGS = frozenset({"latest", "pending"})
_DETAIL_CHARS = 200
# Answers that are a pure function of their params (not of the head): the provider's own handler says
# what they must be.
_PURE_METHODS = (
    "eth_call",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_estimateGas",
    "eth_maxPriorityFeePerGas",
)
_NODE = NodeConfig("checker")

Row = dict[str, Any]


def chain_env(chain_id: int, genesis_time: float, block_time: float) -> str:
    """The value of LAB_CHECK_CHAIN for a chain."""
    return orjson.dumps(
        {"chain_id": chain_id, "genesis_time": genesis_time, "block_time": block_time}
    ).decode()


class AnswerInspector:
    """Checks successful answers against the simulated chain. The load calls `inspect` once per
    successful answer (a batch: once per entry) and merges what it returns into that request's row."""

    def __init__(
        self, chain_id: int, genesis_time: float, block_time: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.chain = Chain(chain_id, genesis_time, block_time, cache_blocks=1024)
        self.clock = clock
        self._receipt_of = functools.lru_cache(maxsize=1024)(self.chain.receipt)
        self._handlers: dict[str, Callable[[Sequence[Any], Any, float], Row]] = {
            "eth_chainId": self._chain_id,
            "net_version": self._net_version,
            "eth_blockNumber": self._block_number,
            "eth_getBlockByNumber": self._block_by_number,
            "eth_getBlockByHash": self._block_by_hash,
            "eth_getTransactionByHash": self._transaction,
            "eth_getTransactionReceipt": self._receipt,
            "eth_getLogs": self._logs,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AnswerInspector | None:
        """The inspector for the chain the environment names, or None when it names none (nothing checked).
        ValueError (one line naming the variable) when it is malformed."""
        raw = env.get(ENV_VAR)
        if not raw:
            return None
        try:
            spec = orjson.loads(raw)
            chain_id, genesis, block_time = spec["chain_id"], spec["genesis_time"], spec["block_time"]
            if not (isinstance(chain_id, int) and chain_id >= 1 and float(block_time) > 0):
                raise ValueError
            return cls(chain_id, float(genesis), float(block_time))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(
                f'{ENV_VAR}: expected JSON {{"chain_id": int ≥ 1, "genesis_time": s, "block_time": s > 0}}, '
                f"got {raw[:80]!r}"
            ) from None

    def inspect(self, method: str, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        """The checker columns of the `requests` row (`answer_block`, `answer_branch`, `stale_blocks`,
        `check`, `check_detail`) for a successful answer to `method(params)` sent at `sent_at` (unix s)."""
        args = params if isinstance(params, list | tuple) else []
        handler = self._handlers.get(method)
        try:
            if handler is not None:
                return handler(args, result, sent_at)
            if method in _PURE_METHODS:
                return self._state(method, args, result, sent_at)
            return {}
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            # A malformed answer (a field of the wrong type, a missing key): wrong, never a crash.
            return _wrong(f"malformed answer: {type(exc).__name__}: {exc}")

    # --- heads ------------------------------------------------------------------------------------

    def _head_row(self, number: int, sent_at: float, extra: Row | None = None) -> Row:
        head = self.chain.head_at(sent_at)
        newest = self.chain.head_at(self.clock())
        if number > newest:
            return _wrong(f"head {hex(number)} is beyond the chain's head {hex(newest)}", answer_block=number)
        stale = max(0, head - number)
        row: Row = {"answer_block": number, "stale_blocks": stale, "check": "stale" if stale else "ok"}
        if stale:
            row["check_detail"] = f"head {hex(number)}, {stale} behind the head {hex(head)} at send time"
        return {**(extra or {}), **row}

    def _block_number(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        number = quantity(result)
        if number is None:
            return _wrong(f"not a block number: {_short(result)}")
        return self._head_row(number, sent_at)

    # --- blocks -----------------------------------------------------------------------------------

    def _block_by_number(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        ref = params[0] if params else "latest"
        full = bool(params[1]) if len(params) > 1 else False
        is_head = ref in HEAD_TAGS
        requested = None if isinstance(ref, str) and not ref.startswith("0x") else quantity(ref)
        if ref == "earliest":
            requested = 0
        if result is None:
            head = self.chain.head_at(sent_at)
            if is_head or (requested is not None and requested <= head):
                return {
                    "check": "stale",
                    "check_detail": f"null for block {ref} (the head was {hex(head)} at send time)",
                }
            return {"check": "ok"}
        row = self._block(result, full)
        if row["check"] != "ok":
            return row
        number = row["answer_block"]
        if requested is not None and number != requested:
            return _wrong(f"asked for block {hex(requested)}, got block {hex(number)}", answer_block=number)
        if is_head:
            return self._head_row(number, sent_at, row)
        return row

    def _block_by_hash(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        full = bool(params[1]) if len(params) > 1 else False
        if result is None:
            return {"check": "ok"}  # an unknown or orphaned hash: null is right
        row = self._block(result, full)
        if row["check"] == "ok" and params and str(params[0]).lower() != result.get("hash"):
            return _wrong(f"asked for block {params[0]}, got {result.get('hash')}", **_ids(row))
        return row

    def _block(self, block: Any, full: bool) -> Row:
        if not isinstance(block, dict):
            return _wrong(f"not a block object: {_short(block)}")
        found = self.chain.block_id_of(str(block.get("hash")))
        if found is None:
            return self._foreign(block, "block hash", block.get("hash"))
        number, branch = found
        expected = self.chain.block(number, full, branch)
        ids = {"answer_block": number, "answer_branch": branch}
        difference = _difference(expected, block, skip_parent=number == branch and branch > 0)
        if difference is None and number == branch and branch > 0:
            difference = self._fork_parent(block, number, branch)
        if difference is not None:
            return _wrong(f"block {hex(number)}: {difference}", **ids)
        return {**ids, "check": "ok"}

    def _fork_parent(self, block: dict[str, Any], number: int, branch: int) -> str | None:
        """A fork block's parent is on some earlier branch (which one, only the run's reorgs tell)."""
        parent = self.chain.block_id_of(str(block.get("parentHash")))
        if parent is None or parent[0] != number - 1 or parent[1] >= branch:
            got = block.get("parentHash")
            return f"parentHash: expected a block {hex(number - 1)} of an earlier branch, got {got}"
        return None

    def _foreign(self, answer: dict[str, Any], what: str, value: Any) -> Row:
        """An object whose hash this chain never made: another chain's (its chain id says so) or damaged."""
        chain_id = quantity(answer.get("chainId"))
        if chain_id is None:
            txs = answer.get("transactions")
            if isinstance(txs, list) and txs and isinstance(txs[0], dict):
                chain_id = quantity(txs[0].get("chainId"))
        if chain_id is not None and chain_id != self.chain.chain_id:
            return {
                "check": "wrong_chain",
                "check_detail": f"chain id: expected {hex(self.chain.chain_id)}, got {hex(chain_id)}",
            }
        return _wrong(f"{what} {_short(value)} names nothing on chain {self.chain.chain_id}")

    # --- transactions, receipts, logs ---------------------------------------------------------------

    def _transaction(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        return self._tx_like(params, result, receipt=False)

    def _receipt(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        return self._tx_like(params, result, receipt=True)

    def _tx_like(self, params: Sequence[Any], result: Any, *, receipt: bool) -> Row:
        if result is None:
            return {"check": "ok"}  # an orphaned or unknown transaction: null is right
        if not isinstance(result, dict):
            return _wrong(f"not an object: {_short(result)}")
        key = "transactionHash" if receipt else "hash"
        found = self.chain.tx_id_of(str(result.get(key)))
        if found is None:
            return self._foreign(result, "transaction hash", result.get(key))
        number, index, branch = found
        ids = {"answer_block": number, "answer_branch": branch}
        if params and str(params[0]).lower() != result.get(key):
            return _wrong(f"asked for transaction {params[0]}, got {result.get(key)}", **ids)
        if receipt:
            expected = self._receipt_of(number, index, branch)
        else:
            expected = self.chain.transactions(number, branch)[index]
        difference = _difference(expected, result)
        if difference is not None:
            what = "receipt" if receipt else "transaction"
            return _wrong(f"{what} {index} of block {hex(number)}: {difference}", **ids)
        return {**ids, "check": "ok"}

    def _logs(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        if not isinstance(result, list):
            return _wrong(f"not a list of logs: {_short(result)}")
        newest: tuple[int, int] | None = None
        for entry in result:
            if not isinstance(entry, dict):
                return _wrong(f"not a log object: {_short(entry)}")
            found = self.chain.block_id_of(str(entry.get("blockHash")))
            if found is None:
                return self._foreign(entry, "log block hash", entry.get("blockHash"))
            number, branch = found
            logs = self.chain.logs(number, branch)
            index = quantity(entry.get("logIndex"))
            expected = logs[index] if index is not None and 0 <= index < len(logs) else None
            if expected is None:
                return _wrong(
                    f"log {entry.get('logIndex')} of block {hex(number)} does not exist",
                    answer_block=number,
                    answer_branch=branch,
                )
            difference = _difference(expected, entry)
            if difference is not None:
                return _wrong(
                    f"log {index} of block {hex(number)}: {difference}",
                    answer_block=number,
                    answer_branch=branch,
                )
            if newest is None or number > newest[0]:
                newest = (number, branch)
        if newest is None:
            return {"check": "ok"}
        return {"answer_block": newest[0], "answer_branch": newest[1], "check": "ok"}

    # --- chain id and state reads -------------------------------------------------------------------

    def _chain_id(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        return self._id_row(quantity(result), result)

    def _net_version(self, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        value = int(result) if isinstance(result, str) and result.isdigit() else None
        return self._id_row(value, result)

    def _id_row(self, value: int | None, raw: Any) -> Row:
        if value == self.chain.chain_id:
            return {"check": "ok"}
        return {
            "check": "wrong_chain",
            "check_detail": f"chain id: expected {hex(self.chain.chain_id)}, got {_short(raw)}",
        }

    def _state(self, method: str, params: Sequence[Any], result: Any, sent_at: float) -> Row:
        want: Any = None
        # eth_call's answer follows the block it reads (in thousands): the head at send or at the answer.
        for moment in (sent_at, self.clock()):
            view = View(self.chain, _NODE, self.chain.head_at(moment))
            try:
                expected = METHODS[method](list(params), view)
            except JsonRpcError:
                return {}  # the lab's node would refuse it: nothing to compare with
            if expected == result:
                return {"check": "ok"}
            want = expected if want is None else want
        return _wrong(f"expected {_short(want)}, got {_short(result)}")


def _wrong(detail: str, **ids: Any) -> Row:
    return {**ids, "check": "wrong", "check_detail": detail[:_DETAIL_CHARS]}


def _ids(row: Row) -> Row:
    return {k: row[k] for k in ("answer_block", "answer_branch") if k in row}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 70 else text[:67] + "..."


def _difference(
    expected: Mapping[str, Any], got: Mapping[str, Any], *, skip_parent: bool = False
) -> str | None:
    """The first field where `got` differs from `expected` ("field: expected X, got Y"), or None."""
    if not skip_parent and expected == got:
        return None
    for key, want in expected.items():
        if skip_parent and key == "parentHash":
            continue
        have = got.get(key, _MISSING)
        if have != want:
            return f"{key}: expected {_short(want)}, got {'(missing)' if have is _MISSING else _short(have)}"
    extra = [k for k in got if k not in expected]
    return f"unexpected field {extra[0]}" if extra else None


_MISSING = object()
