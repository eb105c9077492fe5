"""Talking to providers: JSON-RPC over HTTP (one pooled keep-alive session for all of them) and over
WebSocket (one shared connection per provider, carrying every subscription the gateway holds there)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from lab import jsonrpc

log = logging.getLogger(__name__)

_HEARTBEAT_S = 10.0  # pings that find a dead TCP connection; silence of a live one is the watchdog's job
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
JSON_HEADERS = {"Content-Type": jsonrpc.JSON_CONTENT_TYPE, "Accept": jsonrpc.JSON_CONTENT_TYPE}


class UpstreamClosed(ConnectionError):
    """The upstream WebSocket connection is gone."""


# Network-level failures of an attempt; anything else escaping an upstream call is a gateway bug.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


def new_session() -> aiohttp.ClientSession:
    """The gateway's one HTTP client session: a keep-alive connection pool per upstream host."""
    connector = aiohttp.TCPConnector(limit=2000, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
    # No session-wide total timeout: every call brings its own (the attempt's share of the deadline).
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
    )


async def http_post(
    session: aiohttp.ClientSession, url: str | URL, body: bytes, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """POST a JSON-RPC payload; the HTTP status and the raw body, or a NETWORK_ERRORS exception."""
    async with asyncio.timeout(timeout_s), session.post(url, data=body, headers=headers) as response:
        return response.status, await response.read()


NotificationHandler = Callable[[Any], None]
LostHandler = Callable[[str], None]


class WsUpstream:
    """One WebSocket connection to a provider: correlated requests and subscription notifications.

    When the connection ends, pending requests fail with UpstreamClosed and every `on_lost` listener is
    called once with the reason; the object is then dead (the pool opens a new one on next use).
    """

    def __init__(self, provider_id: str, url: str, headers: Mapping[str, str]) -> None:
        self.provider_id = provider_id
        self.url = url
        self._headers = dict(headers)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], NotificationHandler | None]] = {}
        self._handlers: dict[str, NotificationHandler] = {}
        self._lost_listeners: list[LostHandler] = []
        self.alive = False
        self.leases = 0  # users of this connection (kept by the pool)

    async def connect(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            self._ws = await session.ws_connect(
                self.url,
                headers=self._headers,
                heartbeat=_HEARTBEAT_S,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=_MAX_MESSAGE_BYTES,
            )
        self.alive = True
        self._reader = asyncio.create_task(self._read(), name=f"ws-upstream-{self.provider_id}")

    def on_lost(self, listener: LostHandler) -> None:
        self._lost_listeners.append(listener)

    def remove_lost_listener(self, listener: LostHandler) -> None:
        with contextlib.suppress(ValueError):
            self._lost_listeners.remove(listener)

    async def subscribe(self, params: list[Any], handler: NotificationHandler, timeout_s: float) -> str:
        """eth_subscribe; `handler(result)` gets every notification, from the first one on."""
        response = await self._call("eth_subscribe", params, timeout_s, handler)
        result, error = response.get("result"), response.get("error")
        if isinstance(result, str):
            return result
        if isinstance(error, dict):
            code = error.get("code")
            message = str(error.get("message", "eth_subscribe failed"))
            raise jsonrpc.JsonRpcError(code if isinstance(code, int) else jsonrpc.SERVER_ERROR, message)
        raise jsonrpc.JsonRpcError(
            jsonrpc.SERVER_ERROR, f"{self.provider_id} answered eth_subscribe with {response}"
        )

    async def unsubscribe(self, subscription_id: str, timeout_s: float) -> None:
        self._handlers.pop(subscription_id, None)
        if self.alive:
            with contextlib.suppress(*NETWORK_ERRORS):
                await self._call("eth_unsubscribe", [subscription_id], timeout_s, None)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _call(
        self, method: str, params: Any, timeout_s: float, handler: NotificationHandler | None
    ) -> dict[str, Any]:
        if not self.alive or self._ws is None:
            raise UpstreamClosed(f"connection to {self.provider_id} is closed")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, handler)
        try:
            await self._ws.send_str(
                orjson.dumps(
                    {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
                ).decode()
            )
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        reason = "closed"
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._dispatch(message.data)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    reason = f"error: {self._ws.exception()!r}"
                    break
            else:
                reason = f"closed by provider (code {self._ws.close_code})"
        except Exception as exc:  # the connection's end, whatever it was, is reported to the listeners
            reason = f"error: {exc!r}"
        finally:
            self.alive = False
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(UpstreamClosed(f"{self.provider_id}: {reason}"))
            self._pending.clear()
            self._handlers.clear()
            listeners, self._lost_listeners = self._lost_listeners, []
            for listener in listeners:
                listener(reason)
            with contextlib.suppress(Exception):
                await self._ws.close()

    def _dispatch(self, data: str | bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("%s sent a message that is not JSON", self.provider_id)
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == "eth_subscription":
            params = message.get("params")
            if isinstance(params, dict):
                handler = self._handlers.get(str(params.get("subscription")))
                if handler is not None:
                    handler(params.get("result"))
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            return
        future, handler = pending
        if handler is not None and isinstance(message.get("result"), str):
            # Registered before the subscriber resumes, so no notification can arrive unhandled.
            self._handlers[str(message["result"])] = handler
        if not future.done():
            future.set_result(message)
