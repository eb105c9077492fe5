"""The one conversion from the scenario's declared topology to the running lab's description:
`ScenarioTopology` (what a scenario file says) -> `lab.topology.TopologySpec` (what `Lab` starts)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from lab.scenario.models import Scenario
    from lab.topology import GatewaySpec, TopologySpec


class ScenarioTopologyError(ValueError):
    """The scenario's topology cannot become a lab; the message is one line naming the file and field
    (or the `--gateway` option) and what was expected."""


def gateway_of(
    scenario: Scenario, gateway: str | None, source: str, variables: Mapping[str, Any] | None = None
) -> GatewaySpec:
    """The scenario's gateway adapter with its variables, or `gateway` (`lab run --gateway NAME|FILE`)
    instead; `variables` (`--gateway-var`) over both. The scenario's variables and settings are its
    adapter's: they apply unless --gateway names another."""
    from lab.topology import SpecError, load_adapter
    from lab.topology.adapters import resolve_adapter_path

    declared = scenario.topology.gateway
    base_dir = Path(source).parent
    try:
        same = gateway is None or resolve_adapter_path(gateway, base_dir) == resolve_adapter_path(
            declared.spec, base_dir
        )
    except SpecError:
        same = False
    merged: dict[str, Any] = {}
    if same:
        merged.update(declared.variables)
        if declared.settings:
            merged["settings"] = {**merged.get("settings", {}), **declared.settings}
    merged.update(variables or {})
    where = f"{source}: topology.gateway" if gateway is None else "--gateway"
    try:
        spec = load_adapter(
            gateway or declared.spec,
            merged,
            base_dir=base_dir,
            variables_source=f"{source}: topology.gateway.variables" if same else "--gateway-var",
        )
    except (SpecError, OSError, ValueError) as exc:  # a file that is unreadable, binary, or not an adapter
        message = _one_line(exc)
        prefix = "" if message.startswith((source, "--gateway", str(base_dir))) else f"{where}: "
        raise ScenarioTopologyError(f"{prefix}{message}") from None
    settings = spec.values.get("settings")
    if settings and spec.name == "reference":
        from lab.gateway.config import GatewaySettings

        try:
            GatewaySettings.model_validate(settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"topology.gateway.settings.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ScenarioTopologyError(f"{source}: {problems}") from None
    return spec


def to_topology_spec(
    scenario: Scenario, gateway: str | None, source: str, variables: Mapping[str, Any] | None = None
) -> TopologySpec:
    """The lab's TopologySpec for `scenario` (read from `source`); `gateway` (`lab run --gateway`)
    replaces the scenario's gateway adapter, `variables` (`--gateway-var`) set its variables. Provider
    behaviours are seeded from the scenario's seed, so a run can be repeated."""
    from lab.provider.specs import dump_behavior
    from lab.topology import ProviderSpec, TopologySpec

    topology = scenario.topology
    gateway_spec = gateway_of(scenario, gateway, source, variables)
    providers = [
        ProviderSpec(
            id=p.id,
            behavior=dump_behavior(p.behavior),
            block_time=p.block_time or topology.block_time,
            seed=zlib.crc32(f"{scenario.seed}/{p.id}".encode()),  # reproducible behaviours per scenario seed
        )
        for p in topology.providers
    ]
    try:
        return TopologySpec(
            chain=topology.chain, chain_id=topology.chain_id, providers=providers, gateway=gateway_spec
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(map(str, error["loc"]))
        raise ScenarioTopologyError(
            f"{source}: topology{'.' + where if where else ''}: {error['msg']}"
        ) from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
