"""The provider's WebSocket side: one `WsSession` per connection (requests, subscriptions, a bounded
outbox) and the `HeadFeed` that pushes every new block to the subscribers.

Each incoming message is answered in its own task, as a real node does, so a slow answer does not hold
up the others. Everything a session sends goes through its outbox; a client that stops reading fills it
and is dropped instead of holding up the feed for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from lab.jsonrpc import LIMIT_EXCEEDED, JsonRpcError
from lab.provider import params as p
from lab.provider.policy import Action

if TYPE_CHECKING:
    from lab.provider.chain import Chain
    from lab.provider.server import ProviderServer

log = logging.getLogger("lab.provider")

SESSION_METHODS = frozenset({"eth_subscribe", "eth_unsubscribe"})
MAX_CATCHUP_BLOCKS = 128  # after a stall, push at most this many missed heads
MAX_SUBSCRIPTIONS = 1000  # per connection
MAX_IN_FLIGHT = 1000  # requests being answered per connection

_NOTIFY_HEAD = b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"'
_NOTIFY_RESULT = b'","result":'
_NOTIFY_TAIL = b"}}"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    logs: p.LogFilter | None  # None: newHeads

    def notification(self, result_json: bytes) -> bytes:
        return _NOTIFY_HEAD + self.id.encode() + _NOTIFY_RESULT + result_json + _NOTIFY_TAIL


class WsSession:
    def __init__(
        self,
        server: ProviderServer,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,  # aiohttp's request.transport
    ) -> None:
        self.server = server
        self.ws = ws
        self.transport = transport
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=server.settings.ws_send_queue)
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def run(self) -> None:
        stats = self.server.stats
        self.server.sessions.add(self)
        stats.ws_connections += 1
        writer = asyncio.create_task(self._write_loop())
        try:
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._start(message.data)
                else:  # an ERROR message (a protocol violation, an oversize frame): the socket is done
                    break
        finally:
            self.closed = True
            self.server.sessions.discard(self)
            stats.ws_connections -= 1
            stats.ws_subscriptions -= len(self.subscriptions)
            self.subscriptions.clear()
            pending = [writer, *self.tasks]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _start(self, payload: bytes) -> None:
        if len(self.tasks) >= MAX_IN_FLIGHT:
            error = JsonRpcError(LIMIT_EXCEEDED, f"more than {MAX_IN_FLIGHT} requests in flight").to_dict()
            self.send(orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error}))
            return
        task = asyncio.create_task(self._answer(payload))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, payload: bytes) -> None:
        response, outcomes = await self.server.answer_payload(payload, "ws", self)
        if any(outcome.action is Action.DROP for outcome in outcomes):
            self.drop()
        elif response is not None:
            self.send(orjson.dumps(response))

    def call(self, method: str, params: Any) -> Any:
        """eth_subscribe / eth_unsubscribe, which only make sense on a connection."""
        stats = self.server.stats
        if method == "eth_unsubscribe":
            (sub_id,) = p.positional(params, 1, 1)
            removed = self.subscriptions.pop(sub_id, None) if isinstance(sub_id, str) else None
            stats.ws_subscriptions -= removed is not None
            return removed is not None
        kind, options = p.positional(params, 1, 2)
        if kind == "newHeads":
            log_filter = None
        elif kind == "logs":
            log_filter = p.log_filter(options, 1)
        else:
            raise p.invalid(0, f"unsupported subscription {kind!r} (this node has newHeads and logs)")
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise JsonRpcError(LIMIT_EXCEEDED, f"too many subscriptions (at most {MAX_SUBSCRIPTIONS})")
        sub = Subscription("0x" + secrets.token_hex(16), log_filter)
        self.subscriptions[sub.id] = sub
        stats.ws_subscriptions += 1
        return sub.id

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(data)
        except asyncio.QueueFull:
            self.server.stats.slow_consumers_dropped += 1
            log.warning("dropping a WebSocket client that does not read (outbox full)")
            self.drop()

    def drop(self) -> None:
        """Cut the connection without a close frame, as a crashed node or a broken network does."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        self.closed = True
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"provider shutting down")

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                data = await self.outbox.get()
                await self.ws.send_frame(data, WSMsgType.TEXT)
        self.drop()  # a failed write: the client is gone


class HeadFeed:
    """Pushes each new block to subscribers, as the behaviour in force allows: with its lag, not at all
    while it fails or times out (heads stall), or by dropping every socket."""

    def __init__(self, server: ProviderServer) -> None:
        self.server = server
        self.last_head: int | None = None
        self.last_pushed: int | None = None
        self.last_chain: Chain | None = None  # the chain last pushed from (another one under wrong_chain)

    def tick(self) -> None:
        server = self.server
        now = server.clock()
        head = server.chain.head_at(now)
        if head == self.last_head:
            return
        self.last_head = head
        outcome = server.probe("eth_subscription", now, "ws")
        if outcome.action is Action.DROP:
            for session in list(server.sessions):
                session.drop()
            return
        if outcome.action is not Action.SERVE:
            return
        chain = outcome.chain or server.chain
        if chain is not self.last_chain:  # switched chains: its own numbering from its current head
            self.last_chain, self.last_pushed = chain, None
        served = max(0, chain.head_at(now) - outcome.lag)
        first = served if self.last_pushed is None else self.last_pushed + 1
        for number in range(max(first, served - MAX_CATCHUP_BLOCKS + 1), served + 1):
            self.publish(number, chain)
        if self.last_pushed is None or served > self.last_pushed:
            self.last_pushed = served

    def reorged(self, fork_block: int) -> None:
        """After a reorg: push the new branch's blocks from the fork up to the last head pushed, as a
        node does when it switches branches (subscribers see each replaced number again, new hashes)."""
        last = self.last_pushed
        if last is None or fork_block > last:
            return
        if self.server.probe("eth_subscription", self.server.clock(), "ws").action is not Action.SERVE:
            return  # heads are stalled or failing: the new branch shows when they resume
        for number in range(max(fork_block, last - MAX_CATCHUP_BLOCKS + 1), last + 1):
            self.publish(number)

    def publish(self, number: int, chain: Chain | None = None) -> None:
        chain, stats = chain or self.server.chain, self.server.stats
        for session in list(self.server.sessions):
            for sub in list(session.subscriptions.values()):
                if sub.logs is None:
                    session.send(sub.notification(chain.header_json(number)))
                    stats.notifications += 1
                    continue
                for log_entry in chain.logs(number):
                    if sub.logs.matches(log_entry):
                        session.send(sub.notification(orjson.dumps(log_entry)))
                        stats.notifications += 1

    async def run(self) -> None:
        chain, clock = self.server.chain, self.server.clock
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not stop the heads for good
                log.exception("head feed tick failed")
            now = clock()
            next_block_at = chain.time_of(chain.head_at(now) + 1)
            await asyncio.sleep(max(next_block_at - now, 0.001))
