"""slicer: data in small pieces (Toxiproxy's toxics/slicer.go)."""

from __future__ import annotations

from typing import Literal

from lab.durations import Duration
from lab.faults.actions.base import ToxicAction, register
from lab.faults.toxics import Attribute


@register
class SlicerAction(ToxicAction):
    """Split data into writes of `average_size` ± `size_variation` bytes, `delay` apart (Toxiproxy's
    slicer needs 1 <= size_variation < average_size; lab.faults.toxics checks it)."""

    type: Literal["slicer"] = "slicer"
    average_size: Attribute
    size_variation: Attribute
    delay: Duration = 0.0
