"""Provider health the router reads: latency per (transport, method) and each provider's chain head.

Heads come from polling `eth_blockNumber`, from served `eth_blockNumber` answers and from upstream
`newHeads` notifications. Observations of different providers are taken at different instants, so each
head is projected to a common instant with the block time (configured, else measured from the best
head's progress) before comparing: a provider observed 300 ms ago at a 100 ms block time is assumed 3
blocks further. A node that stops advancing shows its true lag at its next observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

LATENCY_EWMA_ALPHA = 0.2

# Methods whose answer depends on the node being at the chain's tip: lagging providers are avoided.
HEAD_SENSITIVE_METHODS = frozenset(
    {
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockReceipts",
        "eth_getBlockTransactionCountByNumber",
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_subscribe",
    }
)


class LatencyStats:
    """Exponentially weighted moving average latency (seconds) of one provider."""

    __slots__ = ("_by_method", "_overall")

    def __init__(self) -> None:
        self._by_method: dict[str, dict[str, float]] = {}
        self._overall: dict[str, float] = {}

    def record(self, transport: str, method: str, seconds: float) -> None:
        methods = self._by_method.get(transport)
        if methods is None:
            methods = self._by_method[transport] = {}
        previous = methods.get(method)
        methods[method] = (
            seconds if previous is None else previous + LATENCY_EWMA_ALPHA * (seconds - previous)
        )
        previous = self._overall.get(transport)
        self._overall[transport] = (
            seconds if previous is None else previous + LATENCY_EWMA_ALPHA * (seconds - previous)
        )

    def forget(self, transport: str) -> None:
        """Drop the transport's averages: they describe a provider that has since changed (a breaker
        closing again), and would keep it last under `fastest` long after it healed."""
        self._by_method.pop(transport, None)
        self._overall.pop(transport, None)

    def get(self, transport: str, method: str) -> float | None:
        """The method's average, else the transport's average over all methods, else None."""
        methods = self._by_method.get(transport)
        if methods is not None:
            value = methods.get(method)
            if value is not None:
                return value
        return self._overall.get(transport)

    def snapshot(self) -> dict[str, Any]:
        return {
            transport: {
                "overall_ms": round(self._overall[transport] * 1000, 3),
                "methods_ms": {m: round(v * 1000, 3) for m, v in sorted(methods.items())},
            }
            for transport, methods in self._by_method.items()
        }


class InFlight:
    """The start times of one provider's attempts still waiting for an answer. A provider whose oldest
    attempt is already older than the slow-call threshold is slow *now*: completed attempts tell it only
    once they complete, up to the full slowness later."""

    __slots__ = ("_clock", "_next", "_started")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0
        self._started: dict[int, float] = {}  # insertion order is start order: the first is the oldest

    def start(self) -> int:
        token = self._next
        self._next += 1
        self._started[token] = self._clock()
        return token

    def end(self, token: int) -> None:
        self._started.pop(token, None)

    def __len__(self) -> int:
        return len(self._started)

    def oldest_age_s(self) -> float:
        """Seconds the oldest attempt in flight has waited (0 when none is)."""
        for started in self._started.values():
            return self._clock() - started
        return 0.0


# on_lag_change(provider_id, lagging, lag_blocks, best_head)
LagListener = Callable[[str, bool, int, int], None]


class HeadTracker:
    """The latest head each provider reported, the best head, and which providers lag behind it."""

    def __init__(
        self,
        provider_ids: Iterable[str],
        max_lag_blocks: int,
        block_time_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_lag_change: LagListener | None = None,
    ) -> None:
        self._heads: dict[str, tuple[int, float]] = {}
        self._provider_ids = tuple(provider_ids)
        self._max_lag = max_lag_blocks
        self._configured_block_time = block_time_s
        self._clock = clock
        self._listener = on_lag_change
        self._first_best: tuple[int, float] | None = None
        self._best: tuple[int, float] | None = None
        self.lagging: frozenset[str] = frozenset()

    def observe(self, provider_id: str, number: int) -> None:
        self.observe_all([(provider_id, number)])

    def observe_all(
        self, observations: Iterable[tuple[str, int]], ages_s: Mapping[str, float] | None = None
    ) -> None:
        """Heads of one poll round, judged together: judged one by one, the first fresh answer would make
        the others' older answers look behind while the block time is still unknown. `ages_s`: how long
        ago each answer arrived (a round ends with its slowest answer; stamping a fast answer with that
        moment would make it look a block behind a slow provider's later one)."""
        now = self._clock()
        for provider_id, number in observations:
            at = now - (ages_s.get(provider_id, 0.0) if ages_s else 0.0)
            self._heads[provider_id] = (number, at)
            if self._best is None or number > self._best[0]:
                self._best = (number, at)
                self._first_best = self._first_best or self._best
        self._reevaluate()

    @property
    def block_time_s(self) -> float | None:
        """The configured block time, else the one seen so far (once the chain advanced 3 blocks)."""
        if self._configured_block_time is not None:
            return self._configured_block_time
        if self._best is None or self._first_best is None or self._best[0] - self._first_best[0] < 3:
            return None
        return (self._best[1] - self._first_best[1]) / (self._best[0] - self._first_best[0])

    def forget(self, provider_id: str) -> None:
        """Drop a provider's head (it serves another chain); the best head is taken from the others."""
        if self._heads.pop(provider_id, None) is None:
            return
        self._best = max(self._heads.values(), default=None, key=lambda entry: entry[0])
        self._first_best = self._first_best if self._best is not None else None
        self._reevaluate()

    def highest_head(self) -> int | None:
        """The highest head any provider reports now (its last observation; no projection)."""
        return max((number for number, _ in self._heads.values()), default=None)

    def head(self, provider_id: str) -> int | None:
        entry = self._heads.get(provider_id)
        return None if entry is None else entry[0]

    def best_head(self) -> int | None:
        """The highest head any provider reported."""
        return None if self._best is None else self._best[0]

    def lag(self, provider_id: str) -> int | None:
        return self._lags().get(provider_id)

    def snapshot(self) -> dict[str, Any]:
        lags = self._lags()
        return {
            pid: {"head": self._heads[pid][0], "lag": lags[pid], "lagging": pid in self.lagging}
            for pid in self._provider_ids
            if pid in self._heads
        }

    def _lags(self) -> dict[str, int]:
        if not self._heads:
            return {}
        block_time, now = self.block_time_s, self._clock()
        projected = {
            pid: number + ((now - observed_at) / block_time if block_time else 0.0)
            for pid, (number, observed_at) in self._heads.items()
        }
        best = max(projected.values())
        return {pid: round(best - value) for pid, value in projected.items()}

    def _reevaluate(self) -> None:
        lags = self._lags()
        lagging = frozenset(pid for pid, lag in lags.items() if lag > self._max_lag)
        if lagging == self.lagging:
            return
        changed = lagging ^ self.lagging
        self.lagging = lagging
        if self._listener is None:
            return
        best = self.best_head() or 0
        for pid in sorted(changed):
            self._listener(pid, pid in lagging, lags.get(pid, 0), best)  # 0: forgotten (another chain)


class HeadPoller:
    """Polls every provider's head at a fixed interval and reports each round's answers together, with
    how long before the round's end each arrived."""

    def __init__(
        self,
        observe: Callable[[list[tuple[str, int]], dict[str, float]], None],
        provider_ids: Iterable[str],
        fetch_head: Callable[[str], Awaitable[int | None]],
        interval_s: float,
    ) -> None:
        self._observe = observe
        self._provider_ids = tuple(provider_ids)
        self._fetch = fetch_head
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self._provider_ids:
            self._task = asyncio.create_task(self._run(), name="head-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        arrived: dict[str, float] = {}

        async def fetch(pid: str) -> int | None:
            try:
                return await self._fetch(pid)
            finally:
                arrived[pid] = loop.time()

        results = await asyncio.gather(*(fetch(pid) for pid in self._provider_ids), return_exceptions=True)
        ended = loop.time()
        answered: list[tuple[str, int]] = []
        for pid, result in zip(self._provider_ids, results, strict=True):
            if isinstance(result, int):
                answered.append((pid, result))
            elif isinstance(result, BaseException):
                log.debug("head poll of %s failed: %r", pid, result)
        if answered:
            self._observe(answered, {pid: ended - arrived[pid] for pid, _ in answered})

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.poll_once()
            next_at += self._interval
            # Poll on a fixed grid; after a stall, skip the missed ticks rather than bursting.
            next_at = max(next_at, loop.time())
            await asyncio.sleep(next_at - loop.time())
