"""Rules that span fields of a scenario: unique ids, known targets, actions that fit their target, a
timeline that can be planned. Each problem names its field by path, like pydantic's own errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    target = entry.target
    if target is None or (target not in RESERVED_TARGETS and target not in providers):
        issues.append(_target_issue(path, target, providers))
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
            issues.append(_after_issue(path, entry.after, ids))
        elif entry.after == ids[i]:
            issues.append((f"{path}.after", "an entry cannot start after itself"))
    return issues


def _target_issue(path: str, target: object, providers: list[str]) -> tuple[str, str]:
    known = ", ".join([*providers, GATEWAY, ALL, RANDOM])
    if target is None:
        return f"{path}.target", f"required: one of {known}"
    return f"{path}.target", f"unknown target {target!r}; expected one of {known}"


def _after_issue(path: str, after: object, ids: list[str]) -> tuple[str, str]:
    return f"{path}.after", f"no entry with id {after!r}; ids: {', '.join(filter(None, ids))}"


def reference_issues(data: object) -> list[tuple[str, str]]:
    """Unknown targets and `after:` ids in a scenario as read (plain data), for a scenario that also has
    field errors: the model's own checks run only once every field is valid, and a user fixing the
    file should see every problem at once. Whatever cannot be told from the data is left out."""
    if not isinstance(data, dict):
        return []
    topology = data.get("topology")
    raw_providers = topology.get("providers") if isinstance(topology, dict) else None
    if not isinstance(raw_providers, list):
        return []
    providers = [p["id"] for p in raw_providers if isinstance(p, dict) and isinstance(p.get("id"), str)]
    faults = data.get("faults")
    if not isinstance(faults, list):
        return []

    def default_id(i: int, entry: Any) -> str:
        action = entry.get("action") if isinstance(entry, dict) else None
        return str(action.get("type") if isinstance(action, dict) else "?") + f"-{i}"

    ids = [str(e.get("id") or default_id(i, e)) if isinstance(e, dict) else "" for i, e in enumerate(faults)]
    issues = []
    for i, entry in enumerate(faults):
        if not isinstance(entry, dict):
            continue  # pydantic reports it
        target, after = entry.get("target"), entry.get("after")
        if target is None or (isinstance(target, str) and target not in {*RESERVED_TARGETS, *providers}):
            issues.append(_target_issue(f"faults[{i}]", target, providers))
        if isinstance(after, str) and after not in ids:
            issues.append(_after_issue(f"faults[{i}]", after, ids))
    return issues
