"""The scenario: one declared fault-injection experiment (topology, load, fault timeline, SLOs, seed).

Every model forbids unknown fields, so a typo is an error that names the field, not a silently ignored
setting. Durations are written `500ms`, `30s`, `2m` or as seconds. Cross-field rules (unique ids,
known targets, `after:` references) are checked on the whole scenario and reported with their paths.
The load's numbers are bounded (users, rates, durations) so a typo such as `users: 1e23` is refused by
`lab scenario validate`, not found by the lab mid-run.

These are declarations; `lab.scenario.topology.to_topology_spec` turns `ScenarioTopology` into the
running lab's `lab.topology.TopologySpec`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from lab.durations import Duration
from lab.faults.actions import AnyAction, any_action, on_change
from lab.provider.specs import Behavior, Healthy
from lab.scenario.slos import RegressionSpec, SLOSpec

Id = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="lower-case letters, digits, - and _")
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveDuration = Annotated[Duration, Field(gt=0)]

# Bounds on what a lab on one machine can do; beyond them a number is a typo, refused when validating.
MAX_RUN_S = 7 * 24 * 3600.0  # a run, and any offset in it
MAX_USERS = 10_000  # simulated users of one kind (HTTP, subscribers)
MAX_RATE = 10_000.0  # users spawned per second; requests per second per user
MAX_WEIGHT = 1_000_000.0
MAX_CHAIN_ID = 2**63 - 37  # EIP-2294's bound
Users = Annotated[int, Field(ge=1, le=MAX_USERS)]
SomeUsers = Annotated[int, Field(ge=0, le=MAX_USERS)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE)]
Offset = Annotated[Duration, Field(le=MAX_RUN_S)]  # a time within a run
Span = Annotated[Duration, Field(gt=0, le=MAX_RUN_S)]  # a length of time within a run

# Targets that are not provider ids.
GATEWAY = "gateway"
ALL = "all"
RANDOM = "random"
RESERVED_TARGETS = frozenset({GATEWAY, ALL, RANDOM})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- topology -----------------------------------------------------------------------------------------


ProviderId = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9-]{0,30}$", description="lower-case letters, digits and -; also its host name"
    ),
]


class ScenarioProvider(StrictModel):
    """One mock provider behind its own Toxiproxy proxies (one per transport), as the scenario declares it."""

    id: ProviderId
    behavior: Behavior = Healthy()
    block_time: Annotated[Span, Field(le=3600)] | None = Field(
        default=None, description="default: the topology's"
    )


class ScenarioGateway(StrictModel):
    """The gateway under test, as the scenario declares it; `lab run --gateway NAME|FILE` replaces `spec`
    (and then the variables here, which belong to this adapter, are not used)."""

    spec: str = Field(
        default="reference",
        description="a gateway adapter: a shipped one by name (`lab gateways`) or an adapter file",
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="the adapter's variables (e.g. HAProxy's inter, fall, retries)"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="the reference gateway's settings (breaker thresholds, timeouts)",
    )


class ScenarioTopology(StrictModel):
    """The providers and the gateway the scenario runs against (the lab's TopologySpec is made from it)."""

    chain: str = Field(default="ethereum", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    chain_id: Annotated[int, Field(ge=1, le=MAX_CHAIN_ID)] = 1
    block_time: Annotated[Span, Field(le=3600)] = 1.0
    providers: Annotated[list[ScenarioProvider], Field(min_length=1, max_length=64)]
    gateway: ScenarioGateway = ScenarioGateway()

    @property
    def provider_ids(self) -> list[str]:
        return [p.id for p in self.providers]


# --- load ---------------------------------------------------------------------------------------------

# A read-heavy dapp/indexer mix, weights in relative units.
DEFAULT_METHODS: dict[str, float] = {
    "eth_blockNumber": 25,
    "eth_call": 20,
    "eth_getBalance": 12,
    "eth_getBlockByNumber": 10,
    "eth_getTransactionReceipt": 8,
    "eth_getLogs": 6,
    "eth_getTransactionCount": 5,
    "eth_chainId": 5,
    "eth_gasPrice": 4,
    "eth_getCode": 3,
    "eth_estimateGas": 2,
}


class BatchSpec(StrictModel):
    """A `share` of HTTP calls go out as JSON-RPC batches of `size` entries drawn from the method mix."""

    share: Probability = 0.0
    size: Annotated[int, Field(ge=2, le=100)] = 5


class SubscriberSpec(StrictModel):
    """WebSocket users, each holding one subscription for the whole run."""

    new_heads: SomeUsers = 0
    logs: SomeUsers = 0

    @property
    def total(self) -> int:
        return self.new_heads + self.logs


class SteadyShape(StrictModel):
    """`users` from the start (spawned at `spawn_rate`) until the end."""

    type: Literal["steady"] = "steady"


class RampShape(StrictModel):
    """From `start_users` up to `users`, linearly over `over` (default: the whole run), then hold."""

    type: Literal["ramp"] = "ramp"
    start_users: SomeUsers = 0
    over: Span | None = None


class SpikeShape(StrictModel):
    """`users`, except `peak_users` from `at` for `hold`."""

    type: Literal["spike"] = "spike"
    at: Offset
    hold: Span
    peak_users: Users
    spawn_rate: Rate | None = Field(default=None, description="default: peak_users/s")


class StepShape(StrictModel):
    """`step_users` more users every `every`, up to `users`."""

    type: Literal["step"] = "step"
    step_users: Users
    every: Span


Shape = Annotated[SteadyShape | RampShape | SpikeShape | StepShape, Field(discriminator="type")]


MAX_TOTAL_RATE = 1_000_000.0  # requests per second of the whole load (open model)
MAX_IN_FLIGHT = 1_000_000


class LoadSpec(StrictModel):
    """The HTTP load. In the open model (the default) requests arrive on a schedule, `rate` per second,
    whatever happened to the ones before; `users` is then the number of virtual clients the arrivals are
    dealt to in turn (the record's `client`), and the shape scales the rate as it would scale the users.
    In the closed model (`model: closed`, Locust's semantics) each of `users` sends its next request only
    after the last one was answered, at most `rate_per_user` per second."""

    model: Literal["open", "closed"] = Field(
        default="open",
        description="open: requests on a schedule (no coordinated omission); closed: users loop",
    )
    rate: Annotated[float, Field(gt=0, le=MAX_TOTAL_RATE)] | None = Field(
        default=None,
        description="open model: requests per second of the whole load (before the shape); "
        "default: users × rate_per_user",
    )
    arrivals: Literal["constant", "poisson"] = Field(
        default="constant", description="open model: evenly spaced or Poisson (exponential gaps) arrivals"
    )
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT)] = Field(
        default=1000,
        description="open model: requests in flight at most (split between Locust processes); an arrival "
        "beyond it is recorded as failed (`not_sent`), never silently skipped",
    )
    users: Users = 10
    spawn_rate: Rate = 10.0
    duration: Span = 60.0
    rate_per_user: Rate | None = Field(
        default=5.0, description="requests per second per HTTP user; null: back to back (closed model only)"
    )
    timeout: Annotated[Span, Field(le=3600)] = Field(
        default=5.0, description="the client's timeout for each request"
    )
    strategy: Literal["fastest", "load-balanced", "latency-weighted"] | None = Field(
        default=None, description="route requests to /rpc/<strategy>/<chain>; default: the gateway's"
    )
    methods: Annotated[dict[str, Annotated[float, Field(gt=0, le=MAX_WEIGHT)]], Field(min_length=1)] = Field(
        default_factory=lambda: dict(DEFAULT_METHODS)
    )
    batch: BatchSpec = BatchSpec()
    subscribers: SubscriberSpec = SubscriberSpec()
    shape: Shape = SteadyShape()

    @property
    def target_rate(self) -> float | None:
        """The open model's requests per second before the shape (None in the closed model)."""
        if self.model == "closed":
            return None
        if self.rate is not None:
            return self.rate
        return self.users * self.rate_per_user if self.rate_per_user else None

    @model_validator(mode="after")
    def _shape_fits(self) -> LoadSpec:
        if self.model == "open" and self.target_rate is None:
            raise ValueError("the open model needs a rate (or users and rate_per_user)")
        if isinstance(self.shape, RampShape) and self.shape.start_users > self.users:
            raise ValueError("shape.start_users must not exceed users")
        if isinstance(self.shape, StepShape) and self.shape.step_users > self.users:
            raise ValueError("shape.step_users must not exceed users")
        return self


