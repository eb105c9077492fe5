"""Executing one JSON-RPC request: choose providers, attempt, classify, fail over, within a deadline.

Providers are tried in the order of the strategy, lagging ones dropped for head-sensitive methods,
closed breakers before half-open ones, open ones skipped. An attempt that fails in a retryable way
(see classify.py) moves on to the next provider, up to `1 + retries` attempts, each bounded by the
per-attempt timeout and all of them by the overall deadline. A provider override makes exactly one
attempt on that provider and never fails over.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from lab import jsonrpc
from lab.gateway import answers, classify
from lab.gateway import events as ev
from lab.gateway.breaker import Permit
from lab.gateway.config import Strategy
from lab.gateway.runtime import ChainRuntime, ProviderRuntime
from lab.gateway.strategies import rank
from lab.gateway.upstream import NETWORK_ERRORS, http_post

PROVIDER_UNAVAILABLE = "Provider unavailable"
_NOTIFICATION_ID = "lab-gateway-notification"  # notifications still get an answer upstream, dropped here
_DEADLINE_EXCEEDED = classify.Verdict(classify.Outcome.RETRYABLE, "deadline_exceeded")
_NO_HTTP_URL = classify.Verdict(classify.Outcome.RETRYABLE, "no_http_url")
_WRONG_CHAIN = classify.Verdict(classify.Outcome.RETRYABLE, answers.WRONG_CHAIN)
_STALE_HEAD = classify.Verdict(classify.Outcome.RETRYABLE, "stale_head")


@dataclass(slots=True)
class Routed:
    """The answer to one request and how it was obtained."""

    response: dict[str, Any]
    outcome: str  # success | caller_error | error
    provider: str | None = None  # the provider whose answer this is (the last one tried, on failure)
    attempts: int = 0
    upstream_latency_s: float | None = None
    tried: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Call:
    """What every attempt of one request sends."""

    method: str
    params: Any
    request_id: Any
    body: bytes
    deadline: float


class Router:
    def __init__(self, session: aiohttp.ClientSession, events: ev.EventBus, rng: random.Random) -> None:
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
        call = _Call(method, request.params, request_id, body, deadline)
        max_attempts = 1 if override is not None else 1 + policy.retries
        routed = Routed(response={}, outcome="error")
        last_failure: tuple[ProviderRuntime, classify.Verdict, Any] | None = None
        refused: list[ProviderRuntime] = []  # breakers that let no attempt through
        stale: list[tuple[ProviderRuntime, classify.Verdict, Any]] = []  # head answers behind a head seen

        candidates = self.candidates(chain, method, strategy, override)
        for provider in candidates:
            if routed.attempts >= max_attempts:
                break
            if provider.http_target is None:
                last_failure = (provider, _NO_HTTP_URL, None)
                continue
            if provider.id in chain.wrong_chain:  # never, not even named: its answers are another chain's
                last_failure = (provider, _WRONG_CHAIN, None)
                continue
            breaker = provider.http_breaker
            permit = breaker.acquire()
            if permit is None:
                refused.append(provider)
                continue
            if deadline - time.perf_counter() <= 0:
                breaker.release(permit)
                if last_failure is None:  # the deadline passed before any attempt (a long batch)
                    last_failure = (provider, _DEADLINE_EXCEEDED, None)
                break
            failure = await self._attempt(chain, provider, permit, call, routed, last_failure)
            if failure is None:
                return routed
            last_failure = failure
            if failure[1] is _STALE_HEAD:
                stale.append(failure)

        # Last resort ("panic routing", as Envoy calls it): when every breaker refused, refusing the request
        # is a certain failure while an open provider may have healed. Forced-open breakers stay shut.
        if not routed.attempts and override is None and policy.breaker.panic_routing:
            for provider in sorted(refused, key=lambda p: p.http_breaker.retry_in_s()):
                if routed.attempts >= max_attempts or deadline - time.perf_counter() <= 0:
                    break
                if provider.http_breaker.forced:
                    continue
                chain.metrics.panic(provider.id)
                failure = await self._attempt(chain, provider, None, call, routed, last_failure)
                if failure is None:
                    return routed
                last_failure = failure
                if failure[1] is _STALE_HEAD:
                    stale.append(failure)

        if stale:  # every answer was behind: the freshest of them, as lagging providers serve when all lag
            provider, _, response = max(
                stale, key=lambda f: answers.answer_head(method, request.params, f[2]["result"]) or 0
            )
            routed.response, routed.outcome, routed.provider = response, "success", provider.id
            return routed

        routed.response = _failure_response(request_id, last_failure, refused[0] if refused else None)
        if last_failure is not None:
            routed.provider = last_failure[0].id
        return routed

    async def _attempt(
        self,
        chain: ChainRuntime,
        provider: ProviderRuntime,
        permit: Permit | None,
        call: _Call,
        routed: Routed,
        last_failure: tuple[ProviderRuntime, classify.Verdict, Any] | None,
    ) -> tuple[ProviderRuntime, classify.Verdict, Any] | None:
        """One upstream attempt; fills `routed` and returns None on an answer to pass on, else the failure.
        Without a permit (a last-resort attempt past an open breaker) the breaker hears nothing."""
        method, request_id, body, deadline = call.method, call.request_id, call.body, call.deadline
        breaker = provider.http_breaker
        if last_failure is not None and routed.attempts:
            self._failover(chain, method, last_failure[0].id, provider.id, last_failure[1].reason)
        routed.attempts += 1
        routed.tried.append(provider.id)
        target = provider.http_target
        assert target is not None
        remaining = deadline - time.perf_counter()
        highest_head = chain.heads.highest_head()  # before sending: any answer below it is stale
        started = time.perf_counter()
        response: Any = None
        in_flight = provider.in_flight.start()
        try:
            status, raw = await http_post(
                self._session,
                target,
                body,
                provider.http_headers,
                min(chain.policy.attempt_timeout_s, remaining),
            )
        except NETWORK_ERRORS as exc:
            verdict = classify.classify_exception(exc)
        except BaseException:
            if permit is not None:
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
            if verdict is classify.SUCCESS and chain.policy.answer_check:
                verdict = _judge_answer(chain, provider, call, response["result"], raw, highest_head)
        finally:
            provider.in_flight.end(in_flight)
        elapsed = time.perf_counter() - started
        metrics = chain.metrics
        if verdict is _STALE_HEAD:  # a lagging node, not a broken one: the lag check keeps it out
            metrics.attempt(provider.id, "http", verdict.reason, None)
            if permit is not None:
                breaker.release(permit)
            return (provider, verdict, response)
        if verdict.retryable:
            metrics.attempt(provider.id, "http", verdict.reason, None)
            if permit is not None:
                breaker.failure(permit, verdict.reason)
            return (provider, verdict, response)
        slow_s = chain.policy.slow_call_s
        if slow_s is not None and elapsed > slow_s:
            # A slow answer is passed on, but counts against the provider as a failure would (slow-call
            # ejection): consecutive ones open its breaker, and clients stop waiting on it.
            metrics.slow_call(provider.id)
            if permit is not None:
                breaker.failure(permit, "slow")
        elif permit is not None:
            if permit.probe:  # a healed provider: its averages from before the opening are history
                provider.latency.forget("http")
            breaker.success(permit)
        provider.latency.record("http", method, elapsed)
        metrics.attempt(provider.id, "http", verdict.reason, elapsed)
        if method == "eth_blockNumber" and verdict is classify.SUCCESS:
            _observe_block_number(chain, provider.id, response["result"])
        routed.response = response
        routed.outcome = verdict.outcome.value
        routed.provider = provider.id
        routed.upstream_latency_s = elapsed
        return None

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


def _judge_answer(
    chain: ChainRuntime,
    provider: ProviderRuntime,
    call: _Call,
    result: Any,
    raw: bytes,
    highest_head: int | None,
) -> classify.Verdict:
    """SUCCESS, or why a successful answer cannot be right (answer_check): the attempt fails over. A head
    answer more than max_lag_blocks below a head seen before the request was sent is stale."""
    method, params = call.method, call.params
    problem = answers.check_answer(method, params, result, chain.chain_id, raw)
    if problem == answers.WRONG_CHAIN:
        served = jsonrpc.quantity(result) if method in ("eth_chainId", "net_version") else None
        chain.mark_wrong_chain(provider.id, served)
    if problem is not None:
        return classify.Verdict(classify.Outcome.RETRYABLE, problem)
    head = answers.answer_head(method, params, result)
    stale = (
        head is not None and highest_head is not None and head < highest_head - chain.policy.max_lag_blocks
    )
    if stale and chain.policy.lag_check:
        assert head is not None
        chain.observe_head(provider.id, head)  # the lag check excludes it from now on
        return _STALE_HEAD
    return classify.SUCCESS


def _observe_block_number(chain: ChainRuntime, provider_id: str, result: Any) -> None:
    """A served eth_blockNumber that shows a new head is a free head observation (a repeated one adds
    nothing the poller does not already refresh)."""
    number = jsonrpc.quantity(result)
    if number is not None and number != chain.heads.head(provider_id):
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
