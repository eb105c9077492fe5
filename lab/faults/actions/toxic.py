"""toxic: any Toxiproxy toxic by its type, with attributes in Toxiproxy's own units."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from lab.faults.actions.base import ToxicAction, in_toxiproxy_units, register


@register
class GenericToxicAction(ToxicAction):
    """Any Toxiproxy toxic type with its attributes in Toxiproxy's own units (ms, KB/s, bytes, µs)."""

    type: Literal["toxic"] = "toxic"
    toxic: Annotated[str, Field(min_length=1)]
    attributes: dict[str, int | float] = Field(default_factory=dict)

    def toxic_type(self) -> str:
        return self.toxic

    def toxic_attributes(self) -> dict[str, int]:
        return {name: in_toxiproxy_units(value, "") for name, value in self.attributes.items()}

    def _field(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        return ("toxic",) if loc == ("type",) else loc
