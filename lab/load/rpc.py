"""The JSON-RPC traffic itself, without Locust: a weighted method mix with realistic parameters, what
the client has learned of the chain, and how an answer is classified for the run record.

Parameters follow the chain: the client learns block numbers, block and transaction hashes and
addresses from the answers it gets, so receipts are asked for real transactions and logs for recent
ranges, as a dapp or an indexer would.
"""

from __future__ import annotations

import base64
import bisect
import errno
import itertools
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from lab.jsonrpc import LIMIT_EXCEEDED
from lab.provider.chain import CONTRACT_ADDRESSES  # the mock chain's log-emitting contracts

BALANCE_OF = "0x70a08231"  # ERC-20 balanceOf(address)


class MethodMix:
    """Draws methods with the given relative weights."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights or any(w <= 0 for w in weights.values()):
            raise ValueError("a method mix needs at least one method, every weight positive")
        self.methods = list(weights)
        self._cumulative = list(itertools.accumulate(weights.values()))

    def choose(self, rng: random.Random) -> str:
        return self.methods[bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])]


class ChainKnowledge:
    """What a client has seen of the chain, to ask about things that exist."""

    def __init__(self, contracts: Sequence[str] | None = None) -> None:
        self.head: int | None = None
        self.contracts: list[str] = list(contracts or CONTRACT_ADDRESSES)
        self.block_hashes: deque[str] = deque(maxlen=64)
        self.tx_hashes: deque[str] = deque(maxlen=256)
        self.addresses: deque[str] = deque(self.contracts, maxlen=256)

    def learn(self, method: str, result: Any) -> None:
        """Take what an answer tells about the chain (heads, hashes, addresses)."""
        if method == "eth_blockNumber" and isinstance(result, str):
            self._head(result)
        elif method in ("eth_getBlockByNumber", "eth_getBlockByHash") and isinstance(result, dict):
            self._head(result.get("number"))
            if isinstance(result.get("hash"), str):
                self.block_hashes.append(result["hash"])
            for tx in result.get("transactions") or ():
                if isinstance(tx, str):
                    self.tx_hashes.append(tx)
                elif isinstance(tx, dict) and isinstance(tx.get("hash"), str):
                    self.tx_hashes.append(tx["hash"])
        elif method == "eth_getTransactionReceipt" and isinstance(result, dict):
            for key in ("from", "to"):
                if isinstance(result.get(key), str):
                    self.addresses.append(result[key])
        elif method == "eth_getLogs" and isinstance(result, list):
            for log in result[:8]:
                if isinstance(log, dict) and isinstance(log.get("transactionHash"), str):
                    self.tx_hashes.append(log["transactionHash"])

    def _head(self, value: Any) -> None:
        if isinstance(value, str) and value.startswith("0x"):
            try:
                number = int(value, 16)
            except ValueError:
                return
            if self.head is None or number > self.head:
                self.head = number

    def recent_block(self, rng: random.Random, depth: int = 32) -> str:
        if self.head is None:
            return "latest"
        return hex(max(0, self.head - rng.randrange(depth)))


def _pad_address(address: str) -> str:
    return address[2:].lower().rjust(64, "0")


def params_for(method: str, chain: ChainKnowledge, rng: random.Random) -> tuple[str, list[Any]]:
    """Realistic params for `method`. Returns the method actually to send (a receipt asked for before any
    transaction is known becomes a block fetch, which teaches some) and its params."""
    address = rng.choice(chain.addresses)
    contract = rng.choice(chain.contracts)
    tag = "latest" if rng.random() < 0.7 else chain.recent_block(rng)
    if method in ("eth_getTransactionReceipt", "eth_getTransactionByHash"):
        if not chain.tx_hashes:
            return "eth_getBlockByNumber", ["latest", False]
        return method, [rng.choice(chain.tx_hashes)]
    if method == "eth_getBlockByHash":
        if not chain.block_hashes:
            return "eth_getBlockByNumber", ["latest", False]
        return method, [rng.choice(chain.block_hashes), False]
    if method == "eth_getBlockByNumber":
        return method, [chain.recent_block(rng) if rng.random() < 0.5 else "latest", False]
    if method in ("eth_getBalance", "eth_getTransactionCount"):
        return method, [address, tag]
    if method == "eth_getCode":
        return method, [contract, tag]
    if method == "eth_call":
        return method, [{"to": contract, "data": BALANCE_OF + _pad_address(address)}, tag]
    if method == "eth_estimateGas":
        return method, [{"from": address, "to": contract, "data": BALANCE_OF + _pad_address(address)}]
    if method == "eth_getLogs":
        if chain.head is None:
            return method, [{"fromBlock": "latest", "toBlock": "latest", "address": contract}]
        start = max(0, chain.head - rng.randrange(1, 6))
        return method, [{"fromBlock": hex(start), "toBlock": hex(chain.head), "address": contract}]
    if method == "eth_feeHistory":
        return method, ["0x4", "latest", [25, 50, 75]]
    return method, []


# --- classifying answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's fate, as the `requests` table records it."""

    method: str
    ok: bool
    error_class: str | None = None
    rpc_code: int | None = None
    result: Any = None
    position: int | None = None  # index in a batch's response array

    def row(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "ok": self.ok,
            "error_class": self.error_class,
            "rpc_code": self.rpc_code,
        }


