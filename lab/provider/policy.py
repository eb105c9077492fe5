"""The runtime side of behaviours: a validated spec compiled into a `Policy` that decides, per request,
what the node does (serve after a delay, serve a lagging head, fail, hold, or drop the connection).

Policies keep their own state (rate-limit windows, seeded random streams) and know nothing about HTTP
or WebSocket: the server turns an `Outcome` into a response. Time is "seconds since the behaviour was
set" (phase-relative inside schedules), passed in with every call, so tests drive it with a fake clock.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lab.jsonrpc import INTERNAL_ERROR, LIMIT_EXCEEDED, SERVER_ERROR, ErrorObject, JsonRpcError
from lab.provider import specs
from lab.provider.chain import Chain
from lab.provider.damage import AnswerDamage
from lab.provider.methods import View, requested_block, requested_log_span


class Action(enum.Enum):
    SERVE = "serve"
    FAIL = "fail"
    HANG = "hang"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with one request. `label` is the outcome recorded in the stats."""

    action: Action = Action.SERVE
    delay_s: float = 0.0
    lag: int = 0
    http_status: int = 200
    error: ErrorObject | None = None  # the JSON-RPC error object of a FAIL
    plain_http: bool = False  # a FAIL answered over HTTP with a plain-text body instead of JSON-RPC
    retry_after_s: float | None = None
    hold_s: float = 0.0
    label: str = "ok"
    chain: Chain | None = None  # served from this chain instead of the node's own (wrong_chain)
    damage: AnswerDamage | None = None  # the answer's result is damaged (corrupt)


SERVE = Outcome()


@dataclass(slots=True)  # not frozen: built per request, and frozen dataclasses construct slowly
class Call:
    """One request as policies see it. A `probe` asks for the node's state (pushing heads, health)
    and consumes nothing: no rate-limit budget, no random draw."""

    method: str
    params: Any
    elapsed: float
    view: View
    transport: str = "http"  # "http" or "ws"
    probe: bool = False

    def at(self, elapsed: float) -> Call:
        return Call(self.method, self.params, elapsed, self.view, self.transport, self.probe)


class Policy(Protocol):
    def decide(self, call: Call) -> Outcome: ...


class HealthyPolicy:
    def decide(self, call: Call) -> Outcome:
        return SERVE


HEALTHY = HealthyPolicy()


class LatencyPolicy:
    def __init__(self, ms: float, jitter_ms: float, rng: random.Random) -> None:
        self.ms, self.jitter_ms, self.rng = ms, jitter_ms, rng

    def decide(self, call: Call) -> Outcome:
        return _delayed(self.ms, self.jitter_ms, self.rng, call.probe)


def _delayed(ms: float, jitter_ms: float, rng: random.Random, probe: bool) -> Outcome:
    if jitter_ms and not probe:
        ms += rng.uniform(-jitter_ms, jitter_ms)
    return Outcome(delay_s=max(ms, 0.0) / 1000.0) if ms > 0 else SERVE


class FailPolicy:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def decide(self, call: Call) -> Outcome:
        return self.outcome


class TimeoutPolicy:
    def __init__(self, max_hold_s: float) -> None:
        self.outcome = Outcome(Action.HANG, http_status=504, hold_s=max_hold_s, label="timeout")

    def decide(self, call: Call) -> Outcome:
        return self.outcome


class DropPolicy:
    OUTCOME = Outcome(Action.DROP, label="dropped")

    def __init__(self, transports: list[str]) -> None:
        self.transports = frozenset(transports)

    def decide(self, call: Call) -> Outcome:
        return self.OUTCOME if call.transport in self.transports else SERVE


class DegradedPolicy:
    def __init__(self, spec: specs.DegradedPerformance, rng: random.Random) -> None:
        self.spec, self.rng = spec, rng

    def decide(self, call: Call) -> Outcome:
        s = self.spec
        ms = min(s.max_latency_ms, s.base_latency_ms + s.growth_ms_per_s * max(call.elapsed, 0.0))
        return _delayed(ms, s.jitter_ms, self.rng, call.probe)


