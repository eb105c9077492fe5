"""The action registry: one list of actions for the scenario loader, its JSON Schema, the nemesis and the
web UI; adding an action is one registered class."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from lab.faults.actions import (
    ACTIONS,
    Action,
    ContainerAction,
    LatencyAction,
    ToxicAction,
    parse_action,
    register,
    unregister,
)
from lab.faults.nemesis import ManualClock, Nemesis
from lab.scenario import ScenarioError, parse_scenario, plan_timeline
from lab.scenario.schema import scenario_schema
from lab.webui.faults import FaultAPI

SCENARIO = """\
name: t
topology:
  providers: [{id: alpha}, {id: beta}]
faults:
  - {id: d, start: 1s, duration: 2s, target: alpha, action: {type: drip, every_ms: 5}}
"""


class DripAction(Action):
    """A throwaway action: the provider answers `every_ms` late (through its behaviour)."""

    type: Literal["drip"] = "drip"
    every_ms: int

    def apply(self, injector: Any, target: str, *, name: str | None = None) -> Any:
        return injector.behavior(target, {"type": "latency", "ms": self.every_ms}, name=name)


@pytest.fixture
def drip() -> Iterator[type[DripAction]]:
    register(DripAction)
    yield DripAction
    unregister("drip")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def apply(self, action: Action, target: str, *, name: str | None = None) -> Any:
        return action.apply(self, target, name=name)

    def behavior(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("behavior", args, kwargs))


def test_a_registered_action_is_everywhere_the_actions_are_listed(drip: type[DripAction]) -> None:
    assert ACTIONS["drip"] is drip
    assert parse_action({"type": "drip", "every_ms": 5}) == drip(every_ms=5)
    scenario = parse_scenario(SCENARIO)  # the scenario's union was rebuilt from the registry
    assert scenario.faults[0].action == drip(every_ms=5)
    assert "DripAction" in scenario_schema()["$defs"]
    recorder = Recorder()
    with Nemesis(plan_timeline(scenario), recorder, lambda e: None, clock=ManualClock()) as nemesis:
        nemesis.run()
    assert recorder.calls == [("behavior", ("alpha", {"type": "latency", "ms": 5}), {"name": "d#0"})]
    listed = {a["type"]: a for a in FaultAPI.from_env({}).actions()}  # the web UI's /api/actions
    assert listed["drip"]["schema"]["required"] == ["every_ms"] and listed["drip"]["targets"] == ["provider"]


def test_an_unregistered_action_is_unknown_again(drip: type[DripAction]) -> None:
    unregister("drip")
    with pytest.raises(ScenarioError, match="unknown type 'drip'"):
        parse_scenario(SCENARIO)
    register(drip)  # for the fixture's own unregister


def test_two_actions_cannot_share_a_type() -> None:
    class OtherLatency(Action):
        type: Literal["latency"] = "latency"

    with pytest.raises(ValueError, match="two actions of type 'latency'"):
        register(OtherLatency)
    assert ACTIONS["latency"] is LatencyAction


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_action_is_complete(name: str) -> None:
    cls = ACTIONS[name]
    assert cls.__doc__, "a docstring: the web UI and the schema show it"
    assert cls.targets <= {"provider", "gateway"} and cls.targets
    if issubclass(cls, ContainerAction):
        assert cls.targets == {"provider", "gateway"}
    if not cls.schedule:
        assert cls.apply is not Action.apply, f"{name} cannot apply itself"
    if issubclass(cls, ToxicAction):
        assert not (cls.takes_down or cls.instant)


def test_latency_converts_to_toxiproxy_units() -> None:
    action = LatencyAction(latency="1m", jitter="250ms", toxicity=0.5)
    assert action.to_toxic() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 0.5,
        "attributes": {"latency": 60_000, "jitter": 250},
    }
    assert parse_action(
        {"type": "slicer", "average_size": 8, "size_variation": 2, "delay": "10ms"}
    ).to_toxic()["attributes"] == {
        "average_size": 8,
        "size_variation": 2,
        "delay": 10_000,
    }  # the slicer's delay is in µs


def test_importing_the_actions_stays_light() -> None:
    code = (
        "import sys, lab.faults.actions, lab.scenario; "
        "print(sorted(m for m in ('docker', 'requests', 'toxiproxy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wrong_chain_and_corrupt_switch_the_provider_behaviour_with_a_valid_spec() -> None:
    from lab.provider.specs import parse_behavior

    recorder = Recorder()
    recorder.apply(parse_action({"type": "wrong_chain", "chain_id": 5, "head_offset": 100}), "p1", name="w")
    recorder.apply(parse_action({"type": "corrupt", "rate": 0.2, "damage": ["missing"]}), "p2")
    recorder.apply(parse_action({"type": "corrupt", "methods": ["eth_getLogs"]}), "p3")
    assert [call[1] for call in recorder.calls] == [
        ("p1", {"type": "wrong_chain", "chain_id": 5, "head_offset": 100}),
        ("p2", {"type": "corrupt", "rate": 0.2, "damage": ["missing"]}),
        ("p3", {"type": "corrupt", "rate": 0.1, "damage": ["malformed", "missing", "wrong_value"],
                "methods": ["eth_getLogs"]}),
    ]  # fmt: skip
    for _, (_, behavior), _ in recorder.calls:
        parse_behavior(behavior)  # what the provider's control API will accept
    with pytest.raises(ValidationError):
        parse_action({"type": "corrupt", "rate": 2})