_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED})
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: geventhttpclient's RetriesExceeded keeps the socket error in
    `original`; others chain it as the cause."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        original = getattr(current, "original", None)
        if not isinstance(original, BaseException):
            original = current.__cause__ or current.__context__
        current = original
    return seen


def exception_class(exc: BaseException) -> str:
    """The error class of a transport failure (see lab.record.ERROR_CLASSES): `timeout` (gevent's Timeout,
    socket.timeout, "timed out"), `refused` (nothing listening: ECONNREFUSED), `reset` (the peer reset or
    broke the connection: ECONNRESET, EPIPE), `connection` (another transport failure: closed mid-answer,
    a torn or unparsable HTTP answer, DNS, TLS), else `other`."""
    chain = _causes(exc)
    names = {cls.__name__.lower() for e in chain for cls in type(e).__mro__}
    errnos = {e.errno for e in chain if isinstance(e, OSError) and e.errno is not None}
    text = " ".join(str(e) for e in chain).lower()
    if any("timeout" in n for n in names) or "timed out" in text or errno.ETIMEDOUT in errnos:
        return "timeout"
    if "connectionrefusederror" in names or errnos & _REFUSED_ERRNOS or "connection refused" in text:
        return "refused"
    if (
        {"connectionreseterror", "brokenpipeerror", "connectionabortederror"} & names
        or errnos & _RESET_ERRNOS
        or "connection reset" in text
    ):
        return "reset"
    transport = ("connection", "closed", "oserror", "parseerror", "ssl", "empty")
    if any(word in n for n in names for word in transport):
        return "connection"
    return "other"


def _error_outcome(method: str, error: Any) -> Outcome:
    code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), int) else None
    cls = "rate_limited" if code == LIMIT_EXCEEDED else "rpc_error"
    return Outcome(method, False, cls, code)


def _rpc_error_of(parsed: Any) -> Any:
    """The JSON-RPC error object of a non-2xx body (a single answer, or a batch's first error), if any."""
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return parsed["error"]
    if isinstance(parsed, list):
        return next(
            (e["error"] for e in parsed if isinstance(e, dict) and isinstance(e.get("error"), dict)), None
        )
    return None