class IntermittentPolicy:
    def __init__(self, success_rate: float, failure: Policy, rng: random.Random) -> None:
        self.success_rate, self.failure, self.rng = success_rate, failure, rng

    def decide(self, call: Call) -> Outcome:
        if call.probe or self.rng.random() < self.success_rate:
            return SERVE
        return self.failure.decide(call)


class RateLimitPolicy:
    """A fixed-window counter; windows are aligned on the moment the behaviour was set."""

    def __init__(self, spec: specs.RateLimited) -> None:
        self.spec = spec
        self.window = -1
        self.count = 0

    def decide(self, call: Call) -> Outcome:
        if call.probe:
            return SERVE
        window_s = self.spec.window_s
        window = math.floor(call.elapsed / window_s)
        if window != self.window:
            self.window, self.count = window, 0
        self.count += 1
        if self.count <= self.spec.limit:
            return SERVE
        retry_after = self.spec.retry_after_s or (window + 1) * window_s - call.elapsed
        return Outcome(
            Action.FAIL,
            http_status=429,
            error={
                "code": self.spec.code,
                "message": self.spec.message,
                "data": {"limit": self.spec.limit, "window_s": window_s, "backoff_seconds": retry_after},
            },
            retry_after_s=retry_after,
            label="rate_limited",
        )


class OutOfSyncPolicy:
    def __init__(self, lag: int, recovery_after_s: float | None) -> None:
        self.outcome = Outcome(lag=lag)
        self.recovery_after_s = recovery_after_s

    def decide(self, call: Call) -> Outcome:
        if self.recovery_after_s is not None and call.elapsed >= self.recovery_after_s:
            return SERVE
        return self.outcome


class SchedulePolicy:
    def __init__(self, phases: list[tuple[float, Policy]], then: Policy, repeat: bool) -> None:
        self.phases, self.then, self.repeat = phases, then, repeat
        self.cycle_s = sum(duration for duration, _ in phases)

    def decide(self, call: Call) -> Outcome:
        elapsed = call.elapsed
        if elapsed >= self.cycle_s:
            if not self.repeat or self.cycle_s <= 0:
                return self.then.decide(call.at(elapsed - self.cycle_s))
            elapsed %= self.cycle_s
        for duration, policy in self.phases:
            if elapsed < duration:
                return policy.decide(call.at(elapsed))
            elapsed -= duration
        return self.then.decide(call.at(elapsed))  # float rounding at the very end of a cycle


class MethodSpecificPolicy:
    def __init__(self, methods: dict[str, Policy], default: Policy) -> None:
        self.methods, self.default = methods, default

    def decide(self, call: Call) -> Outcome:
        return self.methods.get(call.method, self.default).decide(call)


@dataclass(frozen=True, slots=True)
class ParamCondition:
    method: str | None
    block_range_over: int | None
    block_older_than: int | None
    params_prefix: list[Any] | None

    def holds(self, call: Call) -> bool:
        if self.method is not None and call.method != self.method:
            return False
        if self.block_range_over is not None:
            if call.method != "eth_getLogs":
                return False
            span = requested_log_span(call.params, call.view)
            if span is None or span <= self.block_range_over:
                return False
        if self.block_older_than is not None:
            block = requested_block(call.method, call.params, call.view)
            if block is None or call.view.served_head - block <= self.block_older_than:
                return False
        if self.params_prefix is not None:
            params = call.params if isinstance(call.params, list) else []
            if params[: len(self.params_prefix)] != self.params_prefix:
                return False
        return True


class ParamSensitivePolicy:
    def __init__(self, rules: list[tuple[ParamCondition, Policy]], otherwise: Policy) -> None:
        self.rules, self.otherwise = rules, otherwise

    def decide(self, call: Call) -> Outcome:
        if not call.probe:  # a probe has no params to judge
            for condition, policy in self.rules:
                if condition.holds(call):
                    return policy.decide(call)
        return self.otherwise.decide(call)


