"""bandwidth: throttle the data (Toxiproxy's toxics/bandwidth.go)."""

from __future__ import annotations

from typing import Literal

from lab.faults.actions.base import ToxicAction, register
from lab.faults.toxics import Attribute


@register
class BandwidthAction(ToxicAction):
    """Limit the rate to `rate` KB/s (0 stalls every connection while keeping it open)."""

    type: Literal["bandwidth"] = "bandwidth"
    rate: Attribute
