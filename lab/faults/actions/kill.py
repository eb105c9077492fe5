"""kill: a container's processes killed."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class KillAction(ContainerAction):
    """Kill the container (lifted by starting it again)."""

    takes_down: ClassVar[bool] = True
    type: Literal["kill"] = "kill"
    signal: str = "SIGKILL"

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.kill(target, signal=self.signal, name=name)
