"""partition: a container off the lab's network."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class PartitionAction(ContainerAction):
    """Disconnect the container from the lab's network (lifted by reconnecting it with its aliases)."""

    takes_down: ClassVar[bool] = True
    type: Literal["partition"] = "partition"

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.disconnect(target, name=name)
