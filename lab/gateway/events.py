"""The gateway's event stream: breaker transitions, failovers, subscription recoveries, lag changes.

Events are JSON objects with at least `type`, `ts` (unix seconds) and `seq` (1, 2, ... per process).
`GET /admin/events` streams them as server-sent events (`id: <seq>` and one `data:` line each). The last
events are kept, so a client can replay what it missed with `?since=<seq>` or a `Last-Event-ID` header
(`?since=0` replays everything still kept); `?types=a,b` filters by type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("lab.gateway.events")

# Event types (the `type` field).
BREAKER = "breaker"  # profile, chain, provider, transport, from, to, reason
FAILOVER = "failover"  # profile, chain, method, from, to, reason
PROVIDER_LAG_EXCLUDED = "provider_lag_excluded"  # profile, chain, provider, lag, best_head
PROVIDER_LAG_INCLUDED = "provider_lag_included"  # profile, chain, provider, lag, best_head
PROVIDER_CHAIN_MISMATCH = "provider_chain_mismatch"  # profile, chain, provider, expected, got (kept out)
PROVIDER_CHAIN_VERIFIED = "provider_chain_verified"  # profile, chain, provider (back on this chain)
SUBSCRIBED = "subscribed"  # profile, chain, kind, provider, subscription (an upstream subscription began)
UPSTREAM_SILENT = "upstream_silent"  # profile, chain, kind, provider, silent_s
UPSTREAM_LOST = "upstream_lost"  # profile, chain, kind, provider, reason (connection or subscription lost)
RESUBSCRIBED = "resubscribed"  # profile, chain, kind, from, to, reason
GAP_FILLED = "gap_filled"  # profile, chain, kind, provider, from_block, to_block, blocks, truncated/logs
GAP_FILL_FAILED = "gap_fill_failed"  # profile, chain, kind, provider, from_block, to_block, reason

_KEEPALIVE_S = 15.0


class EventBus:
    """In-process publish/subscribe with a bounded history for replay."""

    def __init__(self, history: int = 5000, clock: Callable[[], float] = time.time) -> None:
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._subscribers: set[_Subscriber] = set()
        self._clock = clock
        self._seq = 0

    def publish(self, type_: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"type": type_, "ts": self._clock(), "seq": self._seq, **fields}
        self._history.append(event)
        log.info("%s", orjson.dumps(event).decode())
        for subscriber in self._subscribers:
            subscriber.offer(event)
        return event

    def history(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self._history if e["seq"] > since]

    @contextlib.contextmanager
    def subscribe(self, since: int | None = None, max_queue: int = 10_000) -> Iterator[_Subscriber]:
        """A live subscription, first replaying kept events with seq > since (when since is given)."""
        subscriber = _Subscriber(max_queue)
        if since is not None:
            for event in self.history(since):
                subscriber.offer(event)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)


class _Subscriber:
    def __init__(self, max_queue: int) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


async def sse_handler(request: web.Request, bus: EventBus) -> web.StreamResponse:
    since_text = request.query.get("since") or request.headers.get("Last-Event-ID")
    try:
        since = int(since_text) if since_text is not None else None
    except ValueError:
        raise web.HTTPBadRequest(text="since must be an integer event seq") from None
    types = frozenset(t for t in request.query.get("types", "").split(",") if t)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    # Subscribe before the headers go out: a client that has seen them must not miss what follows.
    with bus.subscribe(since) as subscriber, contextlib.suppress(ConnectionError):  # the reader left
        await response.prepare(request)
        while not subscriber.overflowed:
            event = await subscriber.get(_KEEPALIVE_S)
            if event is None:
                await response.write(b": keepalive\n\n")
            elif not types or event["type"] in types:
                await response.write(b"id: %d\ndata: %s\n\n" % (event["seq"], orjson.dumps(event)))
        # A reader too slow to keep up is cut off rather than allowed to hold unbounded memory.
        overflow = orjson.dumps({"type": "overflow", "ts": time.time()})
        await response.write(b"event: overflow\ndata: %s\n\n" % overflow)
    return response
