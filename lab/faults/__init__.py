"""Faults for a running lab: typed Toxiproxy toxics, process faults through Docker, and control-API
faults (provider behaviours, gateway circuit breakers). Every fault is recorded and can be lifted.

The public surface: `FaultInjector` (a lab's `lab.faults`), `Fault` and `FaultJournal` (the records),
the toxic models (`Latency`, `Bandwidth`, ... and `parse_toxic`), and `ToxiproxyClient`.
"""

from lab.faults.injector import FaultInjector, Transport, UnknownTarget
from lab.faults.journal import Fault, FaultJournal
from lab.faults.proxies import ProxyState, ToxiproxyClient, ToxiproxyError
from lab.faults.toxics import (
    TOXIC_TYPES,
    Bandwidth,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    Toxic,
    parse_toxic,
)

__all__ = [
    "TOXIC_TYPES",
    "Bandwidth",
    "Fault",
    "FaultInjector",
    "FaultJournal",
    "Latency",
    "LimitData",
    "ProxyState",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Timeout",
    "Toxic",
    "ToxiproxyClient",
    "ToxiproxyError",
    "Transport",
    "UnknownTarget",
    "parse_toxic",
]
