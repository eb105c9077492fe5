"""limit_data: connections cut after some bytes (Toxiproxy's toxics/limit_data.go)."""

from __future__ import annotations

from typing import Literal

from lab.faults.actions.base import ToxicAction, register
from lab.faults.toxics import Attribute


@register
class LimitDataAction(ToxicAction):
    """Close each connection after `bytes` bytes."""

    type: Literal["limit_data"] = "limit_data"
    bytes: Attribute
