"""Counters of what a provider served, with bounded memory, for `GET /_lab/stats`.

Outcome labels: `ok` (a result), `error` (an error the node itself gave: invalid request, bad params,
unknown method, header not found, range too large), and the injected ones: `failed`, `rate_limited`,
`timeout`, `dropped`.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

UNKNOWN_METHOD = "(unknown)"  # methods the node does not have, folded so garbage cannot grow the table
INVALID_REQUEST = "(invalid)"  # payloads that are not valid JSON-RPC requests


class Stats:
    def __init__(self, bucket_seconds: int = 600) -> None:
        self.by_method_outcome: Counter[tuple[str, str]] = Counter()
        self._buckets: deque[list[int]] = deque(maxlen=bucket_seconds)  # [unix second, requests, ok]
        self._current: list[int] = [-1, 0, 0]
        self.in_flight = 0  # requests waiting: a behaviour's delay or hold, a scan off the event loop
        self.ws_connections = 0
        self.ws_subscriptions = 0
        self.notifications = 0
        self.slow_consumers_dropped = 0

    def record(self, method: str, outcome: str, now: float) -> None:
        self.by_method_outcome[method, outcome] += 1
        current = self._current
        second = int(now)
        if second != current[0]:
            if current[0] >= 0:
                self._buckets.append(current)
            current = self._current = [second, 0, 0]
        current[1] += 1
        if outcome == "ok":
            current[2] += 1

    def reset(self) -> None:
        self.by_method_outcome.clear()
        self._buckets.clear()
        self._current = [-1, 0, 0]
        self.notifications = 0
        self.slow_consumers_dropped = 0

    def snapshot(self) -> dict[str, Any]:
        by_method: dict[str, dict[str, int]] = {}
        by_outcome: Counter[str] = Counter()
        for (method, outcome), count in sorted(self.by_method_outcome.items()):
            by_method.setdefault(method, {})[outcome] = count
            by_outcome[outcome] += count
        buckets = [*self._buckets, self._current] if self._current[0] >= 0 else list(self._buckets)
        return {
            "requests": {
                "total": sum(by_outcome.values()),
                "in_flight": self.in_flight,
                "by_outcome": dict(sorted(by_outcome.items())),
                "by_method": by_method,
            },
            "served_per_second": [{"t": t, "requests": n, "ok": ok} for t, n, ok in buckets],
            "ws": {
                "connections": self.ws_connections,
                "subscriptions": self.ws_subscriptions,
                "notifications_sent": self.notifications,
                "slow_consumers_dropped": self.slow_consumers_dropped,
            },
        }
