"""corrupt: a mock provider damaging a share of its answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from lab.faults.actions.base import Action, Probability, register
from lab.provider.specs import DAMAGES, Damage

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class CorruptAction(Action):
    """Make the mock provider damage a `rate` share of its answers, one field each (`malformed`: invalid
    hex; `missing`: a field dropped; `wrong_value`: a well-formed wrong hex value), only for `methods`
    when given (lifted by restoring the behaviour it had)."""

    type: Literal["corrupt"] = "corrupt"
    rate: Probability = 0.1
    damage: Annotated[list[Damage], Field(min_length=1)] = Field(default_factory=lambda: list(DAMAGES))
    methods: Annotated[list[str], Field(min_length=1)] | None = None

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        behavior: dict[str, Any] = {"type": "corrupt", "rate": self.rate, "damage": list(self.damage)}
        if self.methods is not None:
            behavior["methods"] = list(self.methods)
        return injector.behavior(target, behavior, name=name)