def classify(
    methods: Sequence[tuple[Any, str]],
    status: int,
    body: bytes | None,
    exception: BaseException | None = None,
    *,
    batch: bool = False,
) -> list[Outcome]:
    """Classify an HTTP answer to a request (`methods` = [(id, method)]) or a batch, one Outcome per entry.

    The status and the body are read first: a non-2xx status is an answer even when the HTTP client
    raised for it. Rules (see lab.record.ERROR_CLASSES): an exception without a non-2xx status is a
    transport failure (`timeout`, `refused`, `reset`, `connection`); HTTP 429 or JSON-RPC -32005 is
    `rate_limited`; a non-2xx whose body is a JSON-RPC error (a gateway's 503 with -32000, say) is
    `rpc_error` with its code; another non-2xx is `http_status`; an error object in a 2xx answer
    `rpc_error`; anything that is not a matching JSON-RPC answer
    `invalid_response`.
    """
    # A non-2xx status with an exception is geventhttpclient's BadStatusCode: an answer, read it. Otherwise
    # the exception is the transport failing (before the status line, or mid-body after it).
    if exception is not None and (not status or 200 <= status < 300):
        cls = exception_class(exception)
        return [Outcome(m, False, cls) for _, m in methods]
    parsed: Any = None
    if body:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
    if not 200 <= status < 300:
        error = _rpc_error_of(parsed)
        code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), int) else None
        if status == 429 or code == LIMIT_EXCEEDED:
            cls = "rate_limited"
        elif code is not None:
            cls = "rpc_error"
        else:
            cls = "http_status"
        return [Outcome(m, False, cls, code) for _, m in methods]
    if batch:
        return _classify_batch(methods, parsed)
    ((request_id, method),) = methods
    if not isinstance(parsed, dict) or parsed.get("id") != request_id:
        return [Outcome(method, False, "invalid_response")]
    if "error" in parsed:
        return [_error_outcome(method, parsed["error"])]
    if "result" not in parsed:
        return [Outcome(method, False, "invalid_response")]
    return [Outcome(method, True, result=parsed["result"])]


def _classify_batch(methods: Sequence[tuple[Any, str]], parsed: Any) -> list[Outcome]:
    if isinstance(parsed, dict) and "error" in parsed:  # the whole batch refused
        return [_error_outcome(m, parsed["error"]) for _, m in methods]
    if not isinstance(parsed, list):
        return [Outcome(m, False, "invalid_response") for _, m in methods]
    by_id = {entry.get("id"): (i, entry) for i, entry in enumerate(parsed) if isinstance(entry, dict)}
    outcomes = []
    for request_id, method in methods:
        position, entry = by_id.get(request_id, (None, None))
        if entry is None:
            outcomes.append(Outcome(method, False, "invalid_response"))
        elif "error" in entry:
            outcomes.append(replace(_error_outcome(method, entry["error"]), position=position))
        elif "result" in entry:
            outcomes.append(Outcome(method, True, result=entry["result"], position=position))
        else:
            outcomes.append(Outcome(method, False, "invalid_response", position=position))
    return outcomes


# --- the gateway's routing metadata --------------------------------------------------------------------

NO_VALUE = "-"


def _split(value: str | None) -> list[str | None]:
    if value is None:
        return []
    return [None if part.strip() in ("", NO_VALUE) else part.strip() for part in value.split(",")]


def _attempts(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RoutingMeta:
    """The gateway's routing metadata (`?include_meta=headers`, Lasso's header names): per entry of the
    response (a batch's headers are comma-separated lists in the order of the response array)."""

    providers: tuple[str | None, ...] = ()
    attempts: tuple[int | None, ...] = ()

    def at(self, position: int | None) -> tuple[str | None, int | None]:
        """(provider, attempts) of the response entry at `position` (None: a single response)."""

        def pick(values: tuple[Any, ...]) -> Any:
            if not values:
                return None
            if len(values) == 1:
                return values[0]
            return values[position] if position is not None and 0 <= position < len(values) else None

        return pick(self.providers), pick(self.attempts)


class HeaderSource(Protocol):
    """Response headers with a case-insensitive `get` (geventhttpclient's headers and its responses)."""

    def get(self, key: str, /) -> Any: ...


def read_meta(headers: HeaderSource | None) -> RoutingMeta:
    """Routing metadata from response headers: X-Lasso-Provider / X-Lasso-Attempts, else the base64url
    JSON of X-Lasso-Meta; straight to a mock provider (no gateway), its X-Lab-Provider."""
    if headers is None:
        return RoutingMeta()
    providers = _split(headers.get("x-lasso-provider"))
    attempts = [_attempts(v) for v in _split(headers.get("x-lasso-attempts"))]
    if not providers and (encoded := headers.get("x-lasso-meta")):
        meta = _decode_json(encoded)
        if isinstance(meta, dict):
            selected = meta.get("selected_provider")
            providers = [selected.get("id") if isinstance(selected, dict) else None]
            attempts = attempts or [meta["attempts"] if isinstance(meta.get("attempts"), int) else None]
    if not providers and (direct := headers.get("x-lab-provider")):
        providers = [direct]
    return RoutingMeta(tuple(providers), tuple(attempts))


def _decode_json(value: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
