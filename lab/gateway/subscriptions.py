"""WebSocket subscriptions (`newHeads`, `logs`), multiplexed and recovered without gaps.

Client subscriptions with the same kind, filter and provider override share one upstream subscription
(a "group"). Each group runs one task that handles its upstream notifications in order:

- newHeads: a head at or below the last delivered number is a duplicate and dropped, unless it is a
  reorg: a new hash at a delivered number whose parent is the head delivered just below it; that head
  is delivered and the new branch continues from it (clients see the reorg, as from a node). A head
  more than one above the last opens a gap, which is filled over HTTP (eth_getBlockByNumber, first from
  the provider that announced the head) before the head itself is delivered. So clients see every block
  once, in order (a reorg's new branch once more), whatever happens upstream.
- logs: delivered in (block, log index) order, duplicates dropped. The group also holds a newHeads
  subscription on the same connection as a heartbeat, and after a resubscribe it re-reads the logs of
  the blocks it may have missed with eth_getLogs.

When the upstream connection is lost, or no notification arrived for the silence timeout, the group
resubscribes on another provider (its own strategy; the same provider again for an override, which
never fails over), then fills the gap. With gap filling off, the gap is left for clients to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import orjson

from lab import jsonrpc
from lab.gateway import events as ev
from lab.gateway.config import Strategy
from lab.gateway.router import Router
from lab.gateway.runtime import ChainRuntime, ProviderRuntime
from lab.gateway.strategies import rank
from lab.gateway.upstream import NETWORK_ERRORS, WsUpstream

log = logging.getLogger(__name__)

KINDS = ("newHeads", "logs")
_BODY_FIELDS = frozenset({"transactions", "uncles", "size", "withdrawals", "totalDifficulty"})
# Gap filling's block fetches in flight at once. They all go to the provider the subscription just moved
# to, which also serves its share of live traffic: 16 at once (15 after a 15 s partition) queued 100 ms and
# more of block building ahead of every live request there. A few at a time interleave with them.
_FETCH_CONCURRENCY = 4
_REORG_MEMORY = 128  # newHeads: how many recent heads' hashes a group remembers (a reorg deeper is missed)
_MAX_BACKOFF_S = 2.0
_QUEUE_LIMIT = 100_000
_NOTIFY_HEAD = b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"'


class Subscriber(Protocol):
    """A client connection that takes notification payloads without blocking."""

    def send(self, payload: bytes) -> None: ...


class WsPool:
    """The shared upstream WebSocket connections of one chain: one per provider, opened on demand and
    closed when they carry no subscription."""

    def __init__(self, session: aiohttp.ClientSession, connect_timeout_s: float) -> None:
        self._session = session
        self._timeout = connect_timeout_s
        self._connections: dict[str, WsUpstream] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, provider: ProviderRuntime) -> WsUpstream:
        """The provider's connection, opened if needed; every acquire needs one `release`."""
        assert provider.ws_url is not None
        lock = self._locks.setdefault(provider.id, asyncio.Lock())
        async with lock:
            upstream = self._connections.get(provider.id)
            if upstream is None or not upstream.alive:
                upstream = WsUpstream(provider.id, provider.ws_url, provider.ws_headers)
                await upstream.connect(self._session, self._timeout)
                self._connections[provider.id] = upstream
            upstream.leases += 1
            return upstream

    async def release(self, upstream: WsUpstream) -> None:
        upstream.leases -= 1
        if upstream.leases == 0:
            if self._connections.get(upstream.provider_id) is upstream:
                del self._connections[upstream.provider_id]
            await upstream.close()

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


