"""JSON-RPC over HTTP POST: `/rpc/...`.

Statuses: 200 for every JSON-RPC answer, errors included (parse errors, invalid requests, upstream
failures); 204 when a payload holds only notifications; 404 for an unknown profile or chain and 400 for
an unknown provider or strategy (JSON-RPC -32602 bodies naming what is configured); 413 for a body over
the profile's `max_body_bytes` (a -32600 body).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from lab import jsonrpc
from lab.gateway import dispatch, meta
from lab.gateway.endpoints import RouteError, Target

if TYPE_CHECKING:
    from lab.gateway.app import Gateway
    from lab.gateway.router import Routed


class HttpRpc:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        meta_mode = meta.requested(request)
        try:
            target = self.gateway.endpoints.resolve(request.match_info["tail"])
        except RouteError as exc:
            return _respond(exc.body, exc.status, meta_mode, None, [None], started)
        limit = target.chain.policy.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _too_large(limit, meta_mode, target, started)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large(limit, meta_mode, target, started)
        if len(body) > limit:
            return _too_large(limit, meta_mode, target, started)
        if target.chain.policy.test_leak_bytes_per_request:
            # the planted leak (test only): filled, not calloc'ed, so the pages count in the RSS
            self.gateway.leaked.append(b"L" * target.chain.policy.test_leak_bytes_per_request)
        parsed = jsonrpc.parse(body)
        answer = await dispatch.answer(
            self.gateway.router, target, parsed, "http", dispatch.http_session_call(target)
        )
        if answer.body is None:
            return _respond(None, 204, meta_mode, target, answer.routed, started, parsed.is_batch)
        return _respond(answer.body, 200, meta_mode, target, answer.routed, started, parsed.is_batch)


def _too_large(limit: int, meta_mode: str | None, target: Target, started: float) -> web.Response:
    body = jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Request body too large", {"max_body_bytes": limit})
    return _respond(body, 413, meta_mode, target, [None], started)


def _respond(
    body: Any,
    status: int,
    meta_mode: str | None,
    target: Target | None,
    routed: list[Routed | None],
    started: float,
    is_batch: bool = False,
) -> web.Response:
    headers = None
    if meta_mode is not None:
        info = meta.build(target, routed, is_batch, started)
        if meta_mode == "headers":
            headers = meta.headers(info, routed)
        else:
            body = meta.add_to_body(body, info)
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=jsonrpc.JSON_CONTENT_TYPE, headers=headers
    )
