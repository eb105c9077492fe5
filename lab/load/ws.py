"""A WebSocket subscription kept alive across disconnects (websocket-client; cooperative under Locust's
gevent, plain blocking in a thread elsewhere). Every notification becomes a head record with its arrival
time; every subscribe attempt is reported as a request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import orjson
import websocket

from lab.jsonrpc import quantity
from lab.load.rpc import classify, exception_class

Kind = Literal["newHeads", "logs"]
HeadCallback = Callable[[dict[str, Any]], None]
# (method, start_time, latency_ms, ok, error_class, rpc_code)
RequestCallback = Callable[[str, float, float, bool, str | None, int | None], None]


class Stopper(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def head_row(kind: Kind, subscriber: str, result: Any, arrived: float) -> dict[str, Any] | None:
    """A `heads` row from a notification's result (a block header, or a log for `logs`)."""
    if not isinstance(result, dict):
        return None
    if kind == "newHeads":
        number, block_hash, parent = result.get("number"), result.get("hash"), result.get("parentHash")
        timestamp = result.get("timestamp")
    else:
        number, block_hash, parent = result.get("blockNumber"), result.get("blockHash"), None
        timestamp = result.get("blockTimestamp")
    return {
        "ts": arrived,
        "subscriber": subscriber,
        "subscription": kind,
        "block_number": quantity(number),
        "block_hash": block_hash if isinstance(block_hash, str) else None,
        "parent_hash": parent if isinstance(parent, str) else None,
        "block_timestamp": quantity(timestamp),
        "provider": None,
    }


class Subscription:
    """Holds one `eth_subscribe` on `url`, resubscribing after any failure, until stopped."""

    def __init__(
        self,
        url: str,
        kind: Kind,
        *,
        subscriber: str,
        on_head: HeadCallback,
        on_request: RequestCallback,
        timeout: float = 5.0,
        silence_timeout: float = 30.0,
        logs_filter: dict[str, Any] | None = None,
        max_backoff: float = 2.0,
    ) -> None:
        self.url = url
        self.kind = kind
        self.subscriber = subscriber
        self.on_head = on_head
        self.on_request = on_request
        self.timeout = timeout
        self.silence_timeout = silence_timeout
        self.logs_filter = logs_filter or {}
        self.max_backoff = max_backoff
        self.connections = 0
        self.notifications = 0
        self._ws: websocket.WebSocket | None = None
        self._subscription_id: str | None = None

    def run(self, stop: Stopper) -> None:
        """Subscribe, receive, and on any failure resubscribe with a bounded backoff, until `stop`."""
        backoff = 0.1
        while not stop.is_set():
            if self._subscribe():
                backoff = 0.1
                self._receive(stop)
            if stop.wait(backoff):
                return
            backoff = min(self.max_backoff, backoff * 2)

    def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to close
                ws.close(timeout=1)

    def _subscribe(self) -> bool:
        params: list[Any] = [self.kind] + ([self.logs_filter] if self.kind == "logs" else [])
        request_id = self.connections + 1
        started, t0 = time.time(), time.perf_counter()
        try:
            self._ws = websocket.create_connection(self.url, timeout=self.timeout, enable_multithread=True)
            self._ws.send(
                orjson.dumps(
                    {"jsonrpc": "2.0", "id": request_id, "method": "eth_subscribe", "params": params}
                )
            )
            while True:  # notifications of an earlier subscription may come first
                answer = orjson.loads(self._ws.recv())
                if isinstance(answer, dict) and answer.get("id") == request_id:
                    break
        except Exception as exc:
            self.on_request("eth_subscribe", started, _ms(t0), False, _failure_class(exc), None)
            self.close()
            return False
        outcome = classify([(request_id, "eth_subscribe")], 200, orjson.dumps(answer))[0]
        self.on_request("eth_subscribe", started, _ms(t0), outcome.ok, outcome.error_class, outcome.rpc_code)
        if not outcome.ok or not isinstance(outcome.result, str):
            self.close()
            return False
        self.connections += 1
        self._subscription_id = outcome.result
        return True

    def _receive(self, stop: Stopper) -> None:
        ws = self._ws
        if ws is None:
            return
        ws.settimeout(self.silence_timeout)  # a silent upstream is a dead one: resubscribe
        while not stop.is_set():
            try:
                message = ws.recv()
            except Exception:
                break
            if not message:
                break
            arrived = time.time()
            try:
                data = orjson.loads(message)
            except orjson.JSONDecodeError:
                continue
            params = data.get("params") if isinstance(data, dict) else None
            if not isinstance(params, dict) or params.get("subscription") != self._subscription_id:
                continue
            row = head_row(self.kind, self.subscriber, params.get("result"), arrived)
            if row is not None:
                self.notifications += 1
                self.on_head(row)
        self.close()


def _failure_class(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)  # the upgrade was answered with an HTTP error
    if isinstance(status, int):
        return "rate_limited" if status == 429 else "http_status"
    return exception_class(exc)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
