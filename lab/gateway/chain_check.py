"""Chain id verification (`chain_id_check`): every provider's eth_chainId, at start and then every
`chain_check_interval_s` (providers not verified yet: every head poll interval), so that a provider
serving another chain (a misconfigured upstream) is kept out of routing, subscriptions and head tracking.

eRPC does the same at start-up (a mismatch with a configured chain id is fatal there); here a mismatch
only excludes the provider, and a provider that later answers the right id is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from lab.gateway.runtime import ChainRuntime

log = logging.getLogger(__name__)

FetchChainId = Callable[[ChainRuntime, str], Awaitable[int | None]]


class ChainIdChecker:
    def __init__(self, chain: ChainRuntime, fetch: FetchChainId, clock: Callable[[], float] = time.monotonic):
        self.chain = chain
        self._fetch = fetch
        self._clock = clock
        self._checked_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def check_due(self) -> None:
        """Ask the providers whose check is due (all of them the first time), together."""
        chain, now = self.chain, self._clock()
        interval = chain.policy.chain_check_interval_s
        due = [
            p.id
            for p in chain.http_providers
            if p.id in chain.unverified
            or p.id in chain.wrong_chain
            or now - self._checked_at.get(p.id, -interval) >= interval
        ]
        if not due:
            return
        results = await asyncio.gather(*(self._fetch(chain, pid) for pid in due), return_exceptions=True)
        for pid, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("chain id check of %s failed: %r", pid, result)
                continue
            if result is not None:
                self._checked_at[pid] = now
            chain.chain_checked(pid, result)

    def start(self) -> None:
        if self._task is None and self.chain.http_providers:
            self._task = asyncio.create_task(self._run(), name=f"chain-id-check-{self.chain.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        policy = self.chain.policy
        tick = min(policy.head_poll_interval_s, policy.chain_check_interval_s)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.check_due()
            except Exception:  # a bug here must not end the checks for good
                log.exception("chain id check of %s", self.chain.name)
