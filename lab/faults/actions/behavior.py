"""behavior: a mock provider switched to another behaviour (its control API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from lab.faults.actions.base import Action, register
from lab.provider.specs import Behavior

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class BehaviorAction(Action):
    """Switch the mock provider's behaviour (lifted by restoring the one it had)."""

    type: Literal["behavior"] = "behavior"
    behavior: Behavior

    def params(self) -> dict[str, Any]:
        return {"behavior": self.behavior.model_dump(mode="json", exclude_none=True)}

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.behavior(target, self.params()["behavior"], name=name)