# --- fault actions: lab.faults.actions (one module per action, one registry) ------------------------


# --- the timeline -------------------------------------------------------------------------------------


class Repeat(StrictModel):
    """Run the entry again every `every`: `count` times in all, or until `until` (an offset), or, with
    neither, until the run ends."""

    every: Span
    count: PositiveInt | None = None
    until: Offset | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Repeat:
        if self.count is not None and self.until is not None:
            raise ValueError("give count or until, not both")
        return self


class FaultEntry(StrictModel):
    """One entry of the fault timeline. Offsets count from the start of the load.

    Start: `start` (an offset, default 0) or `after` another entry's end plus `delay`. End: `duration`,
    or `end` (an offset), or neither (active until the run ends). Target: a provider id, `gateway`,
    `all` (every provider) or `random` (a provider chosen with the scenario's seed, keeping at least
    `min_live` providers up). `probability` skips each occurrence with the complement (seeded).
    """

    id: Id | None = Field(default=None, description="default: '<action type>-<index>'")
    start: Offset | None = None
    after: str | None = None
    delay: Offset | None = None
    duration: Span | None = None
    end: Offset | None = None
    repeat: Repeat | None = None
    probability: Probability = 1.0
    target: str | None = None
    min_live: NonNegativeInt | None = Field(default=None, description="with target random; default 1")
    among: list[str] | None = Field(default=None, description="with target random: the candidates")
    action: AnyAction

    @model_validator(mode="after")
    def _consistent(self) -> FaultEntry:
        if self.after is not None and self.start is not None:
            raise ValueError("give start or after, not both (use delay with after)")
        if self.delay is not None and self.after is None:
            raise ValueError("delay only applies with after")
        if self.duration is not None and self.end is not None:
            raise ValueError("give duration or end, not both")
        if self.action.instant and (self.duration is not None or self.end is not None):
            raise ValueError(f"{self.action.type} is instant: it takes no duration or end")
        if self.end is not None and self.repeat is not None:
            raise ValueError("end with repeat: give a duration for each occurrence instead")
        if self.end is not None and self.start is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        if self.repeat is not None and self.duration is not None and self.repeat.every < self.duration:
            raise ValueError("repeat.every must not be shorter than duration (occurrences would overlap)")
        if self.repeat is not None and not self.action.instant and self.duration is None:
            raise ValueError("a repeated entry needs a duration")
        if (self.min_live is not None or self.among is not None) and self.target != RANDOM:
            raise ValueError("min_live and among only apply with target: random")
        return self