class SubscriptionManager:
    """The subscriptions of one chain."""

    def __init__(self, chain: ChainRuntime, router: Router, pool: WsPool, rng: random.Random) -> None:
        self.chain = chain
        self.router = router
        self.pool = pool
        self.rng = rng
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._owners: dict[str, tuple[Subscriber, _Group]] = {}
        self.background: set[asyncio.Task[None]] = set()  # unsubscribes from replaced upstreams

    async def subscribe(
        self, subscriber: Subscriber, params: Any, strategy: Strategy, override: ProviderRuntime | None
    ) -> str:
        """A new client subscription id; raises JsonRpcError for bad params or when no provider can
        serve it. The caller must send the id before yielding to the loop: notifications follow."""
        kind, log_filter = _parse_params(params)
        if override is not None and override.ws_url is None:
            raise jsonrpc.JsonRpcError(
                jsonrpc.SERVER_ERROR, "Provider unavailable", {"provider": override.id, "reason": "no_ws_url"}
            )
        if not self.chain.ws_providers:
            raise jsonrpc.JsonRpcError(
                jsonrpc.SERVER_ERROR, "Provider unavailable", {"provider": None, "reason": "no_ws_providers"}
            )
        key = (kind, orjson.dumps(log_filter, option=orjson.OPT_SORT_KEYS), override.id if override else None)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(self, key, kind, log_filter, strategy, override)
            group.start()
        try:
            await asyncio.shield(group.ready)
        except jsonrpc.JsonRpcError:
            if self._groups.get(key) is group:
                del self._groups[key]
            raise
        subscription_id = "0x" + secrets.token_hex(16)
        group.attach(subscription_id, subscriber)
        self._owners[subscription_id] = (subscriber, group)
        self.chain.metrics.subscriptions(kind, 1)
        return subscription_id

    async def unsubscribe(self, subscriber: Subscriber, subscription_id: Any) -> bool:
        owner = self._owners.get(subscription_id) if isinstance(subscription_id, str) else None
        if owner is None or owner[0] is not subscriber:
            return False
        del self._owners[subscription_id]
        group = owner[1]
        group.detach(subscription_id)
        self.chain.metrics.subscriptions(group.kind, -1)
        if not group.subscribers:
            self._groups.pop(group.key, None)
            await group.close()
        return True

    async def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of a client that went away."""
        for subscription_id, (owner, _) in list(self._owners.items()):
            if owner is subscriber:
                await self.unsubscribe(subscriber, subscription_id)

    async def close(self) -> None:
        groups, self._groups = list(self._groups.values()), {}
        self._owners.clear()
        await asyncio.gather(*(g.close() for g in groups), *self.background, return_exceptions=True)

    def snapshot(self) -> list[dict[str, Any]]:
        return [group.snapshot() for group in self._groups.values()]


class _Group:
    """One upstream subscription and the client subscriptions it feeds."""

    def __init__(
        self,
        manager: SubscriptionManager,
        key: tuple[Any, ...],
        kind: str,
        log_filter: dict[str, Any] | None,
        strategy: Strategy,
        override: ProviderRuntime | None,
    ) -> None:
        self.manager = manager
        self.chain = manager.chain
        self.key = key
        self.kind = kind
        self.log_filter = log_filter
        self.strategy = strategy
        self.override = override
        self.subscribers: dict[str, tuple[Subscriber, bytes]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.provider: ProviderRuntime | None = None
        self._upstream: WsUpstream | None = None
        self._upstream_ids: list[str] = []
        self._lost_listener: Callable[[str], None] | None = None
        self._generation = 0
        self._queue: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue(_QUEUE_LIMIT)
        self._last_activity = time.monotonic()
        self.last_block: int | None = None  # newHeads: the last head delivered
        self._head_hashes: dict[int, str] = {}  # newHeads: recent delivered heads' hashes, to see reorgs
        self._last_head_seen: int | None = None  # logs: the last heartbeat head of the current upstream
        self._last_log: tuple[int, int] | None = None  # logs: (block, log index) of the last log delivered
        self._task: asyncio.Task[None] | None = None

    # --- clients ---------------------------------------------------------------------------------------

    def attach(self, subscription_id: str, subscriber: Subscriber) -> None:
        self.subscribers[subscription_id] = (
            subscriber,
            _NOTIFY_HEAD + subscription_id.encode() + b'","result":',
        )

    def detach(self, subscription_id: str) -> None:
        self.subscribers.pop(subscription_id, None)

    def _deliver(self, result: Any) -> None:
        body = orjson.dumps(result) + b"}}"
        for subscriber, prefix in self.subscribers.values():
            subscriber.send(prefix + body)

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"subscription-{self.kind}")

    async def close(self) -> None:
        if not self.ready.done():
            self.ready.set_exception(
                jsonrpc.JsonRpcError(
                    jsonrpc.SERVER_ERROR, "Provider unavailable", {"reason": "shutting_down"}
                )
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        upstream, ids = self._detach_upstream()
        if upstream is not None:
            await self._drop_upstream(upstream, ids)

    def snapshot(self) -> dict[str, Any]:
        return {
            "profile": self.chain.profile,
            "chain": self.chain.name,
            "kind": self.kind,
            "filter": self.log_filter,
            "override": self.override.id if self.override else None,
            "provider": self.provider.id if self.provider else None,
            "subscribers": len(self.subscribers),
            "last_block": self.last_block,
            "last_log": list(self._last_log) if self._last_log else None,
        }

    async def _run(self) -> None:
        try:
            await self._subscribe_somewhere(avoid=None, first=True)
        except Exception as exc:  # whatever went wrong, the clients waiting on `ready` get an answer
            if not isinstance(exc, jsonrpc.JsonRpcError):
                log.exception("first subscription of a %s group", self.kind)
                exc = jsonrpc.JsonRpcError(
                    jsonrpc.SERVER_ERROR, "Provider unavailable", {"reason": "internal"}
                )
            self.ready.set_exception(exc)
            return
        self.ready.set_result(None)
        while True:
            try:
                await self._step()
            except Exception:  # a bug handling one notification must not end the subscription for good
                log.exception("subscription %s on %s", self.kind, self.provider.id if self.provider else None)
                await asyncio.sleep(0.1)  # and a bug that repeats must not spin

    async def _step(self) -> None:
        """Handle the next upstream notification, or recover from silence or a lost upstream."""
        wait = self._last_activity + self.chain.silence_timeout_s - time.monotonic()
        try:
            what, generation, payload = await asyncio.wait_for(self._queue.get(), max(wait, 0.0))
        except TimeoutError:
            await self._recover(ev.UPSTREAM_SILENT, "silent")
            return
        if generation != self._generation:
            return  # from an upstream subscription already replaced
        if what == "lost":
            await self._recover(ev.UPSTREAM_LOST, payload)
            return
        self._last_activity = time.monotonic()
        if what == "head":
            await self._on_head(payload)
        else:
            self._on_log(payload)

    # --- upstream --------------------------------------------------------------------------------------

    def _enqueue(self, what: str, generation: int, payload: Any) -> None:
        try:
            self._queue.put_nowait((what, generation, payload))
        except asyncio.QueueFull:
            log.warning(
                "subscription queue full; dropping a %s notification (gap filling repairs heads)", what
            )

    def _candidates(self, avoid: ProviderRuntime | None) -> list[ProviderRuntime]:
        if self.override is not None:  # pinned, but never to another chain
            return [] if self.override.id in self.chain.wrong_chain else [self.override]
        ranked = rank(self.strategy, self.chain.ws_providers, "eth_subscribe", "ws", self.manager.rng)
        ordered = self.chain.healthy_order(ranked, "ws", "eth_subscribe", probe_first=False)
        if avoid is not None and avoid in ordered and len(ordered) > 1:
            ordered.remove(avoid)
            ordered.append(avoid)  # the provider that just failed is the last resort
        return ordered

    async def _subscribe_somewhere(self, avoid: ProviderRuntime | None, first: bool) -> None:
        """Subscribe on the first candidate that accepts; for the first subscription, give up (the client's
        eth_subscribe fails) after one round; when recovering, keep trying with a bounded backoff."""
        backoff = 0.05
        while True:
            for provider in self._candidates(avoid):
                if await self._try_subscribe(provider):
                    return
            if first:
                raise jsonrpc.JsonRpcError(
                    jsonrpc.SERVER_ERROR,
                    "Provider unavailable",
                    {"provider": avoid.id if avoid else None, "reason": "subscribe_failed"},
                )
            await asyncio.sleep(backoff)  # every provider refused: wait before the next round
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _try_subscribe(self, provider: ProviderRuntime) -> bool:
        breaker = provider.ws_breaker
        permit = breaker.acquire()
        if permit is None:
            return False
        generation = self._generation + 1
        timeout = self.chain.policy.attempt_timeout_s
        upstream: WsUpstream | None = None
        ids: list[str] = []
        started = time.perf_counter()
        try:
            upstream = await self.manager.pool.acquire(provider)
            ids.append(
                await upstream.subscribe(
                    ["newHeads"], functools.partial(self._enqueue, "head", generation), timeout
                )
            )
            if self.kind == "logs":
                log_handler = functools.partial(self._enqueue, "log", generation)
                ids.append(await upstream.subscribe(["logs", self.log_filter or {}], log_handler, timeout))
        except (*NETWORK_ERRORS, jsonrpc.JsonRpcError) as exc:
            breaker.failure(permit, "subscribe_failed")
            log.info("subscribing on %s failed: %r", provider.id, exc)
            if upstream is not None:
                await self._drop_upstream(upstream, ids)
            return False
        except BaseException:
            breaker.release(permit)
            if upstream is not None:
                await self._drop_upstream(upstream, ids)
            raise
        breaker.success(permit)
        provider.latency.record("ws", "eth_subscribe", time.perf_counter() - started)
        old_upstream, old_ids = self._detach_upstream()
        if old_upstream is not None:
            # Unsubscribing from a provider that stopped answering must not hold up the recovery.
            task = asyncio.create_task(self._drop_upstream(old_upstream, old_ids))
            self.manager.background.add(task)
            task.add_done_callback(self.manager.background.discard)
        self._generation = generation
        self.provider, self._upstream, self._upstream_ids = provider, upstream, ids
        self._lost_listener = functools.partial(self._enqueue, "lost", generation)
        upstream.on_lost(self._lost_listener)
        self._last_activity = time.monotonic()
        self._last_head_seen = self.chain.heads.head(provider.id)
        self.chain.events.publish(
            ev.SUBSCRIBED,
            profile=self.chain.profile,
            chain=self.chain.name,
            kind=self.kind,
            provider=provider.id,
        )
        return True

    def _detach_upstream(self) -> tuple[WsUpstream | None, list[str]]:
        """Stop listening to the current upstream subscription; returns it for `_drop_upstream`."""
        upstream, ids = self._upstream, self._upstream_ids
        self._upstream, self._upstream_ids = None, []
        if upstream is not None and self._lost_listener is not None:
            upstream.remove_lost_listener(self._lost_listener)
        return upstream, ids

    async def _drop_upstream(self, upstream: WsUpstream, ids: list[str]) -> None:
        for subscription_id in ids:
            await upstream.unsubscribe(subscription_id, timeout_s=1.0)
        await self.manager.pool.release(upstream)

    async def _recover(self, event_type: str, reason: str) -> None:
        chain, failed = self.chain, self.provider
        assert failed is not None
        silent_s = round(time.monotonic() - self._last_activity, 3)
        chain.events.publish(
            event_type,
            profile=chain.profile,
            chain=chain.name,
            kind=self.kind,
            provider=failed.id,
            **({"silent_s": silent_s} if event_type == ev.UPSTREAM_SILENT else {"reason": reason}),
        )
        failed.ws_breaker.report_failure("silent" if event_type == ev.UPSTREAM_SILENT else "lost")
        last_head_seen = self._last_head_seen
        await self._subscribe_somewhere(avoid=failed, first=False)
        assert self.provider is not None
        chain.metrics.resubscribed(self.kind, event_type)
        chain.events.publish(
            ev.RESUBSCRIBED,
            profile=chain.profile,
            chain=chain.name,
            kind=self.kind,
            **{"from": failed.id, "to": self.provider.id},
            reason=reason,
        )
        if self.kind == "logs" and chain.policy.gap_filling and last_head_seen is not None:
            await self._backfill_logs(last_head_seen)

    # --- newHeads --------------------------------------------------------------------------------------

    async def _on_head(self, header: Any) -> None:
        number = jsonrpc.quantity(header.get("number") if isinstance(header, dict) else None)
        if number is None or self.provider is None:
            return
        if self.provider.id in self.chain.wrong_chain:  # its heads are another chain's: move away
            await self._recover(ev.UPSTREAM_LOST, "wrong_chain")
            return
        self.chain.observe_head(self.provider.id, number)
        if self.kind == "logs":
            self._last_head_seen = number
            return
        last = self.last_block
        if last is not None:
            if number <= last and not self._is_reorg(number, header):
                return  # delivered already (a duplicate, or an old head from a slower upstream)
            if number > last + 1 and self.chain.policy.gap_filling:
                await self._fill_heads(last + 1, number - 1)
        self._deliver_head(number, header)

    def _is_reorg(self, number: int, header: dict[str, Any]) -> bool:
        """A head at a delivered number with a new hash, on top of the head delivered just below it."""
        delivered = self._head_hashes.get(number)
        block_hash, parent = header.get("hash"), header.get("parentHash")
        return (
            self.chain.policy.follow_reorgs
            and delivered is not None
            and isinstance(block_hash, str)
            and block_hash != delivered
            and parent == self._head_hashes.get(number - 1)
        )

    def _deliver_head(self, number: int, header: dict[str, Any]) -> None:
        self._deliver(header)
        self.last_block = number
        block_hash = header.get("hash")
        if isinstance(block_hash, str):
            self._head_hashes[number] = block_hash
            if len(self._head_hashes) > _REORG_MEMORY or max(self._head_hashes) > number:
                # too many, or a reorg (the old branch above it is gone)
                self._head_hashes = {
                    n: h for n, h in self._head_hashes.items() if number - _REORG_MEMORY < n <= number
                }

    async def _fill_heads(self, first: int, last: int) -> None:
        chain = self.chain
        truncated = last - first + 1 > chain.policy.max_backfill_blocks
        if truncated:
            first = last - chain.policy.max_backfill_blocks + 1
        for chunk_start in range(first, last + 1, _FETCH_CONCURRENCY):
            numbers = range(chunk_start, min(chunk_start + _FETCH_CONCURRENCY, last + 1))
            blocks = await asyncio.gather(
                *(self._fetch("eth_getBlockByNumber", [hex(n), False]) for n in numbers)
            )
            for number, block in zip(numbers, blocks, strict=True):
                if not isinstance(block, dict):
                    self._publish_fill(ev.GAP_FILL_FAILED, number, last, reason="block_unavailable")
                    return
                self._deliver_head(number, {k: v for k, v in block.items() if k not in _BODY_FIELDS})
        chain.metrics.gap_filled(self.kind, last - first + 1)
        self._publish_fill(ev.GAP_FILLED, first, last, blocks=last - first + 1, truncated=truncated)

    # --- logs ------------------------------------------------------------------------------------------

    def _on_log(self, entry: Any) -> None:
        key = _log_key(entry)
        if key is None:
            return
        if self._last_log is not None and key <= self._last_log:
            return  # delivered already
        self._deliver(entry)
        self._last_log = key

    async def _backfill_logs(self, from_block: int) -> None:
        """Re-read the logs from the last head the failed upstream announced up to the new upstream's
        head; what the new subscription also sends is dropped as a duplicate."""
        head = jsonrpc.quantity(await self._fetch("eth_blockNumber", []))
        if head is None:
            self._publish_fill(ev.GAP_FILL_FAILED, from_block, from_block, reason="head_unavailable")
            return
        from_block = max(from_block, head - self.chain.policy.max_backfill_blocks + 1)
        if head < from_block:
            return
        log_filter = {**(self.log_filter or {}), "fromBlock": hex(from_block), "toBlock": hex(head)}
        logs = await self._fetch("eth_getLogs", [log_filter])
        if not isinstance(logs, list):
            self._publish_fill(ev.GAP_FILL_FAILED, from_block, head, reason="logs_unavailable")
            return
        for entry in sorted((e for e in logs if _log_key(e) is not None), key=_log_key):  # type: ignore[arg-type]
            self._on_log(entry)
        self._last_head_seen = max(self._last_head_seen or head, head)
        self._publish_fill(ev.GAP_FILLED, from_block, head, blocks=head - from_block + 1, logs=len(logs))

    # --- helpers ---------------------------------------------------------------------------------------

    async def _fetch(self, method: str, params: list[Any]) -> Any:
        """A result over HTTP: from the current upstream provider first (it has what it announced), then
        by the group's strategy with failover. None when nobody had it."""
        request = jsonrpc.Request(method, params, 1, False)
        deadline = time.perf_counter() + self.chain.policy.backfill_timeout_s
        router = self.manager.router
        tries: list[ProviderRuntime | None] = [self.provider] if self.provider and self.provider.url else []
        if self.override is None or not tries:
            tries.append(self.override)
        for override in tries:
            routed = await router.execute(self.chain, request, self.strategy, override, deadline)
            result = routed.response.get("result")
            if result is not None:
                return result
        return None

    def _publish_fill(self, event_type: str, first: int, last: int, **fields: Any) -> None:
        self.chain.events.publish(
            event_type,
            profile=self.chain.profile,
            chain=self.chain.name,
            kind=self.kind,
            provider=self.provider.id if self.provider else None,
            from_block=first,
            to_block=last,
            **fields,
        )


