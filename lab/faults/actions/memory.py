"""memory: a container's memory limit squeezed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from lab.faults.actions.base import ContainerAction, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class MemoryAction(ContainerAction):
    """Squeeze the container's memory limit to `limit_mb` (Lasso's memory_pressure, from outside);
    Docker refuses limits below 6 MB."""

    type: Literal["memory"] = "memory"
    limit_mb: Annotated[int, Field(ge=6, le=2**40)]

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.squeeze_memory(target, f"{self.limit_mb}m", name=name)
