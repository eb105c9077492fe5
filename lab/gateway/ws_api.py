"""JSON-RPC over WebSocket: `/ws/rpc/...`.

Each message is answered in its own task (a slow request does not hold up the others); eth_subscribe
and eth_unsubscribe go to the chain's subscription manager, everything else through the router as over
HTTP. Everything sent to a client goes through a bounded outbox; a client that stops reading is
disconnected rather than allowed to hold memory or slow its subscription's other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from lab import jsonrpc
from lab.gateway import dispatch
from lab.gateway.endpoints import RouteError, Target
from lab.gateway.subscriptions import SubscriptionManager

if TYPE_CHECKING:
    from lab.gateway.app import Gateway

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1000  # requests being answered per connection
OUTBOX_LIMIT = 10_000  # messages waiting to be written to one client
_HEARTBEAT_S = 30.0


class ClientConnection:
    """One client WebSocket: its outbox and writer (a Subscriber for the subscription manager)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(OUTBOX_LIMIT)
        self._writer = asyncio.create_task(self._write_loop())
        self._closing: asyncio.Task[bool] | None = None
        self.closed = False

    def send(self, payload: bytes) -> None:
        if self.closed:
            return
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("closing a WebSocket client that does not read (outbox full)")
            self.closed = True
            self._closing = asyncio.create_task(
                self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
            )

    async def close(self) -> None:
        self.closed = True
        self._writer.cancel()
        await asyncio.gather(
            self._writer, *([self._closing] if self._closing else []), return_exceptions=True
        )

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                payload = await self._outbox.get()
                await self.ws.send_frame(payload, WSMsgType.TEXT)
        self.closed = True


class WsRpc:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            target = self.gateway.endpoints.resolve(request.match_info["tail"])
        except RouteError as exc:
            return web.json_response(exc.body, status=exc.status, dumps=lambda o: orjson.dumps(o).decode())
        ws = web.WebSocketResponse(heartbeat=_HEARTBEAT_S, max_msg_size=target.chain.policy.max_body_bytes)
        await ws.prepare(request)
        client = ClientConnection(ws)
        manager = self.gateway.subscriptions[target.chain]
        session_call = _session_call(manager, client, target)
        tasks: set[asyncio.Task[None]] = set()
        metrics = self.gateway.metrics
        metrics.ws_clients.inc()
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break  # an ERROR message: the socket is done
                if len(tasks) >= MAX_IN_FLIGHT:
                    error = jsonrpc.error(
                        None, jsonrpc.LIMIT_EXCEEDED, f"more than {MAX_IN_FLIGHT} requests in flight"
                    )
                    client.send(orjson.dumps(error))
                    continue
                task = asyncio.create_task(self._answer(target, client, session_call, message.data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            metrics.ws_clients.dec()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await manager.drop(client)
            await client.close()
        return ws

    async def _answer(
        self, target: Target, client: ClientConnection, session_call: dispatch.SessionCall, data: str | bytes
    ) -> None:
        parsed = jsonrpc.parse(data)
        answer = await dispatch.answer(self.gateway.router, target, parsed, "ws", session_call)
        if answer.body is not None:
            client.send(orjson.dumps(answer.body))


def _session_call(
    manager: SubscriptionManager, client: ClientConnection, target: Target
) -> dispatch.SessionCall:
    async def call(request: jsonrpc.Request) -> dict[str, Any]:
        try:
            if request.method == "eth_subscribe":
                subscription_id = await manager.subscribe(
                    client, request.params, target.strategy, target.provider
                )
                return jsonrpc.result(request.id, subscription_id)
            params = request.params
            if not isinstance(params, list) or len(params) != 1:
                raise jsonrpc.JsonRpcError(jsonrpc.INVALID_PARAMS, "eth_unsubscribe takes [subscription id]")
            return jsonrpc.result(request.id, await manager.unsubscribe(client, params[0]))
        except jsonrpc.JsonRpcError as exc:
            return jsonrpc.error_from(request.id, exc)

    return call
