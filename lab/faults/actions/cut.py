"""cut: a provider unreachable (its Toxiproxy proxies disabled)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.faults.actions.base import Action, Transport, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class CutAction(Action):
    """Disable the provider's proxies: listeners closed, open connections dropped."""

    takes_down: ClassVar[bool] = True
    type: Literal["cut"] = "cut"
    transport: Transport = "both"

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.cut(target, transport=self.transport, name=name)
