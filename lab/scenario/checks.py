"""Rules that span fields of a scenario: unique ids, known targets, actions that fit their target, a
timeline that can be planned. Each problem names its field by path, like pydantic's own errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.scenario.models import ALL, GATEWAY, RANDOM, RESERVED_TARGETS

if TYPE_CHECKING:
    from lab.scenario.models import Scenario


class ScenarioIssues(ValueError):
    """Problems found in a scenario, each as (path, message)."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{path}: {message}" for path, message in issues))


def check_scenario(scenario: Scenario) -> None:
    """Raise ScenarioIssues listing every cross-field problem (nothing when the scenario is sound)."""
    issues: list[tuple[str, str]] = []
    providers = scenario.topology.provider_ids
    seen: set[str] = set()
    for i, pid in enumerate(providers):
        path = f"topology.providers[{i}].id"
        if pid in RESERVED_TARGETS | {"toxiproxy"}:
            issues.append(
                (path, f"{pid!r} is reserved (a fault target or a lab container); choose another id")
            )
        if pid in seen:
            issues.append((path, f"duplicate provider id {pid!r}"))
        seen.add(pid)

    ids = scenario.fault_ids()
    for i, name in enumerate(ids):
        if ids.index(name) != i:
            issues.append((f"faults[{i}].id", f"duplicate fault id {name!r}"))
    for i, entry in enumerate(scenario.faults):
        issues += _entry_issues(i, entry, providers, ids)

    if not issues:
        from lab.scenario.timeline import PlanError, plan_timeline

        try:
            plan_timeline(scenario)
        except PlanError as exc:
            issues.append((exc.path, exc.message))
    if issues:
        raise ScenarioIssues(issues)


def _entry_issues(i: int, entry: object, providers: list[str], ids: list[str]) -> list[tuple[str, str]]:
    from lab.scenario.models import FaultEntry

    assert isinstance(entry, FaultEntry)
    issues: list[tuple[str, str]] = []
    action = entry.action
    path = f"faults[{i}]"
    known = ", ".join([*providers, GATEWAY, ALL, RANDOM])
    target = entry.target
    if target is None:
        issues.append((f"{path}.target", f"required: one of {known}"))
    elif target not in RESERVED_TARGETS and target not in providers:
        issues.append((f"{path}.target", f"unknown target {target!r}; expected one of {known}"))
    elif target == GATEWAY and "gateway" not in action.targets:
        issues.append((f"{path}.target", f"{action.type} applies to providers, not the gateway"))
    elif target != GATEWAY and "provider" not in action.targets:
        issues.append((f"{path}.target", f"{action.type} applies to the gateway only"))
    for k, candidate in enumerate(entry.among or ()):
        if candidate not in providers:
            issues.append(
                (f"{path}.among[{k}]", f"unknown provider {candidate!r}; expected one of {providers}")
            )
    if target == RANDOM and entry.min_live is not None and entry.min_live >= len(providers):
        issues.append(
            (
                f"{path}.min_live",
                f"{entry.min_live} leaves no provider to take down (there are {len(providers)})",
            )
        )
    if entry.after is not None:
        if entry.after not in ids:
            issues.append((f"{path}.after", f"no entry with id {entry.after!r}; ids: {', '.join(ids)}"))
        elif entry.after == ids[i]:
            issues.append((f"{path}.after", "an entry cannot start after itself"))
    return issues
