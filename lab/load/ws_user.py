"""Locust's WebSocket subscribers through the gateway: newHeads and logs, every notification recorded
with its arrival time (the `heads` table), subscriptions re-established after any disconnect. Imports
Locust and gevent: only the Locust process imports this (through a locustfile).

On its own:  locust -f locustfiles/ws_user.py -H http://127.0.0.1:4000 -u 2 -r 2
With LAB_LOAD / LAB_LOAD_NEW_HEADS / LAB_LOAD_LOGS set, exactly that many subscribers of each kind run
(Locust's fixed_count); otherwise newHeads subscribers take Locust's user count.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import gevent
from gevent.event import Event
from locust import User, constant, events, task

from lab.load.recorder import install, worker_id
from lab.load.settings import settings_from_env
from lab.load.ws import Kind, Subscription

SETTINGS = settings_from_env()
LOAD = SETTINGS.load
install(events, SETTINGS.run_dir)
# Subscriber counts given: exactly that many of each kind (fixed_count); else newHeads takes every user.
CONFIGURED = any(os.environ.get(name) for name in ("LAB_LOAD", "LAB_LOAD_NEW_HEADS", "LAB_LOAD_LOGS"))
_numbers = itertools.count()


class _Subscriber(User):
    abstract = True
    kind: Kind = "newHeads"
    wait_time = constant(1)

    def on_start(self) -> None:
        self.stop_event = Event()
        self.subscription = Subscription(
            SETTINGS.ws_url_for(self.host),
            self.kind,
            subscriber=f"{worker_id()}-{self.kind}-{next(_numbers)}",
            on_head=self._head,
            on_request=self._request,
            timeout=LOAD.timeout,
        )
        self.receiver = gevent.spawn(self.subscription.run, self.stop_event)

    def on_stop(self) -> None:
        self.stop_event.set()
        self.subscription.close()
        self.receiver.join(timeout=5)

    @task
    def hold(self) -> None:
        """The subscription lives in its receiving greenlet; the user only keeps it company."""

    def _head(self, row: dict[str, Any]) -> None:
        delay_ms = max(0.0, (row["ts"] - row["block_timestamp"]) * 1000) if row["block_timestamp"] else 0.0
        events.request.fire(
            request_type="WS",
            name=self.kind,
            response_time=delay_ms,  # the head's delay behind its block time, in Locust's charts
            response_length=0,
            exception=None,
            context={"head": row},
            start_time=row["ts"],
        )

    def _request(
        self,
        method: str,
        started: float,
        latency_ms: float,
        ok: bool,
        error_class: str | None,
        code: int | None,
    ) -> None:
        events.request.fire(
            request_type="WS",
            name=method,
            response_time=latency_ms,
            response_length=0,
            exception=None
            if ok
            else RuntimeError(error_class if code is None else f"{error_class} ({code})"),
            context={
                "transport": "ws",
                "entries": [{"method": method, "ok": ok, "error_class": error_class, "rpc_code": code}],
            },
            start_time=started,
        )


class NewHeadsSubscriber(_Subscriber):
    kind = "newHeads"
    abstract = CONFIGURED and LOAD.subscribers.new_heads == 0
    fixed_count = LOAD.subscribers.new_heads if CONFIGURED else 0


class LogsSubscriber(_Subscriber):
    kind = "logs"
    abstract = not CONFIGURED or LOAD.subscribers.logs == 0
    fixed_count = LOAD.subscribers.logs
