"""Durations as written in scenarios: `500ms`, `30s`, `2m`, `1h`, `1m30s`, or a number of seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h))+\s*$"
EXPECTED = "expected a duration like '500ms', '30s', '2m' or a number of seconds"


def parse_duration(value: Any) -> float:
    """Seconds from a duration string or a non-negative number; ValueError with the expected form."""
    if isinstance(value, bool):
        raise ValueError(EXPECTED)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"{EXPECTED} (a finite one)")
        if seconds < 0:
            raise ValueError(f"{EXPECTED} (not negative)")
        return seconds
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return parse_duration(sum(float(n) * _UNITS[u] for n, u in parts))
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
    raise ValueError(f"{EXPECTED}, got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.5 -> '500ms', 90 -> '1m30s'."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes and not rest:
        return f"{minutes:g}m"
    if minutes:
        return f"{minutes:g}m{rest:g}s"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": PATTERN},
            ],
            "description": "seconds, or a string like '500ms', '30s', '2m', '1m30s'",
        }
    ),
]
