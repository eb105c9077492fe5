"""The newHeads a client of the gateway receives, for container tests: the load's own subscriber
(lab.load.ws) on a thread of its own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from lab.load.ws import Subscription


@contextlib.contextmanager
def new_heads(ws_url: str) -> Iterator[list[dict[str, Any]]]:
    """The heads (rows of the record's `heads` table) received from `ws_url` while the block runs."""
    heads: list[dict[str, Any]] = []
    stop = threading.Event()
    subscription = Subscription(
        ws_url, "newHeads", subscriber="s", on_head=heads.append, on_request=lambda *_: None
    )
    receiver = threading.Thread(target=subscription.run, args=(stop,), daemon=True)
    receiver.start()
    try:
        yield heads
    finally:
        stop.set()
        subscription.close()
        receiver.join(timeout=10)