class AllOfPolicy:
    def __init__(self, parts: list[Policy]) -> None:
        self.parts = parts

    def decide(self, call: Call) -> Outcome:
        delay, lag = 0.0, 0
        chain: Chain | None = None
        damage: AnswerDamage | None = None
        for part in self.parts:
            outcome = part.decide(call)
            delay += outcome.delay_s
            lag = max(lag, outcome.lag)
            chain = chain or outcome.chain
            damage = damage or outcome.damage
            if outcome.action is not Action.SERVE:
                return _with(outcome, delay, lag)
        if chain is not None or damage is not None:
            label = "corrupt" if damage is not None else "wrong_chain"
            return Outcome(delay_s=delay, lag=lag, chain=chain, damage=damage, label=label)
        return Outcome(delay_s=delay, lag=lag) if delay or lag else SERVE


def _with(outcome: Outcome, delay_s: float, lag: int) -> Outcome:
    if outcome.delay_s == delay_s and outcome.lag == lag:
        return outcome
    return dataclasses.replace(outcome, delay_s=delay_s, lag=lag)


class WrongChainPolicy:
    """Serve another chain: the node's chain with another id and its genesis moved by `head_offset`
    blocks (so the other chain's head is that far from this one's, on the same block times)."""

    def __init__(self, spec: specs.WrongChain) -> None:
        self.spec = spec
        self._outcome: Outcome | None = None
        self._base: Chain | None = None

    def decide(self, call: Call) -> Outcome:
        base = call.view.chain
        if self._outcome is None or self._base is not base:
            other = Chain(
                self.spec.chain_id,
                base.genesis_time - self.spec.head_offset * base.block_time,
                base.block_time,
            )
            self._base, self._outcome = base, Outcome(chain=other, label="wrong_chain")
        return self._outcome


class CorruptPolicy:
    """Damage a seeded share of answers (never a probe: pushes and health stay intact)."""

    def __init__(self, spec: specs.Corrupt, rng: random.Random) -> None:
        self.rate, self.damage, self.rng = spec.rate, tuple(spec.damage), rng
        self.methods = None if spec.methods is None else frozenset(spec.methods)

    def decide(self, call: Call) -> Outcome:
        if call.probe or (self.methods is not None and call.method not in self.methods):
            return SERVE
        if self.rng.random() >= self.rate:
            return SERVE
        damage = AnswerDamage(self.rng.choice(self.damage), self.rng.getrandbits(32))
        return Outcome(damage=damage, label="corrupt")


# --- compiling a spec --------------------------------------------------------------------------------