def _parse_params(params: Any) -> tuple[str, dict[str, Any] | None]:
    if not isinstance(params, list) or not params or len(params) > 2:
        raise jsonrpc.JsonRpcError(jsonrpc.INVALID_PARAMS, 'eth_subscribe takes [kind] or ["logs", filter]')
    kind = params[0]
    if kind not in KINDS:
        raise jsonrpc.JsonRpcError(
            jsonrpc.INVALID_PARAMS, f"unsupported subscription {kind!r} (this gateway has newHeads and logs)"
        )
    if kind == "newHeads":
        if len(params) > 1:
            raise jsonrpc.JsonRpcError(jsonrpc.INVALID_PARAMS, "newHeads takes no options")
        return kind, None
    log_filter = params[1] if len(params) > 1 else {}
    if not isinstance(log_filter, dict) or not set(log_filter) <= {"address", "topics"}:
        raise jsonrpc.JsonRpcError(
            jsonrpc.INVALID_PARAMS, "a logs filter is an object with address and topics"
        )
    return kind, log_filter


def _log_key(entry: Any) -> tuple[int, int] | None:
    if not isinstance(entry, dict):
        return None
    block, index = jsonrpc.quantity(entry.get("blockNumber")), jsonrpc.quantity(entry.get("logIndex"))
    return None if block is None or index is None else (block, index)
