"""What an upstream answer means for routing: a success, the caller's own error, or a provider failure.

- success: a JSON-RPC result.
- caller error: the request itself is wrong (-32600, -32601, -32602, execution reverted, ...); another
  provider would say the same, so it is returned as it is, without retrying, and the provider is healthy.
- provider failure (retryable): connection errors, timeouts, HTTP 5xx and 429, an unusable body,
  rate-limit/capacity errors and any other server-side JSON-RPC error; the request fails over and the
  provider's breaker counts a failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lab import jsonrpc


class Outcome(Enum):
    SUCCESS = "success"
    CALLER_ERROR = "caller_error"
    RETRYABLE = "retryable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An outcome and its reason (a short label used in events, metrics and error data)."""

    outcome: Outcome
    reason: str

    @property
    def retryable(self) -> bool:
        return self.outcome is Outcome.RETRYABLE


SUCCESS = Verdict(Outcome.SUCCESS, "ok")
CALLER_ERROR = Verdict(Outcome.CALLER_ERROR, "caller_error")
TIMEOUT = Verdict(Outcome.RETRYABLE, "timeout")
CONNECTION_ERROR = Verdict(Outcome.RETRYABLE, "connection_error")
RATE_LIMITED = Verdict(Outcome.RETRYABLE, "rate_limited")
SERVER_ERROR = Verdict(Outcome.RETRYABLE, "server_error")
BAD_RESPONSE = Verdict(Outcome.RETRYABLE, "bad_response")
UPSTREAM_ERROR = Verdict(Outcome.RETRYABLE, "upstream_error")

# Messages of -32000-range errors that are about the call, not the node (geth's and others' wording).
_CALLER_MESSAGES = (
    "execution reverted",
    "revert",
    "invalid opcode",
    "out of gas",
    "insufficient funds",
    "nonce too low",
    "nonce too high",
    "already known",
    "intrinsic gas too low",
    "gas required exceeds allowance",
    "invalid argument",
    "invalid params",
)
_RATE_LIMIT_MESSAGES = ("rate limit", "too many requests", "capacity", "exceeded", "throttl", "limit reached")
_RATE_LIMIT_CODES = frozenset({jsonrpc.LIMIT_EXCEEDED, -32029, 429})


def classify_exception(exc: BaseException) -> Verdict:
    """An attempt that raised instead of answering (the caller passes only network-level errors)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TIMEOUT
    return CONNECTION_ERROR


def classify_http(status: int, response: Any) -> Verdict:
    """An HTTP answer: its status and its parsed body (None when the body was not JSON)."""
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return SERVER_ERROR
    if status != 200:
        # A JSON-RPC error body still says what went wrong (some nodes answer 400 for caller errors).
        if isinstance(response, dict) and "error" in response:
            verdict = classify_error(response["error"])
            if not verdict.retryable:
                return verdict
        return Verdict(Outcome.RETRYABLE, f"http_{status}")
    return classify_response(response)


def classify_response(response: Any) -> Verdict:
    """A parsed JSON-RPC response object."""
    if not isinstance(response, dict) or response.get("jsonrpc") != jsonrpc.VERSION:
        return BAD_RESPONSE
    if "result" in response:
        return SUCCESS
    if "error" in response:
        return classify_error(response["error"])
    return BAD_RESPONSE


def classify_error(error: Any) -> Verdict:
    """A JSON-RPC error object from a provider."""
    if not isinstance(error, dict):
        return BAD_RESPONSE
    code = error.get("code")
    message = str(error.get("message", "")).lower()
    if code in jsonrpc.CALLER_ERROR_CODES:
        return CALLER_ERROR
    if code in _RATE_LIMIT_CODES:
        return RATE_LIMITED
    if any(m in message for m in _CALLER_MESSAGES):
        return CALLER_ERROR
    if any(m in message for m in _RATE_LIMIT_MESSAGES):
        return RATE_LIMITED
    # Anything else (internal errors, "header not found", a node that cannot parse valid JSON) is the
    # node's problem: another provider may well answer.
    return UPSTREAM_ERROR
