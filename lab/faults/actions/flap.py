"""flap: a target going down and up again, expanded by the timeline into down windows."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from lab.durations import Duration
from lab.faults.actions.base import ACTIONS, Action, ContainerAction, register

PositiveDuration = Annotated[Duration, Field(gt=0)]


@register
class FlapAction(ContainerAction):
    """Take the target down for `down` every `interval`, for the entry's duration (Lasso's
    provider_flapping(provider, flap_interval, flap_duration, total_duration))."""

    takes_down: ClassVar[bool] = True
    schedule: ClassVar[bool] = True
    type: Literal["flap"] = "flap"
    interval: PositiveDuration
    down: PositiveDuration
    mode: Literal["cut", "kill", "stop", "pause"] = "cut"

    @model_validator(mode="after")
    def _down_shorter(self) -> FlapAction:
        if self.down >= self.interval:
            raise ValueError("down must be shorter than interval")
        return self

    def down_action(self) -> Action:
        """The primitive action each down window applies."""
        return ACTIONS[self.mode].model_validate({"type": self.mode})
