"""slow_close: a connection that lingers (Toxiproxy's toxics/slow_close.go)."""

from __future__ import annotations

from typing import Literal

from lab.durations import Duration
from lab.faults.actions.base import ToxicAction, register


@register
class SlowCloseAction(ToxicAction):
    """Delay the close of each connection by `delay` after the end of its data."""

    type: Literal["slow_close"] = "slow_close"
    delay: Duration
