"""Behaviour specifications: what a test asks a provider to do, as validated JSON.

A behaviour is an object with a `type` (the catalogue of Lasso's MockProviderBehavior plus a few lab
extras). Composite behaviours hold other behaviours, so they nest: `all_of`, `method_specific`,
`param_sensitive`, `schedule`, `cascading_failure`, and the `failure` of `intermittent_failures`.
Anywhere a behaviour is expected, a bare type name ("always_fail") stands for that type's defaults.
Every behaviour may carry a `seed`; without one, its seed derives from its parent's (the top level's
from the provider's `--seed`), so a run is reproducible.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from lab.jsonrpc import INTERNAL_ERROR, LIMIT_EXCEEDED, SERVER_ERROR

HttpStatus = Annotated[int, Field(ge=200, le=599)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None


class Healthy(_Spec):
    """Answer every request at once."""

    type: Literal["healthy"] = "healthy"


class Latency(_Spec):
    """Answer after `ms` milliseconds, plus or minus a uniform `jitter_ms`."""

    type: Literal["latency"] = "latency"
    ms: NonNegativeFloat = 0.0
    jitter_ms: NonNegativeFloat = 0.0


class AlwaysFail(_Spec):
    """Fail every request: HTTP `http_status` with a JSON-RPC error body (on WebSocket, the error)."""

    type: Literal["always_fail"] = "always_fail"
    http_status: HttpStatus = 500
    code: int = INTERNAL_ERROR
    message: str = "Internal error"
    data: Any = None


class ErrorCode(_Spec):
    """Answer with a chosen HTTP status and/or JSON-RPC error. `code: null` with a non-200 status sends
    a plain-text body, as a load balancer in front of a node does (on WebSocket: a -32603 error)."""

    type: Literal["error_code"] = "error_code"
    http_status: HttpStatus = 200
    code: int | None = SERVER_ERROR
    message: str = "server error"
    data: Any = None

    @model_validator(mode="after")
    def _says_something(self) -> ErrorCode:
        if self.code is None and self.http_status == 200:
            raise ValueError("give a JSON-RPC `code`, a non-200 `http_status`, or both")
        return self


class AlwaysTimeout(_Spec):
    """Never answer: hold each request until the client gives up (or `max_hold_s`, then HTTP 504).
    Subscriptions stop receiving heads."""

    type: Literal["always_timeout"] = "always_timeout"
    max_hold_s: Annotated[float, Field(gt=0, le=3600)] = 300.0


class DropConnection(_Spec):
    """Close the connection without answering (HTTP), or drop the socket without a close frame (WS)."""

    type: Literal["drop_connection"] = "drop_connection"
    transports: Annotated[list[Literal["http", "ws"]], Field(min_length=1)] = ["http", "ws"]


class DegradedPerformance(_Spec):
    """Answer slowly: `base_latency_ms`, growing by `growth_ms_per_s` for every second since the
    behaviour was set, capped at `max_latency_ms`, plus or minus `jitter_ms`."""

    type: Literal["degraded_performance"] = "degraded_performance"
    base_latency_ms: NonNegativeFloat = 500.0
    growth_ms_per_s: NonNegativeFloat = 0.0
    max_latency_ms: PositiveFloat = 30_000.0
    jitter_ms: NonNegativeFloat = 0.0


class IntermittentFailures(_Spec):
    """Serve a `success_rate` share of requests (seeded draw per request); the rest get `failure`."""

    type: Literal["intermittent_failures"] = "intermittent_failures"
    success_rate: Probability
    failure: Behavior = AlwaysFail()


class RateLimited(_Spec):
    """Serve `limit` requests per `window_s` window (batch entries count one each); over it, HTTP 429
    with Retry-After and a JSON-RPC -32005 body (on WebSocket, the -32005 error)."""

    type: Literal["rate_limited"] = "rate_limited"
    limit: NonNegativeInt
    window_s: PositiveFloat = 1.0
    retry_after_s: PositiveFloat | None = None  # default: until the window ends
    code: int = LIMIT_EXCEEDED
    message: str = "request rate exceeded"


class NodeOutOfSync(_Spec):
    """Serve a head `lag` blocks behind (block number, tags, newHeads, eth_getLogs upper bound,
    eth_syncing), until `recovery_after_s` seconds after the behaviour was set (never if null)."""

    type: Literal["node_out_of_sync"] = "node_out_of_sync"
    lag: PositiveInt
    recovery_after_s: PositiveFloat | None = None


# --- misbehaviours that make wrong answers possible (issue 10) ---------------------------------------

MAX_CHAIN_ID = 2**63 - 37  # EIP-2294's bound
Damage = Literal["malformed", "missing", "wrong_value"]
DAMAGES: tuple[Damage, ...] = get_args(Damage)


class WrongChain(_Spec):
    """Serve another chain, as a misconfigured upstream does: its chain id (eth_chainId, net_version,
    each transaction's chainId), its blocks, hashes, transactions, receipts and logs, and its head,
    `head_offset` blocks away from this chain's (negative: behind), for requests and newHeads alike.
    `chain_id` should differ from the provider's own (else only the head offset is wrong)."""

    type: Literal["wrong_chain"] = "wrong_chain"
    chain_id: Annotated[int, Field(ge=1, le=MAX_CHAIN_ID)] = 11_155_111  # Sepolia's
    head_offset: int = 0


class Corrupt(_Spec):
    """Damage a `rate` share of answers (a seeded draw per request; batch entries each): one field of
    the result, picked at random, gets a kind of `damage` drawn among those given. `malformed`: a hex
    value made invalid (its last digit becomes `z`); `missing`: a field dropped (a scalar result
    becomes null); `wrong_value`: a hex value's last digit changed (well formed but wrong: only a
    cross-check finds it). `methods` limits it to those methods (default: all). Answers with nothing to
    damage (false, [], null) and subscription pushes stay intact."""

    type: Literal["corrupt"] = "corrupt"
    rate: Probability = 0.1
    damage: Annotated[list[Damage], Field(min_length=1)] = Field(default_factory=lambda: list(DAMAGES))
    methods: Annotated[list[str], Field(min_length=1)] | None = None


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: PositiveFloat
    behavior: Behavior


class Schedule(_Spec):
    """Run `phases` one after the other (timed from when the behaviour was set; each phase's own
    timers start with the phase), then `then`, or start over if `repeat` (flapping)."""

    type: Literal["schedule"] = "schedule"
    phases: Annotated[list[Phase], Field(min_length=1)]
    repeat: bool = False
    then: Behavior = Healthy()


class CascadingFailure(_Spec):
    """Healthy for `healthy_s`, then `degraded` for `degraded_s`, then `failed` for `failed_s`, then
    `recovered` for good."""

    type: Literal["cascading_failure"] = "cascading_failure"
    healthy_s: NonNegativeFloat = 10.0
    degraded_s: NonNegativeFloat = 10.0
    failed_s: NonNegativeFloat = 10.0
    degraded: Behavior = DegradedPerformance(base_latency_ms=1000.0)
    failed: Behavior = AlwaysFail()
    recovered: Behavior = Healthy()


class MethodSpecific(_Spec):
    """A behaviour per method name, `default` for the others. The name `eth_subscription` governs
    subscription pushes (e.g. always_fail there stops newHeads while requests still work)."""

    type: Literal["method_specific"] = "method_specific"
    methods: dict[str, Behavior]
    default: Behavior = Healthy()


class ParamRule(BaseModel):
    """A condition on a request's params; every condition given must hold. `then` defaults to the
    error a real provider gives for it (range too large, missing trie node) or always_fail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str | None = None  # None: any method
    block_range_over: PositiveInt | None = None  # eth_getLogs covering more blocks than this
    block_older_than: NonNegativeInt | None = None  # reads a block more than this many below the head
    params_prefix: list[Any] | None = None  # the positional params start with these values
    then: Behavior | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> ParamRule:
        if self.block_range_over is None and self.block_older_than is None and self.params_prefix is None:
            raise ValueError("give at least one of block_range_over, block_older_than, params_prefix")
        if self.block_range_over is not None and self.method not in (None, "eth_getLogs"):
            raise ValueError("block_range_over applies to eth_getLogs only")
        return self


class ParamSensitive(_Spec):
    """The first rule whose conditions hold decides; `otherwise` for requests no rule matches."""

    type: Literal["param_sensitive"] = "param_sensitive"
    rules: Annotated[list[ParamRule], Field(min_length=1)]
    otherwise: Behavior = Healthy()


class AllOf(_Spec):
    """Apply several behaviours together, in order: delays add up, the largest lag wins, and the
    first behaviour that fails, times out or drops decides the answer."""

    type: Literal["all_of"] = "all_of"
    behaviors: Annotated[list[Behavior], Field(min_length=1)]


def _shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


BehaviorSpec = (
    Healthy
    | Latency
    | AlwaysFail
    | ErrorCode
    | AlwaysTimeout
    | DropConnection
    | DegradedPerformance
    | IntermittentFailures
    | RateLimited
    | NodeOutOfSync
    | Schedule
    | CascadingFailure
    | MethodSpecific
    | ParamSensitive
    | AllOf
    | WrongChain
    | Corrupt
)
Behavior = Annotated[
    Annotated[BehaviorSpec, Field(discriminator="type")],
    BeforeValidator(_shorthand),
]

for _model in (
    IntermittentFailures,
    Phase,
    Schedule,
    CascadingFailure,
    MethodSpecific,
    ParamRule,
    ParamSensitive,
    AllOf,
):
    _model.model_rebuild()  # resolve the forward references to `Behavior`

_ADAPTER: TypeAdapter[BehaviorSpec] = TypeAdapter(Behavior)
_BEHAVIOR_CLASSES: tuple[type[BaseModel], ...] = get_args(BehaviorSpec)
BEHAVIOR_TYPES = tuple(m.model_fields["type"].default for m in _BEHAVIOR_CLASSES)


def is_behavior(value: object) -> TypeGuard[BehaviorSpec]:
    """Whether `value` is a validated behaviour spec (an instance of one of the behaviour models)."""
    return isinstance(value, _BEHAVIOR_CLASSES)


class BehaviorError(ValueError):
    """A behaviour spec that does not validate; `problems` name each field by its path in the input."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))


def parse_behavior(value: Any) -> BehaviorSpec:
    """Validate a behaviour given as JSON-like data (or a bare type name)."""
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise BehaviorError([_problem(err, value) for err in exc.errors()]) from None


def dump_behavior(spec: BehaviorSpec) -> dict[str, Any]:
    """The spec as JSON data with every default filled in: PUT it back to get the same behaviour."""
    return _ADAPTER.dump_python(spec, mode="json")


def _problem(err: Any, value: Any) -> dict[str, str]:
    path = _field_path(err["loc"], value)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        path = f"{path}.type" if path else "type"
    return {"field": path or "(behavior)", "message": err["msg"]}


def _field_path(loc: tuple[Any, ...], value: Any) -> str:
    """Render pydantic's loc as a path in the user's input, leaving out the union tags pydantic adds."""
    parts: list[str] = []
    node = _shorthand(value)
    for element in loc:
        if isinstance(node, dict) and element not in node and node.get("type") == element:
            continue  # the discriminator tag, not a field
        if isinstance(element, int):
            parts.append(f"[{element}]")
            node = node[element] if isinstance(node, list) and 0 <= element < len(node) else None
        else:
            parts.append(f".{element}" if parts else str(element))
            node = _shorthand(node.get(element)) if isinstance(node, dict) else None
    return "".join(parts)
