"""Parsing and validating Ethereum JSON-RPC parameters, with geth's error wording (-32602)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lab.jsonrpc import INVALID_PARAMS, JsonRpcError

BLOCK_TAGS = frozenset({"latest", "earliest", "pending", "safe", "finalized"})

_QUANTITY = re.compile(r"0x(0|[1-9a-fA-F][0-9a-fA-F]*)")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_DATA = re.compile(r"0x([0-9a-fA-F]{2})*")


def invalid(index: int | None, reason: str) -> JsonRpcError:
    prefix = f"invalid argument {index}: " if index is not None else ""
    return JsonRpcError(INVALID_PARAMS, prefix + reason)


def positional(params: Any, required: int, maximum: int) -> list[Any]:
    """The positional params, padded with None up to `maximum`."""
    if params is None:
        params = []
    if not isinstance(params, list):
        raise invalid(None, "non-array args")
    if len(params) > maximum:
        raise invalid(None, f"too many arguments, want at most {maximum}")
    if len(params) < required:
        raise invalid(None, f"missing value for required argument {len(params)}")
    return params + [None] * (maximum - len(params))


def quantity(value: Any, index: int) -> int:
    if not isinstance(value, str):
        raise invalid(index, "json: cannot unmarshal non-string into Go value of type hexutil.Uint64")
    if not _QUANTITY.fullmatch(value):
        raise invalid(index, f"hex string {value!r} is not a valid quantity (0x prefix, no leading zeros)")
    return int(value, 16)


def address(value: Any, index: int) -> str:
    return _fixed_hex(value, index, _ADDRESS, "common.Address", 40)


def hash32(value: Any, index: int) -> str:
    return _fixed_hex(value, index, _HASH, "common.Hash", 64)


def _fixed_hex(value: Any, index: int, pattern: re.Pattern[str], go_type: str, digits: int) -> str:
    """A fixed-length hex value, lower-cased; rejected in geth's words for its Go type."""
    if not isinstance(value, str):
        raise invalid(index, f"json: cannot unmarshal non-string into Go value of type {go_type}")
    if not pattern.fullmatch(value):
        raise invalid(index, f"hex string has length {_hex_len(value)}, want {digits} for {go_type}")
    return value.lower()


def data(value: Any, index: int) -> str:
    if not isinstance(value, str) or not _DATA.fullmatch(value):
        raise invalid(index, "invalid hex data (want 0x-prefixed bytes)")
    return value.lower()


def boolean(value: Any, index: int, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise invalid(index, "json: cannot unmarshal into Go value of type bool")
    return value


def _hex_len(value: str) -> int:
    return max(len(value) - 2, 0)


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block parameter: a tag, a number, or (EIP-1898) a block hash."""

    tag: str | None = None
    number: int | None = None
    hash: str | None = None


def block_ref(value: Any, index: int, default: str | None = None) -> BlockRef:
    if value is None and default is not None:
        return BlockRef(tag=default)
    if isinstance(value, str):
        if value in BLOCK_TAGS:
            return BlockRef(tag=value)
        return BlockRef(number=quantity(value, index))
    if isinstance(value, dict):  # EIP-1898
        if "blockHash" in value and "blockNumber" in value:
            raise invalid(index, "cannot specify both blockHash and blockNumber, choose one or the other")
        if "blockHash" in value:
            return BlockRef(hash=hash32(value["blockHash"], index))
        if "blockNumber" in value:
            return block_ref(value["blockNumber"], index)
    raise invalid(index, "invalid block number or tag (want a hex quantity, a tag or an EIP-1898 object)")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """An eth_getLogs / logs-subscription filter. `topics[i]` is None (any) or a set of accepted values."""

    addresses: frozenset[str] | None
    topics: tuple[frozenset[str] | None, ...]
    from_block: BlockRef
    to_block: BlockRef
    block_hash: str | None

    def matches(self, log: dict[str, Any]) -> bool:
        if self.addresses is not None and log["address"] not in self.addresses:
            return False
        log_topics = log["topics"]
        if len(self.topics) > len(log_topics):
            return False
        return all(wanted is None or log_topics[i] in wanted for i, wanted in enumerate(self.topics))


def log_filter(value: Any, index: int) -> LogFilter:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise invalid(index, "filter must be an object")
    has_range = "fromBlock" in value or "toBlock" in value
    block_hash = value.get("blockHash")
    if block_hash is not None and has_range:
        raise invalid(index, "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other")
    raw_address = value.get("address")
    if raw_address is None:
        addresses = None
    elif isinstance(raw_address, list):
        addresses = frozenset(address(a, index) for a in raw_address)
    else:
        addresses = frozenset({address(raw_address, index)})
    raw_topics = value.get("topics") or []
    if not isinstance(raw_topics, list) or len(raw_topics) > 4:
        raise invalid(index, "topics must be an array of at most 4 entries")
    topics: list[frozenset[str] | None] = []
    for entry in raw_topics:
        if entry is None:
            topics.append(None)
        elif isinstance(entry, list):
            topics.append(frozenset(hash32(t, index) for t in entry) if entry else None)
        else:
            topics.append(frozenset({hash32(entry, index)}))
    return LogFilter(
        addresses=addresses,
        topics=tuple(topics),
        from_block=block_ref(value.get("fromBlock"), index, default="latest"),
        to_block=block_ref(value.get("toBlock"), index, default="latest"),
        block_hash=hash32(block_hash, index) if block_hash is not None else None,
    )
