"""The fault actions: one small module per action, each registered once (the way Toxiproxy registers each
toxic in toxics/*.go). The scenario loader, the JSON Schema, the nemesis and the web UI's Faults tab all
take the list from `ACTIONS`.

    from lab.faults.actions import LatencyAction
    fault = lab.faults.apply(LatencyAction(latency="200ms"), "p1")   # or a mapping: {"type": "latency", ...}

Adding an action: a new module here with one `@register`ed subclass of `Action` (or `ToxicAction`,
`ContainerAction`) that implements `apply`, and its test. Importing this package loads every module in
it and nothing heavier than pydantic (no Docker, Toxiproxy or requests).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter

from lab.faults.actions.base import (
    ACTIONS,
    Action,
    ContainerAction,
    TargetKind,
    ToxicAction,
    Transport,
    action_type,
    on_change,
    register,
    unregister,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"):
    importlib.import_module(f"{__name__}.{_module}")

from lab.faults.actions.bandwidth import BandwidthAction  # noqa: E402
from lab.faults.actions.behavior import BehaviorAction  # noqa: E402
from lab.faults.actions.breaker_open import BreakerOpenAction  # noqa: E402
from lab.faults.actions.corrupt import CorruptAction  # noqa: E402
from lab.faults.actions.cut import CutAction  # noqa: E402
from lab.faults.actions.flap import FlapAction  # noqa: E402
from lab.faults.actions.kill import KillAction  # noqa: E402
from lab.faults.actions.latency import LatencyAction  # noqa: E402
from lab.faults.actions.limit_data import LimitDataAction  # noqa: E402
from lab.faults.actions.memory import MemoryAction  # noqa: E402
from lab.faults.actions.partition import PartitionAction  # noqa: E402
from lab.faults.actions.pause import PauseAction  # noqa: E402
from lab.faults.actions.reorg import ReorgAction  # noqa: E402
from lab.faults.actions.reset_peer import ResetPeerAction  # noqa: E402
from lab.faults.actions.restart import RestartAction  # noqa: E402
from lab.faults.actions.slicer import SlicerAction  # noqa: E402
from lab.faults.actions.slow_close import SlowCloseAction  # noqa: E402
from lab.faults.actions.stop import StopAction  # noqa: E402
from lab.faults.actions.timeout import TimeoutAction  # noqa: E402
from lab.faults.actions.toxic import GenericToxicAction  # noqa: E402
from lab.faults.actions.wrong_chain import WrongChainAction  # noqa: E402


def any_action() -> Any:
    """The discriminated union (on `type`) of the actions registered now."""
    return Annotated[Union[tuple(ACTIONS.values())], Field(discriminator="type")]  # noqa: UP007


if TYPE_CHECKING:
    AnyAction = Action
else:
    AnyAction = any_action()  # what the scenario's FaultEntry.action is; see on_change for later ones


def parse_action(data: Any) -> Action:
    """An action from a mapping such as `{"type": "latency", "latency": "200ms"}` (ValidationError with
    the field's location otherwise)."""
    if isinstance(data, Action):
        return data
    action: Action = TypeAdapter(any_action()).validate_python(data)
    return action


def describe_actions() -> list[dict[str, Any]]:
    """Each action a person can apply at once (no schedules), for forms: its type, what it applies to,
    whether it takes the target down or is instant, and the JSON Schema of its fields."""
    return [
        {
            "type": name,
            "doc": (cls.__doc__ or "").strip(),
            "targets": sorted(cls.targets),
            "takes_down": cls.takes_down,
            "instant": cls.instant,
            "toxic": issubclass(cls, ToxicAction),
            "schema": cls.model_json_schema(),
        }
        for name, cls in ACTIONS.items()
        if not cls.schedule
    ]


__all__ = [
    "ACTIONS",
    "Action",
    "AnyAction",
    "BandwidthAction",
    "BehaviorAction",
    "BreakerOpenAction",
    "ContainerAction",
    "CorruptAction",
    "CutAction",
    "FlapAction",
    "GenericToxicAction",
    "KillAction",
    "LatencyAction",
    "LimitDataAction",
    "MemoryAction",
    "PartitionAction",
    "PauseAction",
    "ReorgAction",
    "ResetPeerAction",
    "RestartAction",
    "SlicerAction",
    "SlowCloseAction",
    "StopAction",
    "TargetKind",
    "TimeoutAction",
    "ToxicAction",
    "Transport",
    "WrongChainAction",
    "action_type",
    "any_action",
    "describe_actions",
    "on_change",
    "parse_action",
    "register",
    "unregister",
]
