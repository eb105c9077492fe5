"""stop: a container stopped gracefully."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from lab.durations import Duration
from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class StopAction(ContainerAction):
    """Stop the container gracefully (SIGTERM, SIGKILL after `timeout`); lifted by starting it."""

    takes_down: ClassVar[bool] = True
    type: Literal["stop"] = "stop"
    timeout: Duration = 10.0

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.stop(target, timeout_s=round(self.timeout), name=name)
