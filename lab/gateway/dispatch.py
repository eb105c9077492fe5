"""Answering a JSON-RPC payload (one request or a batch) for a route target, over HTTP or WebSocket.

Every entry of a batch is routed on its own, concurrently, and answered in request order: a batch never
loses an entry's answer. Entries that are invalid get their -32600 in place; notifications get none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lab import jsonrpc
from lab.gateway.endpoints import Target
from lab.gateway.router import Routed, Router

SESSION_METHODS = frozenset({"eth_subscribe", "eth_unsubscribe"})

# Answers eth_subscribe / eth_unsubscribe: on a WebSocket connection, the subscription manager; over
# HTTP, an error pointing to the WebSocket endpoint.
SessionCall = Callable[[jsonrpc.Request], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class Answer:
    body: Any  # the response object, the list of them (batch), or None when there is nothing to send
    # How each answer in `body` was routed (None: answered without routing), in the same order; for a
    # batch, entries without an answer (notifications) are left out, so the lists line up.
    routed: list[Routed | None]


async def answer(
    router: Router, target: Target, parsed: jsonrpc.Parsed, transport: str, session_call: SessionCall
) -> Answer:
    if parsed.error is not None:
        return Answer(parsed.error, [None])
    chain = target.chain
    if parsed.is_batch and len(parsed.items) > chain.policy.max_batch_size:
        body = jsonrpc.error(
            None,
            jsonrpc.INVALID_REQUEST,
            "Invalid Request: batch too large",
            {"max_batch_size": chain.policy.max_batch_size, "entries": len(parsed.items)},
        )
        return Answer(body, [None])
    deadline = time.perf_counter() + chain.policy.deadline_s
    if not parsed.is_batch:
        response, routed = await _answer_one(
            router, target, parsed.items[0], transport, session_call, deadline
        )
        return Answer(response, [routed])
    results = await asyncio.gather(
        *(_answer_one(router, target, item, transport, session_call, deadline) for item in parsed.items)
    )
    answered = [(response, routed) for response, routed in results if response is not None]
    return Answer([response for response, _ in answered] or None, [routed for _, routed in answered])


async def _answer_one(
    router: Router,
    target: Target,
    item: jsonrpc.Request | dict[str, Any],
    transport: str,
    session_call: SessionCall,
    deadline: float,
) -> tuple[dict[str, Any] | None, Routed | None]:
    if isinstance(item, dict):
        return item, None  # invalid entry: its error is already decided
    chain = target.chain
    started = time.perf_counter()
    routed: Routed | None = None
    if item.method in SESSION_METHODS:
        response = await session_call(item)
        outcome = "error" if "error" in response else "success"
    else:
        routed = await router.execute(chain, item, target.strategy, target.provider, deadline)
        response, outcome = routed.response, routed.outcome
    chain.metrics.request(transport, item.method, outcome, time.perf_counter() - started)
    return (None if item.is_notification else response), routed


def http_session_call(target: Target) -> SessionCall:
    """Subscriptions over HTTP are refused with the WebSocket URL to use instead (as Lasso does)."""

    async def refuse(request: jsonrpc.Request) -> dict[str, Any]:
        return jsonrpc.error(
            request.id,
            jsonrpc.METHOD_NOT_FOUND,
            "Method not supported over HTTP. Use WebSocket connection for subscriptions.",
            {"websocket_url": f"/ws/rpc/profile/{target.chain.profile}/{target.chain.name}"},
        )

    return refuse
