"""The fault action model and its registry.

An action is a frozen pydantic model with a `type` tag. Its fields, bounds and checks are its own; its
class attributes say what it may target and how the timeline treats it; `apply` does it through a
`FaultInjector` and returns the liftable, recorded `Fault`. `@register` puts it in `ACTIONS`, from which
the scenario's discriminated union, the JSON Schema, the nemesis and the web UI take the list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.faults.toxics import ATTRIBUTES, INT64_MAX, FieldProblem, Stream, Toxic, invalid, toxic_name

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault

TargetKind = Literal["provider", "gateway"]
Transport = Literal["http", "ws", "both"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Action(BaseModel):
    """What a timeline entry does. Class attributes say how the nemesis and the timeline treat it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: ClassVar[frozenset[TargetKind]] = frozenset({"provider"})
    takes_down: ClassVar[bool] = False  # the target is unreachable while active (counts for min_live)
    instant: ClassVar[bool] = False  # done at once, nothing to lift (no duration)
    schedule: ClassVar[bool] = False  # expands into other actions over time (the timeline's job)

    type: str

    def params(self) -> dict[str, Any]:
        """The action's settings as recorded in faults.jsonl."""
        return self.model_dump(mode="json", exclude={"type"})

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        """Do it to `target` (a provider id, `gateway`, ...) now; the Fault's `lift()` undoes it."""
        raise TypeError(f"{self.type} is a schedule of other actions: the timeline expands it")


class ContainerAction(Action):
    """An action on a container: a provider's or the gateway's."""

    targets: ClassVar[frozenset[TargetKind]] = frozenset({"provider", "gateway"})


_SCALE = {"ms": 1000, "µs": 1_000_000}  # scenario seconds -> Toxiproxy's time units


def in_toxiproxy_units(value: float, unit: str) -> int:
    """A field's value in Toxiproxy's unit; too large for a float stays too large (the toxic says so)."""
    scaled = value * _SCALE.get(unit, 1)
    return round(scaled) if math.isfinite(scaled) else INT64_MAX + 1


class ToxicAction(Action):
    """A Toxiproxy toxic on the provider's proxies. Its fields are the toxic's attributes by name, in the
    scenario's units (durations as '500ms', sizes in bytes); Toxiproxy's checks apply to the toxic it
    builds. `toxicity` is rolled once per connection (and direction), not per request: with keep-alive,
    0.3 hits about 30 % of connections and every request on them. For a per-request error rate, switch
    the provider's behaviour instead."""

    stream: Stream = "downstream"
    toxicity: Probability = 1.0
    transport: Transport = "both"

    def toxic_type(self) -> str:
        return self.type

    def toxic_attributes(self) -> dict[str, int]:
        """Toxiproxy's attributes in its own units (ms, KB/s, bytes, µs)."""
        units = ATTRIBUTES.get(self.toxic_type(), {})
        return {name: in_toxiproxy_units(getattr(self, name), unit) for name, unit in units.items()}

    def make_toxic(self, name: str | None = None) -> Toxic:
        """The toxic to add (ValidationError located at this action's fields when Toxiproxy would refuse)."""
        try:
            return Toxic(
                type=self.toxic_type(),
                name=name,
                stream=self.stream,
                toxicity=self.toxicity,
                attributes=self.toxic_attributes(),
            )
        except ValidationError as exc:
            raise self._located(exc) from None

    def to_toxic(self) -> dict[str, Any]:
        """The toxic in Toxiproxy's REST form (`lab.faults.parse_toxic` accepts it)."""
        return self.make_toxic().to_api()

    @model_validator(mode="after")
    def _toxiproxy_accepts(self) -> ToxicAction:
        self.make_toxic()  # at load time, not when the nemesis applies it mid-run
        return self

    def _located(self, exc: ValidationError) -> ValidationError:
        """The toxic's errors at this action's fields, with Toxiproxy's unit named."""
        units = ATTRIBUTES.get(self.toxic_type(), {})
        problems: list[FieldProblem] = []
        for error in exc.errors(include_url=False):
            message = error["msg"]
            unit = units.get(str(error["loc"][-1])) if error["loc"] else None
            if error["type"] in ("less_than_equal", "greater_than_equal") and unit:
                message = f"{message} {unit} in Toxiproxy, got {error['input']} {unit}"
            problems.append((self._field(tuple(error["loc"])), message, error["input"]))
        return invalid(type(self).__name__, *problems)

    def _field(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """Where a toxic's error lies in this action: its attributes are this action's fields."""
        return loc[1:] if loc[:1] == ("attributes",) else ()

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        toxic = self.make_toxic(name=toxic_name(name) if name else None)
        return injector.toxic(target, toxic, transport=self.transport, name=name)


A = TypeVar("A", bound=type[Action])

ACTIONS: dict[str, type[Action]] = {}
_listeners: list[Callable[[], None]] = []


def action_type(cls: type[Action]) -> str:
    """The `type` tag of an action class (its `Literal` default)."""
    default = cls.model_fields["type"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__}.type needs a Literal default, e.g. type: Literal['x'] = 'x'")
    return default


def register(cls: A) -> A:
    """Make an action known by its `type` (a class decorator). Registering after the scenario model was
    built (a plugin, a test) tells the listeners, which rebuild what depends on the list."""
    name = action_type(cls)
    if name in ACTIONS and ACTIONS[name] is not cls:
        raise ValueError(f"two actions of type {name!r}: {ACTIONS[name].__name__} and {cls.__name__}")
    ACTIONS[name] = cls
    _changed()
    return cls


def unregister(name: str) -> None:
    ACTIONS.pop(name, None)
    _changed()


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` whenever an action is registered or removed from now on."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in list(_listeners):
        listener()
