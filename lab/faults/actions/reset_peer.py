"""reset_peer: connections reset by the peer (Toxiproxy's toxics/reset_peer.go)."""

from __future__ import annotations

from typing import Literal

from lab.durations import Duration
from lab.faults.actions.base import ToxicAction, register


@register
class ResetPeerAction(ToxicAction):
    """On the first data, wait `timeout`, then reset the connection (TCP RST): the client sees
    "connection reset by peer" instead of an answer."""

    type: Literal["reset_peer"] = "reset_peer"
    timeout: Duration = 0.0