# --- the scenario -------------------------------------------------------------------------------------


class Scenario(StrictModel):
    name: Id
    description: str = ""
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] = 0
    topology: ScenarioTopology
    load: LoadSpec = LoadSpec()
    faults: list[FaultEntry] = Field(default_factory=list)
    slos: SLOSpec = Field(default_factory=SLOSpec)
    regression: RegressionSpec = Field(default_factory=RegressionSpec)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        from lab.scenario.checks import check_scenario

        check_scenario(self)
        return self

    def fault_ids(self) -> list[str]:
        """The entries' ids, defaults filled in."""
        return [entry.id or f"{entry.action.type}-{i}" for i, entry in enumerate(self.faults)]

    def with_overrides(
        self, *, duration: float | None = None, users: int | None = None, seed: int | None = None
    ) -> Scenario:
        """A copy with `lab run`'s command-line overrides applied (and validated again)."""
        data = self.model_dump(mode="python", round_trip=True)
        if duration is not None:
            data["load"]["duration"] = duration
        if users is not None:
            data["load"]["users"] = users
        if seed is not None:
            data["seed"] = seed
        return Scenario.model_validate(data)


def _take_registered_actions() -> None:
    """An action registered after this module was built (a plugin, a test) becomes a valid
    FaultEntry.action: the union is built again from the registry, and the models that hold it."""
    FaultEntry.model_fields["action"].annotation = any_action()
    FaultEntry.model_rebuild(force=True)
    Scenario.model_rebuild(force=True)


on_change(_take_registered_actions)
