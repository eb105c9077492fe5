"""wrong_chain: a mock provider serving another chain, as a misconfigured upstream does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from lab.faults.actions.base import Action, register
from lab.provider.specs import MAX_CHAIN_ID, WrongChain

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class WrongChainAction(Action):
    """Make the mock provider answer as a node of another chain: its chain id, blocks, hashes,
    transactions and logs, and a head `head_offset` blocks from this chain's (lifted by restoring the
    behaviour it had). A gateway should notice the chain id and keep it out."""

    type: Literal["wrong_chain"] = "wrong_chain"
    chain_id: Annotated[int, Field(ge=1, le=MAX_CHAIN_ID)] = WrongChain().chain_id
    head_offset: int = 0

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        behavior = {"type": "wrong_chain", "chain_id": self.chain_id, "head_offset": self.head_offset}
        return injector.behavior(target, behavior, name=name)