def derive_seed(seed: int, *path: object) -> int:
    """A child seed from a parent seed and a path, so sibling behaviours draw independent streams."""
    text = "|".join(map(str, (seed, *path))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def compile_policy(spec: specs.BehaviorSpec, seed: int = 0) -> Policy:
    """A fresh policy (new state, new random streams) for a validated spec."""
    seed = spec.seed if spec.seed is not None else seed

    def child(sub: specs.BehaviorSpec, *path: object) -> Policy:
        return compile_policy(sub, derive_seed(seed, *path))

    compiler = _COMPILERS[type(spec)]
    return compiler(spec, seed, child)


Child = Callable[..., Policy]


def _fail_outcome(spec: specs.AlwaysFail | specs.ErrorCode) -> Outcome:
    if spec.code is None:  # a plain HTTP error (error_code with code null)
        error = JsonRpcError(INTERNAL_ERROR, f"HTTP {spec.http_status}: {spec.message}").to_dict()
    else:
        error = JsonRpcError(spec.code, spec.message, spec.data).to_dict()
    return Outcome(
        Action.FAIL, http_status=spec.http_status, error=error, plain_http=spec.code is None, label="failed"
    )


def _compile_cascade(spec: specs.CascadingFailure, seed: int, child: Child) -> Policy:
    phases = [
        (spec.healthy_s, HEALTHY),
        (spec.degraded_s, child(spec.degraded, "degraded")),
        (spec.failed_s, child(spec.failed, "failed")),
    ]
    return SchedulePolicy([(d, p) for d, p in phases if d > 0], child(spec.recovered, "recovered"), False)


def _compile_param_sensitive(spec: specs.ParamSensitive, seed: int, child: Child) -> Policy:
    rules = []
    for i, rule in enumerate(spec.rules):
        condition = ParamCondition(
            rule.method, rule.block_range_over, rule.block_older_than, rule.params_prefix
        )
        if rule.then is not None:
            policy = child(rule.then, "rules", i)
        elif rule.block_range_over is not None:
            policy = FailPolicy(_range_error(rule.block_range_over))
        elif rule.block_older_than is not None:
            policy = FailPolicy(_missing_state_error(rule.block_older_than))
        else:
            policy = FailPolicy(_fail_outcome(specs.AlwaysFail()))
        rules.append((condition, policy))
    return ParamSensitivePolicy(rules, child(spec.otherwise, "otherwise"))


def _failed(code: int, message: str, limit: int) -> Outcome:
    """A FAIL whose error data names the node's limit (a block range, a state depth)."""
    return Outcome(Action.FAIL, error=JsonRpcError(code, message, {"limit": limit}).to_dict(), label="failed")


def _range_error(limit: int) -> Outcome:
    return _failed(LIMIT_EXCEEDED, f"block range too large: the limit is {limit} blocks", limit)


def _missing_state_error(depth: int) -> Outcome:
    message = f"missing trie node: state is not available (this node keeps the last {depth} blocks)"
    return _failed(SERVER_ERROR, message, depth)


_COMPILERS: dict[type, Callable[[Any, int, Child], Policy]] = {
    specs.Healthy: lambda s, seed, child: HEALTHY,
    specs.Latency: lambda s, seed, child: LatencyPolicy(s.ms, s.jitter_ms, random.Random(seed)),
    specs.AlwaysFail: lambda s, seed, child: FailPolicy(_fail_outcome(s)),
    specs.ErrorCode: lambda s, seed, child: FailPolicy(_fail_outcome(s)),
    specs.AlwaysTimeout: lambda s, seed, child: TimeoutPolicy(s.max_hold_s),
    specs.DropConnection: lambda s, seed, child: DropPolicy(s.transports),
    specs.DegradedPerformance: lambda s, seed, child: DegradedPolicy(s, random.Random(seed)),
    specs.IntermittentFailures: lambda s, seed, child: IntermittentPolicy(
        s.success_rate, child(s.failure, "failure"), random.Random(seed)
    ),
    specs.RateLimited: lambda s, seed, child: RateLimitPolicy(s),
    specs.NodeOutOfSync: lambda s, seed, child: OutOfSyncPolicy(s.lag, s.recovery_after_s),
    specs.Schedule: lambda s, seed, child: SchedulePolicy(
        [(ph.duration_s, child(ph.behavior, "phases", i)) for i, ph in enumerate(s.phases)],
        child(s.then, "then"),
        s.repeat,
    ),
    specs.CascadingFailure: _compile_cascade,
    specs.MethodSpecific: lambda s, seed, child: MethodSpecificPolicy(
        {m: child(b, "methods", m) for m, b in s.methods.items()}, child(s.default, "default")
    ),
    specs.ParamSensitive: _compile_param_sensitive,
    specs.AllOf: lambda s, seed, child: AllOfPolicy(
        [child(b, "behaviors", i) for i, b in enumerate(s.behaviors)]
    ),
    specs.WrongChain: lambda s, seed, child: WrongChainPolicy(s),
    specs.Corrupt: lambda s, seed, child: CorruptPolicy(s, random.Random(seed)),
}
