"""The Ethereum methods the mock node answers, over a `View` of the chain at one moment.

Handlers raise `JsonRpcError` for errors; the server turns them into error responses. Answers are
deterministic: they depend only on the chain settings, the head and the node's lag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab import __version__
from lab.jsonrpc import EXECUTION_REVERTED, LIMIT_EXCEEDED, SERVER_ERROR, JsonRpcError
from lab.provider import params as p
from lab.provider.chain import (
    CONTRACT_ADDRESSES,
    EVENT_TOPICS,
    FINALIZED_DEPTH,
    GAS_LIMIT,
    GWEI,
    SAFE_DEPTH,
    Chain,
    digest,
)

# eth_call / eth_estimateGas with call data starting with this selector revert (code 3), so a test can
# provoke a caller error that a gateway must pass through instead of failing over.
REVERT_SELECTOR = "0xdeadbeef"
MAX_FEE_HISTORY_BLOCKS = 1024


@dataclass(frozen=True, slots=True)
class NodeConfig:
    provider_id: str
    logs_max_range: int = 10_000
    logs_max_results: int = 10_000


@dataclass(slots=True)  # not frozen: built per request, and frozen dataclasses construct slowly
class View:
    """The chain as this node sees it now: the real head and how many blocks the node is behind."""

    chain: Chain
    node: NodeConfig
    head: int
    lag: int = 0

    @property
    def served_head(self) -> int:
        return max(0, self.head - self.lag)


def resolve(ref: p.BlockRef, view: View) -> int | None:
    """The block number a reference names, or None for an unknown hash. May exceed the served head."""
    served = view.served_head
    if ref.tag is not None:
        if ref.tag in ("latest", "pending"):  # no mempool: pending is latest, as on many providers
            return served
        if ref.tag == "earliest":
            return 0
        return max(0, served - (SAFE_DEPTH if ref.tag == "safe" else FINALIZED_DEPTH))
    if ref.hash is not None:
        number = view.chain.block_number_of(ref.hash)
        return number if number is not None and number <= served else None
    return ref.number


def _state_block(ref: p.BlockRef, view: View) -> int:
    number = resolve(ref, view)
    if number is None or number > view.served_head:
        raise JsonRpcError(SERVER_ERROR, "header not found")
    return number


def _word(*parts: object) -> int:
    return int.from_bytes(digest(*parts), "big")


# --- handlers --------------------------------------------------------------------------------------


def eth_chain_id(params: Any, view: View) -> str:
    p.positional(params, 0, 0)
    return hex(view.chain.chain_id)


def net_version(params: Any, view: View) -> str:
    p.positional(params, 0, 0)
    return str(view.chain.chain_id)


def web3_client_version(params: Any, view: View) -> str:
    p.positional(params, 0, 0)
    return f"lab-provider/v{__version__}/{view.node.provider_id}"


def eth_block_number(params: Any, view: View) -> str:
    if params:
        p.positional(params, 0, 0)
    return hex(view.served_head)


def eth_syncing(params: Any, view: View) -> Any:
    p.positional(params, 0, 0)
    if view.lag <= 0:
        return False
    return {
        "startingBlock": hex(view.served_head),
        "currentBlock": hex(view.served_head),
        "highestBlock": hex(view.head),
    }


def eth_get_block_by_number(params: Any, view: View) -> Any:
    ref, full = p.positional(params, 1, 2)
    number = resolve(p.block_ref(ref, 0), view)
    full_txs = p.boolean(full, 1, default=False)
    if number is None or number > view.served_head:
        return None
    return view.chain.block(number, full_txs)


def eth_get_block_by_hash(params: Any, view: View) -> Any:
    block_hash, full = p.positional(params, 1, 2)
    number = resolve(p.BlockRef(hash=p.hash32(block_hash, 0)), view)
    full_txs = p.boolean(full, 1, default=False)
    return None if number is None else view.chain.block(number, full_txs)


def eth_get_balance(params: Any, view: View) -> str:
    addr, ref = p.positional(params, 1, 2)
    addr = p.address(addr, 0)
    _state_block(p.block_ref(ref, 1, default="latest"), view)
    return hex(_word("balance", addr) % 10**22)


def eth_get_transaction_count(params: Any, view: View) -> str:
    addr, ref = p.positional(params, 1, 2)
    addr = p.address(addr, 0)
    _state_block(p.block_ref(ref, 1, default="latest"), view)
    return hex(_word("nonce", addr) % 10_000)


def eth_get_code(params: Any, view: View) -> str:
    addr, ref = p.positional(params, 1, 2)
    addr = p.address(addr, 0)
    _state_block(p.block_ref(ref, 1, default="latest"), view)
    if addr not in CONTRACT_ADDRESSES:
        return "0x"
    return "0x6080604052" + digest("code", addr).hex() * 4


def _call_object(value: Any, index: int) -> tuple[str | None, str]:
    if not isinstance(value, dict):
        raise p.invalid(index, "transaction call object must be an object")
    to = p.address(value["to"], index) if value.get("to") is not None else None
    call_data = value.get("input", value.get("data")) or "0x"
    return to, p.data(call_data, index)


def _revert_if_asked(call_data: str) -> None:
    if call_data.startswith(REVERT_SELECTOR):
        # Error(string) "lab: reverted on request", ABI-encoded as a Solidity revert reason.
        reason = b"lab: reverted on request"
        encoded = (
            "0x08c379a0"
            + (32).to_bytes(32, "big").hex()
            + len(reason).to_bytes(32, "big").hex()
            + reason.ljust(32, b"\0").hex()
        )
        raise JsonRpcError(EXECUTION_REVERTED, "execution reverted: lab: reverted on request", encoded)


def eth_call(params: Any, view: View) -> str:
    call, ref, _overrides = p.positional(params, 1, 3)
    to, call_data = _call_object(call, 0)
    number = _state_block(p.block_ref(ref, 1, default="latest"), view)
    _revert_if_asked(call_data)
    if to is None:
        return "0x"
    return "0x" + digest("call", to, call_data, number // 1000).hex()


def eth_estimate_gas(params: Any, view: View) -> str:
    call, ref, _overrides = p.positional(params, 1, 3)
    to, call_data = _call_object(call, 0)
    _state_block(p.block_ref(ref, 1, default="latest"), view)
    _revert_if_asked(call_data)
    gas = 21_000 + 16 * (len(call_data) - 2) // 2
    if to in CONTRACT_ADDRESSES:
        gas += 25_000
    elif to is None:
        gas += 32_000
    return hex(gas)


def eth_gas_price(params: Any, view: View) -> str:
    p.positional(params, 0, 0)
    return hex(view.chain.base_fee(view.served_head) + GWEI)


def eth_max_priority_fee_per_gas(params: Any, view: View) -> str:
    p.positional(params, 0, 0)
    return hex(GWEI)


def eth_fee_history(params: Any, view: View) -> dict[str, Any]:
    count, newest, percentiles = p.positional(params, 2, 3)
    block_count = count if isinstance(count, int) and not isinstance(count, bool) else p.quantity(count, 0)
    if block_count < 1:
        raise p.invalid(0, "blockCount must be at least 1")
    block_count = min(block_count, MAX_FEE_HISTORY_BLOCKS)
    last = _state_block(p.block_ref(newest, 1), view)
    if percentiles is not None and not _valid_percentiles(percentiles):
        raise p.invalid(2, "reward percentiles must be ascending numbers between 0 and 100")
    first = max(0, last - block_count + 1)
    chain = view.chain
    numbers = range(first, last + 1)
    result: dict[str, Any] = {
        "oldestBlock": hex(first),
        "baseFeePerGas": [hex(chain.base_fee(n)) for n in range(first, last + 2)],
        "gasUsedRatio": [int(chain.block(n, False)["gasUsed"], 16) / GAS_LIMIT for n in numbers],
        "baseFeePerBlobGas": ["0x1"] * (len(numbers) + 1),
        "blobGasUsedRatio": [0.0] * len(numbers),
    }
    if percentiles:
        result["reward"] = [[hex(GWEI + int(pc) * GWEI // 100) for pc in percentiles] for _ in numbers]
    return result


def _valid_percentiles(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x <= 100 for x in value)
    return numbers and value == sorted(value)


def eth_get_logs(params: Any, view: View) -> list[dict[str, Any]]:
    (raw_filter,) = p.positional(params, 1, 1)
    flt = p.log_filter(raw_filter, 0)
    first, last = _log_range(flt, view)
    if first > last:
        return []
    limit = view.node.logs_max_range
    if last - first + 1 > limit:
        raise JsonRpcError(
            LIMIT_EXCEEDED,
            f"block range too large: {last - first + 1} blocks requested, the limit is {limit}",
            {"limit": limit, "requested": last - first + 1},
        )
    if not _may_match(flt):
        return []
    max_results = view.node.logs_max_results
    found: list[dict[str, Any]] = []
    for number in range(first, last + 1):
        for log in view.chain.logs(number):
            if flt.matches(log):
                found.append(log)
        if len(found) > max_results:
            suggestion = [hex(first), hex(max(first, number - 1))]
            raise JsonRpcError(
                LIMIT_EXCEEDED,
                f"query returned more than {max_results} results. "
                f"Try with this block range [{suggestion[0]}, {suggestion[1]}].",
                {"limit": max_results, "from": suggestion[0], "to": suggestion[1]},
            )
    return found


def _may_match(flt: p.LogFilter) -> bool:
    """False when no log of this chain can match (a cheap answer instead of scanning every block)."""
    if flt.addresses is not None and flt.addresses.isdisjoint(CONTRACT_ADDRESSES):
        return False
    return not (flt.topics and flt.topics[0] is not None and flt.topics[0].isdisjoint(EVENT_TOPICS))


def _log_range(flt: p.LogFilter, view: View) -> tuple[int, int]:
    if flt.block_hash is not None:
        number = resolve(p.BlockRef(hash=flt.block_hash), view)
        if number is None:
            raise JsonRpcError(SERVER_ERROR, "unknown block")
        return number, number
    first, last = resolve(flt.from_block, view), resolve(flt.to_block, view)
    if first is None or last is None:
        raise JsonRpcError(SERVER_ERROR, "unknown block")
    if first > last and flt.from_block.number is not None and flt.to_block.number is not None:
        raise JsonRpcError(SERVER_ERROR, "invalid block range params")
    return first, min(last, view.served_head)  # an empty range (first > last) finds nothing


def _transaction_position(params: Any, view: View) -> tuple[int, int] | None:
    (tx_hash,) = p.positional(params, 1, 1)
    position = view.chain.tx_position_of(p.hash32(tx_hash, 0))
    if position is None or position[0] > view.served_head:
        return None
    return position


def eth_get_transaction_by_hash(params: Any, view: View) -> Any:
    position = _transaction_position(params, view)
    return None if position is None else view.chain.transactions(position[0])[position[1]]


def eth_get_transaction_receipt(params: Any, view: View) -> Any:
    position = _transaction_position(params, view)
    return None if position is None else view.chain.receipt(*position)


Handler = Callable[[Any, View], Any]

METHODS: dict[str, Handler] = {
    "eth_chainId": eth_chain_id,
    "net_version": net_version,
    "web3_clientVersion": web3_client_version,
    "eth_blockNumber": eth_block_number,
    "eth_syncing": eth_syncing,
    "eth_getBlockByNumber": eth_get_block_by_number,
    "eth_getBlockByHash": eth_get_block_by_hash,
    "eth_getBalance": eth_get_balance,
    "eth_getTransactionCount": eth_get_transaction_count,
    "eth_getCode": eth_get_code,
    "eth_call": eth_call,
    "eth_estimateGas": eth_estimate_gas,
    "eth_gasPrice": eth_gas_price,
    "eth_maxPriorityFeePerGas": eth_max_priority_fee_per_gas,
    "eth_feeHistory": eth_fee_history,
    "eth_getLogs": eth_get_logs,
    "eth_getTransactionByHash": eth_get_transaction_by_hash,
    "eth_getTransactionReceipt": eth_get_transaction_receipt,
}

# An eth_getLogs over more blocks than this runs off the event loop (a wide scan must not stall every
# other client); a narrower one is answered inline, sooner than a hand-off to a thread.
INLINE_LOG_BLOCKS = 64

# The param index of the block each state/block method reads (for archive-depth behaviours).
BLOCK_PARAM: dict[str, int] = {
    "eth_getBlockByNumber": 0,
    "eth_getBalance": 1,
    "eth_getTransactionCount": 1,
    "eth_getCode": 1,
    "eth_call": 1,
    "eth_estimateGas": 1,
    "eth_feeHistory": 1,
}


def requested_block(method: str, params: Any, view: View) -> int | None:
    """The block a request reads (the lowest, for eth_getLogs), or None if it reads none or is invalid."""
    try:
        if method == "eth_getLogs":
            return _log_range(p.log_filter(p.positional(params, 1, 1)[0], 0), view)[0]
        index = BLOCK_PARAM.get(method)
        if index is None:
            return None
        args = p.positional(params, 0, 3)
        return resolve(p.block_ref(args[index], index, default="latest"), view)
    except JsonRpcError:
        return None


def runs_off_loop(method: str | None, params: Any, view: View) -> bool:
    """Whether answering may take long enough to stall other clients (a wide eth_getLogs)."""
    if method != "eth_getLogs":
        return False
    span = requested_log_span(params, view)
    return span is not None and span > INLINE_LOG_BLOCKS


def requested_log_span(params: Any, view: View) -> int | None:
    """The number of blocks an eth_getLogs request covers, or None when its params are invalid."""
    try:
        first, last = _log_range(p.log_filter(p.positional(params, 1, 1)[0], 0), view)
    except JsonRpcError:
        return None
    return max(0, last - first + 1)
