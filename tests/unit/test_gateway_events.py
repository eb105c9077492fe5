"""The event bus and its server-sent-event stream: replay with since / Last-Event-ID, type filters,
live delivery, bad parameters, and the cut-off of a reader that falls behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lab.gateway.events import BREAKER, FAILOVER, EventBus, sse_handler


def _with_client(bus: EventBus, body: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async def events(request: web.Request) -> web.StreamResponse:
            return await sse_handler(request, bus)

        app = web.Application()
        app.router.add_get("/admin/events", events)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await body(client)

    asyncio.run(main())


async def _read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` SSE events (the `id:` line must match the event's seq)."""
    events: list[dict[str, Any]] = []
    event_id: int | None = None
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 5.0)).decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            event = orjson.loads(line[6:])
            assert event.get("seq") == event_id or event["type"] == "overflow"
            events.append(event)
    return events


def test_history_replays_after_a_seq_and_publish_numbers_events() -> None:
    bus = EventBus(history=3, clock=lambda: 12.5)
    for n in range(5):
        bus.publish(FAILOVER, n=n)
    assert [e["seq"] for e in bus.history()] == [3, 4, 5]  # only the last 3 kept
    assert [e["n"] for e in bus.history(since=4)] == [4]
    assert bus.history()[0] == {"type": FAILOVER, "ts": 12.5, "seq": 3, "n": 2}


def test_the_stream_replays_filters_and_then_delivers_live_events() -> None:
    bus = EventBus()
    bus.publish(BREAKER, provider="a")
    bus.publish(FAILOVER, provider="a")
    bus.publish(BREAKER, provider="b")

    async def body(client: TestClient) -> None:
        response = await client.get("/admin/events", params={"since": "1", "types": BREAKER})
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        assert [(e["seq"], e["provider"]) for e in await _read_events(response, 1)] == [(3, "b")]
        bus.publish(FAILOVER, provider="c")  # filtered out
        bus.publish(BREAKER, provider="d")
        assert [(e["seq"], e["provider"]) for e in await _read_events(response, 1)] == [(5, "d")]
        response.close()

    _with_client(bus, body)


def test_last_event_id_resumes_and_no_since_means_live_only() -> None:
    bus = EventBus()
    for name in "abc":
        bus.publish(FAILOVER, provider=name)

    async def body(client: TestClient) -> None:
        resumed = await client.get("/admin/events", headers={"Last-Event-ID": "2"})
        assert [e["provider"] for e in await _read_events(resumed, 1)] == ["c"]
        live = await client.get("/admin/events")
        bus.publish(FAILOVER, provider="d")
        assert [e["provider"] for e in await _read_events(live, 1)] == ["d"]
        assert [e["provider"] for e in await _read_events(resumed, 1)] == ["d"]
        resumed.close()
        live.close()

    _with_client(bus, body)


def test_a_bad_since_is_a_400() -> None:
    async def body(client: TestClient) -> None:
        response = await client.get("/admin/events", params={"since": "x"})
        assert response.status == 400 and "since" in await response.text()

    _with_client(EventBus(), body)


def test_a_reader_that_falls_behind_gets_an_overflow_event_and_is_cut_off() -> None:
    bus = EventBus(history=10_001)
    for n in range(10_001):  # one more than a reader may have queued: the replay alone overflows it
        bus.publish(FAILOVER, n=n)

    async def body(client: TestClient) -> None:
        response = await client.get("/admin/events", params={"since": "0"})
        assert [e["type"] for e in await _read_events(response, 1)] == ["overflow"]
        rest = await asyncio.wait_for(response.content.read(), 5.0)  # returns only at the stream's end
        assert rest.strip() == b""

    _with_client(bus, body)
