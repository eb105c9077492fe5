"""Waiting on the gateway's event stream: SSE parsing, event-driven waits, reconnection with replay."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from lab.eventually import EventuallyTimeout, wait_for_value
from lab.topology.event_stream import GatewayEventStream, parse_sse_lines


class FakeEventServer:
    """Serves `GET /admin/events` as server-sent events with replay (`?since=`), like the gateway.

    `publish()` sends an event to the connected subscriber; `drop()` closes its connection.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.connections: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.connections.append(self.path)
                since = parse_qs(urlparse(self.path).query).get("since")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b": hello\n\n")
                if since is not None:
                    for event in fake.history:
                        if event["seq"] > int(since[0]):
                            self._write(event)
                self.wfile.flush()
                while (event := fake.outbox.get()) is not None:
                    self._write(event)

            def _write(self, event: dict[str, Any]) -> None:
                self.wfile.write(f"id: {event['seq']}\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/admin/events"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def publish(self, type_: str, *, live: bool = True, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "ts": 1.0 + len(self.history), "seq": len(self.history) + 1, **fields}
        self.history.append(event)
        if live:
            self.outbox.put(event)
        return event

    def drop(self) -> None:
        self.outbox.put(None)

    def close(self) -> None:
        self.drop()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeEventServer]:
    fake = FakeEventServer()
    yield fake
    fake.close()


def test_parse_an_event_a_comment_and_garbage():
    assert parse_sse_lines(["id: 3", 'data: {"type": "breaker", "seq": 3}']) == {"type": "breaker", "seq": 3}
    assert parse_sse_lines([": keep-alive"]) is None
    assert parse_sse_lines(["data: not json"]) is None
    assert parse_sse_lines(["data: [1, 2]"]) is None


def test_wait_for_returns_the_matching_event(server: FakeEventServer):
    with GatewayEventStream(server.url) as stream:
        server.publish("failover", provider="p2")
        server.publish("breaker", provider="p1", to="open")
        event = stream.wait_for(lambda e: e["type"] == "breaker", timeout=5)
    assert event["provider"] == "p1" and "received_ts" in event
    assert [e["type"] for e in stream.events] == ["failover", "breaker"]


def test_wait_for_times_out_naming_what_it_saw(server: FakeEventServer):
    with GatewayEventStream(server.url) as stream:
        server.publish("failover")
        stream.wait_for(lambda e: True, timeout=5)
        with pytest.raises(EventuallyTimeout, match=r"breaker open.*\['failover'\]"):
            stream.wait_for(lambda e: e["type"] == "breaker", timeout=0.2, message="breaker open")


def test_marks_ignore_earlier_events(server: FakeEventServer):
    with GatewayEventStream(server.url) as stream:
        server.publish("breaker", to="open")
        stream.wait_for(lambda e: e["type"] == "breaker", timeout=5)
        mark = stream.mark()
        server.publish("breaker", to="closed")
        event = stream.wait_for(lambda e: e["type"] == "breaker", timeout=5, after=mark)
        assert event["to"] == "closed"
        assert len(stream.matching(lambda e: e["type"] == "breaker")) == 2


def test_reconnects_after_the_stream_drops_and_replays_what_it_missed(server: FakeEventServer):
    with GatewayEventStream(server.url, reconnect_interval=0.01) as stream:
        server.publish("a")
        stream.wait_for(lambda e: e["type"] == "a", timeout=5)
        server.drop()
        server.publish("missed", live=False)  # happens while no one is connected
        wait_for_value(lambda: len(server.connections), lambda n: n == 2, timeout=5)
        server.publish("b")
        stream.wait_for(lambda e: e["type"] == "b", timeout=5)
    assert [e["type"] for e in stream.events] == ["a", "missed", "b"]
    assert server.connections[1].endswith("?since=1")


def test_connecting_to_nothing_fails_within_the_timeout():
    stream = GatewayEventStream("http://127.0.0.1:9/admin/events", connect_timeout=0.5)
    with pytest.raises(EventuallyTimeout, match="not connected"):
        stream.start()
