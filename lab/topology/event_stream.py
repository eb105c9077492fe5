"""The host-side client of the gateway's event stream (`GET /admin/events`, server-sent events; the
gateway's own event bus is `lab.gateway.events`): follow it and wait on it, the lab's TelemetrySync.
A test waits for "the breaker of p1 opened" instead of polling or sleeping:

    with lab.events() as events:
        lab.faults.cut("p1")
        events.wait_for(lambda e: e["type"] == "breaker" and e["provider"] == "p1" and e["to"] == "open")

A background thread reads the stream and reconnects after errors (a restarted gateway) asking for the
events it missed (`?since=<seq>`); waiters block on a condition variable, woken by each event.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import requests

from lab.eventually import EventuallyTimeout

Event = dict[str, Any]


def parse_sse_lines(lines: list[str]) -> Event | None:
    """One server-sent event (its lines, without the blank line) -> the JSON object of its data."""
    data = [line[5:].lstrip() for line in lines if line.startswith("data:")]
    if not data:
        return None  # a comment (keep-alive) or an id-only event
    try:
        event = orjson.loads("\n".join(data))
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


class GatewayEventStream:
    """A live subscription to a gateway's events, kept in arrival order (`events`)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, reconnect_interval: float = 0.2) -> None:
        self.url = url
        self.events: list[Event] = []
        self._connect_timeout = connect_timeout
        self._reconnect_interval = reconnect_interval
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._response: requests.Response | None = None
        self._seen: set[tuple[Any, Any]] = set()
        self._last_seq: int | None = None
        self._last_error: str | None = None
        self._session = requests.Session()
        self._session.trust_env = False
        self._thread = threading.Thread(target=self._run, name="lab-gateway-events", daemon=True)

    def __enter__(self) -> GatewayEventStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> GatewayEventStream:
        """Start following; returns once the gateway has accepted the subscription."""
        self._thread.start()
        if not self._connected.wait(self._connect_timeout):
            self.close()
            raise EventuallyTimeout(f"event stream {self.url}: not connected ({self._last_error})")
        return self

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Wake the reader by shutting its socket down (through a duplicate of the descriptor: the
            # connection object may have dropped its reference). Closing the response here would
            # deadlock on the reader's buffer lock, and a close does not wake a blocked read on Linux.
            with (
                contextlib.suppress(OSError, ValueError),
                socket.socket(fileno=os.dup(response.raw.fileno())) as duplicate,
            ):
                duplicate.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._session.close()

    # --- waiting -----------------------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the stream: `wait_for(..., after=mark)` ignores the events before it."""
        with self._cond:
            return len(self.events)

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, *, after: int = 0, message: str = ""
    ) -> Event:
        """The first event (from position `after`) for which `predicate` holds; waits up to `timeout`."""
        deadline = time.monotonic() + timeout
        position = after
        with self._cond:
            while True:
                while position < len(self.events):
                    event = self.events[position]
                    position += 1
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.get("type") for e in self.events[after:]][-20:]
                    raise EventuallyTimeout(
                        f"{message or 'gateway event'}: none matched within {timeout:.1f}s "
                        f"(event types since the mark: {seen}; stream error: {self._last_error})"
                    )
                self._cond.wait(remaining)

    def matching(self, predicate: Callable[[Event], bool], *, after: int = 0) -> list[Event]:
        with self._cond:
            return [e for e in self.events[after:] if predicate(e)]

    # --- reading -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # the gateway went away (a fault) or the stream was closed
                self._last_error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(self._reconnect_interval)

    def _follow(self) -> None:
        params = {} if self._last_seq is None else {"since": str(self._last_seq)}
        # The read timeout is longer than the gateway's 15 s keep-alive: a silent stream is a dead one.
        with self._session.get(self.url, params=params, stream=True, timeout=(5, 40)) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            self._response = response
            self._connected.set()
            # read1 returns what has arrived (chunked or not); iter_content would wait for a full buffer.
            pending, lines = b"", []
            while not self._stop.is_set():
                data = response.raw.read1(65536)
                if not data:
                    return  # the gateway closed the stream
                pending += data
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
                    if line:
                        lines.append(line)
                        continue
                    event = parse_sse_lines(lines)
                    lines = []
                    if event is not None:
                        self._add(event)

    def _add(self, event: Event) -> None:
        key = (event.get("seq"), event.get("ts"))
        with self._cond:
            if key in self._seen:  # replayed after a reconnect
                return
            self._seen.add(key)
            if isinstance(event.get("seq"), int):
                self._last_seq = event["seq"]
            event.setdefault("received_ts", time.time())
            self.events.append(event)
            self._cond.notify_all()
