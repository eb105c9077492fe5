"""reorg: the chain reorganises: the last `depth` blocks are replaced by a sibling branch (an instant action).

A reorg is a network event: give it `target: all` so that every provider follows the new branch. A
provider left out keeps serving the orphaned branch, as a node stuck on a minority fork does (the
checker judges its answers for the replaced blocks wrong). The fork block is decided once from the
first target's head; the other targets of the same entry, applied within one block time of it with the
same depth, take the same fork block, so every provider agrees on the new branch.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from lab.faults.actions.base import Action, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault

MAX_DEPTH = 64  # as deep as "finalized" (lab.provider.chain.FINALIZED_DEPTH): no deeper reorg exists

# injector -> (monotonic time, depth, fork block, block time) of its last reorg
_last_reorg: weakref.WeakKeyDictionary[Any, tuple[float, int, int, float]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@register
class ReorgAction(Action):
    """Replace the provider's last `depth` blocks by a sibling branch (new hashes, transactions and logs);
    later blocks build on it and newHeads subscribers get the new branch from the fork up. Instant:
    nothing to lift, the chain stays reorganised."""

    instant: ClassVar[bool] = True
    type: Literal["reorg"] = "reorg"
    depth: Annotated[int, Field(ge=1, le=MAX_DEPTH, description="blocks replaced (the head included)")] = 3

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        url = injector._control_url(target)
        with _lock:
            fork_block = self._shared_fork(injector)
            if fork_block is None:
                health = injector.control.provider_health(url)
                fork_block = max(1, int(health["chain_head"]) - self.depth + 1)
                block_time = float(health.get("block_time") or 1.0)
                _last_reorg[injector] = (time.monotonic(), self.depth, fork_block, block_time)
        answer = injector.control.request("POST", f"{url}/_lab/reorg", json={"fork_block": fork_block})
        params = {
            "depth": self.depth,
            "fork_block": fork_block,
            "head": answer.get("head") if isinstance(answer, dict) else None,
            "forks": answer.get("forks") if isinstance(answer, dict) else None,
        }
        return injector.journal.record("reorg", target, params, None, name=name, instant=True)

    def _shared_fork(self, injector: FaultInjector) -> int | None:
        """The fork block of this injector's reorg of the same depth less than a block time ago."""
        last = _last_reorg.get(injector)
        if last is None:
            return None
        at, depth, fork_block, block_time = last
        return fork_block if depth == self.depth and time.monotonic() - at < block_time else None
