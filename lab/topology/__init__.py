"""The running lab, the topology stage: a private Docker network, Toxiproxy, N mock providers and the
gateway under test, started with Testcontainers and torn down by label.

    specs.py           what a lab is made of (TopologySpec, ProviderSpec, GatewaySpec), loaded from files
    adapters/          gateway adapters: one YAML file + one Jinja2 config template per gateway
    ports.py           every port, decided before any container starts (PortPlan)
    gateway_config.py  the gateway's configuration file, every upstream a Toxiproxy listener
    endpoints.py       where everything is, as seen from the host (Endpoints)
    containers.py      one Testcontainers class per service, each with its readiness and accessors
    lab.py             Lab: start, heal, stop; the fault injector over it
    cleanup.py         labels, the sweep of what a run left, SIGTERM as an interrupt
    event_stream.py    the host-side client of the gateway's event stream (GatewayEventStream)
    cli.py             `lab up`, `lab down`, `lab ps`
"""

from typing import TYPE_CHECKING, Any

from lab.topology.adapters import AdapterError, load_adapter, shipped_adapters
from lab.topology.endpoints import Endpoints
from lab.topology.specs import (
    GatewaySpec,
    ProviderSpec,
    SpecError,
    TopologySpec,
    load_gateway_spec,
    load_topology_spec,
)

if TYPE_CHECKING:
    from lab.topology.containers import LabError
    from lab.topology.lab import Lab, RpcResult


def __getattr__(name: str) -> Any:
    # The running lab imports Docker, Testcontainers and requests: only when it is used, so that reading
    # a spec (a scenario's validation) stays light.
    if name in ("Lab", "RpcResult"):
        from lab.topology import lab

        return getattr(lab, name)
    if name == "LabError":
        from lab.topology import containers

        return containers.LabError
    raise AttributeError(f"module 'lab.topology' has no attribute {name!r}")


__all__ = [
    "AdapterError",
    "Endpoints",
    "GatewaySpec",
    "Lab",
    "LabError",
    "ProviderSpec",
    "RpcResult",
    "SpecError",
    "TopologySpec",
    "load_adapter",
    "load_gateway_spec",
    "load_topology_spec",
    "shipped_adapters",
]
