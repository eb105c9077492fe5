"""Executing one JSON-RPC request: choose providers, attempt, classify, fail over, within a deadline.

Providers are tried in the order of the strategy, lagging ones dropped for head-sensitive methods,
closed breakers before half-open ones, open ones skipped. An attempt that fails in a retryable way
(see classify.py) moves on to the next provider, up to `1 + retries` attempts, each bounded by the
per-attempt timeout and all of them by the overall deadline. A provider override makes exactly one
attempt on that provider and never fails over.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from lab import jsonrpc
from lab.gateway import classify
from lab.gateway import events as ev
from lab.gateway.config import Strategy
from lab.gateway.runtime import ChainRuntime, ProviderRuntime
from lab.gateway.strategies import rank
from lab.gateway.upstream import NETWORK_ERRORS, http_post

PROVIDER_UNAVAILABLE = "Provider unavailable"
_NOTIFICATION_ID = "lab-gateway-notification"  # notifications still get an answer upstream, dropped here
_DEADLINE_EXCEEDED = classify.Verdict(classify.Outcome.RETRYABLE, "deadline_exceeded")
_NO_HTTP_URL = classify.Verdict(classify.Outcome.RETRYABLE, "no_http_url")


@dataclass(slots=True)
class Routed:
    """The answer to one request and how it was obtained."""

    response: dict[str, Any]
    outcome: str  # success | caller_error | error
    provider: str | None = None  # the provider whose answer this is (the last one tried, on failure)
    attempts: int = 0
    upstream_latency_s: float | None = None
    tried: list[str] = field(default_factory=list)


class Router:
    def __init__(self, session: aiohttp.ClientSession, events: ev.EventBus, rng: Any) -> None:
        self._session = session
        self._events = events
        self._rng = rng

    def candidates(
        self, chain: ChainRuntime, method: str, strategy: Strategy, override: ProviderRuntime | None
    ) -> list[ProviderRuntime]:
        if override is not None:
            return [override]
        ranked = rank(strategy, chain.http_providers, method, "http", self._rng)
        return chain.healthy_order(ranked, "http", method)

    async def execute(
        self,
        chain: ChainRuntime,
        request: jsonrpc.Request,
        strategy: Strategy,
        override: ProviderRuntime | None = None,
        deadline: float | None = None,
    ) -> Routed:
        policy = chain.policy
        now = time.perf_counter()
        deadline = now + policy.deadline_s if deadline is None else deadline
        request_id = _NOTIFICATION_ID if request.is_notification else request.id
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": request.method,
                "params": [] if request.params is None else request.params,
            }
        )
        method = request.method
        metrics = chain.metrics
        max_attempts = 1 if override is not None else 1 + policy.retries
        routed = Routed(response={}, outcome="error")
        last_failure: tuple[ProviderRuntime, classify.Verdict, Any] | None = None
        skipped_open: ProviderRuntime | None = None

        for provider in self.candidates(chain, method, strategy, override):
            if routed.attempts >= max_attempts:
                break
            if provider.http_target is None:
                last_failure = (provider, _NO_HTTP_URL, None)
                continue
            breaker = provider.http_breaker
            permit = breaker.acquire()
            if permit is None:
                skipped_open = skipped_open or provider
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                breaker.release(permit)
                if last_failure is None:  # the deadline passed before any attempt (a long batch)
                    last_failure = (provider, _DEADLINE_EXCEEDED, None)
                break
            if last_failure is not None and routed.attempts:
                self._failover(chain, method, last_failure[0].id, provider.id, last_failure[1].reason)
            routed.attempts += 1
            routed.tried.append(provider.id)
            started = time.perf_counter()
            response: Any = None
            try:
                status, raw = await http_post(
                    self._session,
                    provider.http_target,
                    body,
                    provider.http_headers,
                    min(policy.attempt_timeout_s, remaining),
                )
            except NETWORK_ERRORS as exc:
                verdict = classify.classify_exception(exc)
            except BaseException:
                breaker.release(permit)  # cancelled: no verdict on the provider
                raise
            else:
                try:
                    response = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    response = None
                verdict = classify.classify_http(status, response)
                if not verdict.retryable and response.get("id") != request_id:
                    verdict = classify.BAD_RESPONSE
            elapsed = time.perf_counter() - started
            if verdict.retryable:
                metrics.attempt(provider.id, "http", verdict.reason, None)
                breaker.failure(permit, verdict.reason)
                last_failure = (provider, verdict, response)
                continue
            breaker.success(permit)
            provider.latency.record("http", method, elapsed)
            metrics.attempt(provider.id, "http", verdict.reason, elapsed)
            if method == "eth_blockNumber" and verdict is classify.SUCCESS:
                _observe_block_number(chain, provider.id, response["result"])
            routed.response = response
            routed.outcome = verdict.outcome.value
            routed.provider = provider.id
            routed.upstream_latency_s = elapsed
            return routed

        routed.response = _failure_response(request_id, last_failure, skipped_open)
        if last_failure is not None:
            routed.provider = last_failure[0].id
        return routed

    def _failover(self, chain: ChainRuntime, method: str, from_id: str, to_id: str, reason: str) -> None:
        chain.metrics.failover(reason)
        self._events.publish(
            ev.FAILOVER,
            profile=chain.profile,
            chain=chain.name,
            method=method,
            **{"from": from_id, "to": to_id},
            reason=reason,
        )


def _observe_block_number(chain: ChainRuntime, provider_id: str, result: Any) -> None:
    """A served eth_blockNumber that shows a new head is a free head observation (a repeated one adds
    nothing the poller does not already refresh)."""
    if isinstance(result, str) and result.startswith("0x"):
        with contextlib.suppress(ValueError):
            number = int(result, 16)
            if number != chain.heads.head(provider_id):
                chain.observe_head(provider_id, number)


def _failure_response(
    request_id: Any,
    last_failure: tuple[ProviderRuntime, classify.Verdict, Any] | None,
    skipped_open: ProviderRuntime | None,
) -> dict[str, Any]:
    """The provider's own JSON-RPC error when it gave one (e.g. a rate limit), else Lasso's
    "Provider unavailable" error naming the provider and the reason."""
    if last_failure is None:
        provider_id = skipped_open.id if skipped_open is not None else None
        reason = "circuit_open" if skipped_open is not None else "no_providers"
        return jsonrpc.error(
            request_id,
            jsonrpc.SERVER_ERROR,
            PROVIDER_UNAVAILABLE,
            {"provider": provider_id, "reason": reason},
        )
    provider, verdict, response = last_failure
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        return {"jsonrpc": "2.0", "id": request_id, "error": response["error"]}
    return jsonrpc.error(
        request_id,
        jsonrpc.SERVER_ERROR,
        PROVIDER_UNAVAILABLE,
        {"provider": provider.id, "reason": verdict.reason},
    )
