"""Which upstream answers fail over and which are the caller's own errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from lab.gateway import classify
from lab.gateway.classify import Outcome


def rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, {"jsonrpc": "2.0", "id": 1, "result": "0x1"}, Outcome.SUCCESS, "ok"),
        (200, {"jsonrpc": "2.0", "id": 1, "result": None}, Outcome.SUCCESS, "ok"),
        (200, rpc_error(-32600, "invalid request"), Outcome.CALLER_ERROR, "caller_error"),
        (200, rpc_error(-32601, "the method foo does not exist"), Outcome.CALLER_ERROR, "caller_error"),
        (200, rpc_error(-32602, "invalid argument 0"), Outcome.CALLER_ERROR, "caller_error"),
        (200, rpc_error(3, "execution reverted: nope"), Outcome.CALLER_ERROR, "caller_error"),
        (200, rpc_error(-32000, "execution reverted"), Outcome.CALLER_ERROR, "caller_error"),
        (200, rpc_error(-32005, "request rate exceeded"), Outcome.RETRYABLE, "rate_limited"),
        (200, rpc_error(-32000, "Too Many Requests"), Outcome.RETRYABLE, "rate_limited"),
        (200, rpc_error(-32603, "Internal error"), Outcome.RETRYABLE, "upstream_error"),
        (200, rpc_error(-32000, "header not found"), Outcome.RETRYABLE, "upstream_error"),
        (200, rpc_error(-32700, "parse error"), Outcome.RETRYABLE, "upstream_error"),
        (429, rpc_error(-32005, "request rate exceeded"), Outcome.RETRYABLE, "rate_limited"),
        (500, rpc_error(-32603, "Internal error"), Outcome.RETRYABLE, "server_error"),
        (503, None, Outcome.RETRYABLE, "server_error"),
        (400, rpc_error(-32602, "invalid argument"), Outcome.CALLER_ERROR, "caller_error"),
        (404, None, Outcome.RETRYABLE, "http_404"),
        (200, None, Outcome.RETRYABLE, "bad_response"),
        (200, {"id": 1, "result": "0x1"}, Outcome.RETRYABLE, "bad_response"),
        (200, {"jsonrpc": "2.0", "id": 1}, Outcome.RETRYABLE, "bad_response"),
        (200, [], Outcome.RETRYABLE, "bad_response"),
    ],
)
def test_http_answers(status: int, body: Any, outcome: Outcome, reason: str) -> None:
    verdict = classify.classify_http(status, body)
    assert (verdict.outcome, verdict.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (TimeoutError(), "timeout"),
        (aiohttp.ClientConnectionError("refused"), "connection_error"),
        (ConnectionResetError(), "connection_error"),
        (aiohttp.ServerDisconnectedError(), "connection_error"),
    ],
)
def test_network_errors_fail_over(exc: BaseException, reason: str) -> None:
    verdict = classify.classify_exception(exc)
    assert verdict.retryable and verdict.reason == reason
