"""Toxiproxy's toxics in its own wire form, checked before anything is sent.

A `Toxic` is what `POST /proxies/{proxy}/toxics` takes: a type, a name, a stream, a toxicity and integer
attributes in Toxiproxy's units (`ATTRIBUTES` lists them per type, as Toxiproxy's toxics/*.go read them).
`upstream` is client -> provider (requests), `downstream` is provider -> client (responses). Toxicity is
rolled once per connection and direction, not per request.

Toxiproxy's own limits are THE checks here, so every form of a toxic (a scenario's action, the web UI, a
test's `parse_toxic`) is refused the same way: attributes are Go int64s (a latency beyond 2^63-1 ms
would overflow on the server), and the slicer panics unless 1 <= size_variation < average_size.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

Stream = Literal["upstream", "downstream"]
INT64_MAX = 2**63 - 1
Attribute = Annotated[int, Field(ge=0, le=INT64_MAX)]

# Each toxic type's attributes and their units (Toxiproxy's toxics/*.go; an attribute left out is 0).
ATTRIBUTES: dict[str, dict[str, str]] = {
    "latency": {"latency": "ms", "jitter": "ms"},
    "bandwidth": {"rate": "KB/s"},
    "slow_close": {"delay": "ms"},
    "timeout": {"timeout": "ms"},
    "reset_peer": {"timeout": "ms"},
    "slicer": {"average_size": "bytes", "size_variation": "bytes", "delay": "µs"},
    "limit_data": {"bytes": "bytes"},
    "noop": {},
}
TOXIC_TYPES = tuple(ATTRIBUTES)
_COMMON = ("type", "name", "stream", "toxicity", "attributes")
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def toxic_name(label: str) -> str:
    """A valid Toxiproxy toxic name for a fault's label (unique labels keep toxics from colliding)."""
    return _NAME.sub("_", label)[:64]


FieldProblem = tuple[tuple[str | int, ...], str, Any]  # where, what is wrong, the value


def invalid(title: str, *problems: FieldProblem) -> ValidationError:
    """A validation error at each problem's location (raised inside a validator, pydantic places each
    under the field being validated, so the scenario loader names the field)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


class Toxic(BaseModel):
    """One toxic. Flat attributes are accepted too: `Toxic(type="latency", latency=200)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    stream: Stream = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    attributes: dict[str, Attribute] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, data: Any) -> Any:
        """Flat attributes moved under `attributes`, unknown types and attributes refused, the others
        filled in with Toxiproxy's default 0 (so the toxic reads as the server will hold it)."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return data
        kind = data["type"]
        given = {**{k: v for k, v in data.items() if k not in _COMMON}, **(data.get("attributes") or {})}
        known = ATTRIBUTES.get(kind)
        if known is None:
            expected = ", ".join(TOXIC_TYPES)
            raise invalid("Toxic", (("type",), f"unknown toxic {kind!r}; expected one of: {expected}", kind))
        unknown = sorted(set(given) - set(known))
        if unknown:
            expected = ", ".join(sorted(known)) or "none"
            message = f"unknown attribute(s) {', '.join(unknown)} of toxic {kind!r}; expected: {expected}"
            raise invalid("Toxic", (("attributes", unknown[0]), message, given[unknown[0]]))
        common = {k: v for k, v in data.items() if k in _COMMON and k != "attributes"}
        return {**common, "attributes": {name: given.get(name, 0) for name in known}}

    @model_validator(mode="after")
    def _slicer_can_run(self) -> Toxic:
        # Toxiproxy's Go slicer (toxics/slicer.go) calls rand.Intn(size_variation * 2), which panics
        # for 0, and with size_variation >= average_size it cuts outside the chunk and panics too.
        if self.type == "slicer":
            size, variation = self.attributes["average_size"], self.attributes["size_variation"]
            if variation < 1:
                raise invalid("Toxic", (("attributes", "size_variation"), "must be at least 1", variation))
            if variation >= size:
                message = (
                    f"size_variation ({variation}) must be smaller than average_size ({size}): "
                    "Toxiproxy's slicer panics otherwise"
                )
                raise invalid("Toxic", (("attributes", "size_variation"), message, variation))
        return self

    @property
    def toxic_name(self) -> str:
        """The name on the server: given, or Toxiproxy's default `<type>_<stream>`."""
        return self.name or f"{self.type}_{self.stream}"

    def to_api(self) -> dict[str, Any]:
        """The body of `POST /proxies/{proxy}/toxics`."""
        return {
            "name": self.toxic_name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    def params(self) -> dict[str, Any]:
        """The toxic as a fault records it: type, stream, toxicity and the attributes, flat."""
        return {"type": self.type, "stream": self.stream, "toxicity": self.toxicity, **self.attributes}


def parse_toxic(data: dict[str, Any]) -> Toxic:
    """A toxic from a mapping such as `{"type": "latency", "latency": 200, "stream": "downstream"}` or
    Toxiproxy's nested form (`{"type": ..., "attributes": {...}}`)."""
    return Toxic.model_validate(data)
