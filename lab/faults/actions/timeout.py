"""timeout: a silent peer (Toxiproxy's toxics/timeout.go)."""

from __future__ import annotations

from typing import Literal

from lab.durations import Duration
from lab.faults.actions.base import ToxicAction, register


@register
class TimeoutAction(ToxicAction):
    """Drop all data and close the connection after `timeout` (0: keep it open, silent)."""

    type: Literal["timeout"] = "timeout"
    timeout: Duration = 0.0
