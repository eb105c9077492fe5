"""latency: delay the data (Toxiproxy's toxics/latency.go)."""

from __future__ import annotations

from typing import Literal

from lab.durations import Duration
from lab.faults.actions.base import ToxicAction, register


@register
class LatencyAction(ToxicAction):
    """Delay each chunk by `latency` ± `jitter`."""

    type: Literal["latency"] = "latency"
    latency: Duration
    jitter: Duration = 0.0
