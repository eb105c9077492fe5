"""The fault engine: fault actions (`lab.faults.actions`, one module each, registered once), Toxiproxy's
toxics, process faults through Docker and control-API faults, all applied through one `FaultInjector`
(a lab's `lab.faults`), every one recorded as a liftable `Fault`.

    from lab.faults.actions import LatencyAction
    with lab.faults.apply(LatencyAction(latency="200ms"), "p1"):   # responses from p1 200 ms late
        ...

The names load lazily, so `lab.faults.actions` (imported by the scenario loader and the Locust side)
does not pull in Docker, requests or toxiproxy-python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FaultInjector": "lab.faults.injector",
    "Transport": "lab.faults.injector",
    "UnknownTarget": "lab.faults.injector",
    "Fault": "lab.faults.journal",
    "FaultJournal": "lab.faults.journal",
    "fault_event": "lab.faults.journal",
    "ProxyState": "lab.faults.toxiproxy",
    "ToxiproxyClient": "lab.faults.toxiproxy",
    "ToxiproxyError": "lab.faults.toxiproxy",
    "TOXIC_TYPES": "lab.faults.toxics",
    "Toxic": "lab.faults.toxics",
    "parse_toxic": "lab.faults.toxics",
}

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector, Transport, UnknownTarget
    from lab.faults.journal import Fault, FaultJournal, fault_event
    from lab.faults.toxics import TOXIC_TYPES, Toxic, parse_toxic
    from lab.faults.toxiproxy import ProxyState, ToxiproxyClient, ToxiproxyError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "TOXIC_TYPES",
    "Fault",
    "FaultInjector",
    "FaultJournal",
    "ProxyState",
    "Toxic",
    "ToxiproxyClient",
    "ToxiproxyError",
    "Transport",
    "UnknownTarget",
    "fault_event",
    "parse_toxic",
]
