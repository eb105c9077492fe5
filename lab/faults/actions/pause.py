"""pause: a container frozen."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class PauseAction(ContainerAction):
    """Freeze the container's processes: connections stay open and nothing answers."""

    takes_down: ClassVar[bool] = True
    type: Literal["pause"] = "pause"

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.pause(target, name=name)
