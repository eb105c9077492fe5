"""The one conversion from the scenario's declared topology to the running lab's description:
`ScenarioTopology` (what a scenario file says) -> `lab.topology.TopologySpec` (what `Lab` starts)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from lab.scenario.models import Scenario
    from lab.topology import TopologySpec


class ScenarioTopologyError(ValueError):
    """The scenario's topology cannot become a lab; the message is one line naming the file and field
    (or the `--gateway` option) and what was expected."""


def to_topology_spec(scenario: Scenario, gateway: str | None, source: str) -> TopologySpec:
    """The lab's TopologySpec for `scenario` (read from `source`); `gateway` (`lab run --gateway`)
    replaces the scenario's gateway spec. Provider behaviours are seeded from the scenario's seed, so a
    run can be repeated."""
    from lab.provider.specs import dump_behavior
    from lab.topology import ProviderSpec, SpecError, TopologySpec, load_gateway_spec

    topology = scenario.topology
    try:
        gateway_spec = load_gateway_spec(gateway or topology.gateway.spec)
    except (SpecError, OSError, ValueError) as exc:  # a file that is unreadable, binary, or not a spec
        where = f"{source}: topology.gateway.spec" if gateway is None else "--gateway"
        raise ScenarioTopologyError(f"{where}: {_one_line(exc)}") from None
    settings = {**gateway_spec.settings, **topology.gateway.settings}
    if settings and gateway_spec.kind == "reference":
        from lab.gateway.config import GatewaySettings

        try:
            GatewaySettings.model_validate(settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"topology.gateway.settings.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ScenarioTopologyError(f"{source}: {problems}") from None
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
            chain=topology.chain,
            chain_id=topology.chain_id,
            providers=providers,
            gateway=gateway_spec.model_copy(update={"settings": settings}),
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(map(str, error["loc"]))
        raise ScenarioTopologyError(
            f"{source}: topology{'.' + where if where else ''}: {error['msg']}"
        ) from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
