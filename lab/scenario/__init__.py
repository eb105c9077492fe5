"""Scenarios: a declared fault-injection experiment, validated before anything starts.

scenario = load_scenario("toxics/primary-cut.yml")   # ScenarioError names file, field, expectation
plan = plan_timeline(scenario)                       # every fault with its target and times
spec = lab.scenario.topology.to_topology_spec(scenario, None, "toxics/primary-cut.yml")  # for `Lab`
"""

from lab.durations import Duration, format_duration, parse_duration
from lab.scenario.checks import ScenarioIssues
from lab.scenario.loader import Problem, ScenarioError, load_scenario, parse_scenario
from lab.scenario.models import (
    FaultEntry,
    LoadSpec,
    Scenario,
    ScenarioGateway,
    ScenarioProvider,
    ScenarioTopology,
)
from lab.scenario.slos import RegressionSpec, SLOSpec
from lab.scenario.timeline import Plan, PlanError, PlannedFault, SkippedFault, plan_timeline

__all__ = [
    "Duration",
    "FaultEntry",
    "LoadSpec",
    "Plan",
    "PlanError",
    "PlannedFault",
    "Problem",
    "RegressionSpec",
    "SLOSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioGateway",
    "ScenarioIssues",
    "ScenarioProvider",
    "ScenarioTopology",
    "SkippedFault",
    "format_duration",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
    "plan_timeline",
]
