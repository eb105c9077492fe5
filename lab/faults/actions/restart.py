"""restart: a container restarted (an instant action)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.durations import Duration
from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class RestartAction(ContainerAction):
    """Restart the container (instant: no duration; the Fault has ended when it returns)."""

    instant: ClassVar[bool] = True
    type: Literal["restart"] = "restart"
    timeout: Duration = 10.0

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.restart(target, timeout_s=round(self.timeout), name=name)
