"""Typed Toxiproxy toxics: one small model per toxic type, validated before anything is sent.

Attribute names and units are Toxiproxy's own (see the REST contract): milliseconds for latency, jitter,
delay and timeouts, KB/s for bandwidth, bytes for sizes, microseconds for the slicer's delay.
`upstream` is client -> provider (requests), `downstream` is provider -> client (responses).
Toxicity is rolled once per connection and direction, not per request.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Stream = Literal["upstream", "downstream"]
NonNegative = Annotated[int, Field(ge=0)]


class Toxic(BaseModel):
    """The fields every toxic has. Subclasses add their attributes as fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _common: ClassVar[frozenset[str]] = frozenset({"type", "name", "stream", "toxicity"})

    type: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    stream: Stream = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)

    @property
    def toxic_name(self) -> str:
        """The name on the server: given, or Toxiproxy's default `<type>_<stream>`."""
        return self.name or f"{self.type}_{self.stream}"

    def attributes(self) -> dict[str, Any]:
        return self.model_dump(exclude=set(self._common))

    def to_api(self) -> dict[str, Any]:
        """The body of `POST /proxies/{proxy}/toxics`."""
        return {
            "name": self.toxic_name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": self.attributes(),
        }


class Latency(Toxic):
    """Delays each chunk by `latency` ms ± uniformly random `jitter` ms."""

    type: Literal["latency"] = "latency"
    latency: NonNegative = 0
    jitter: NonNegative = 0


class Bandwidth(Toxic):
    """Limits the rate to `rate` KB/s; 0 stalls the connection forever while keeping it open."""

    type: Literal["bandwidth"] = "bandwidth"
    rate: NonNegative = 0


class SlowClose(Toxic):
    """Delays the close of the connection by `delay` ms after the end of the data."""

    type: Literal["slow_close"] = "slow_close"
    delay: NonNegative = 0


class Timeout(Toxic):
    """Drops all data and closes the connection after `timeout` ms (0: keeps it open, silent, forever)."""

    type: Literal["timeout"] = "timeout"
    timeout: NonNegative = 0


class ResetPeer(Toxic):
    """On the first data, waits `timeout` ms, then closes the connection with a TCP RST."""

    type: Literal["reset_peer"] = "reset_peer"
    timeout: NonNegative = 0


class Slicer(Toxic):
    """Splits data into writes of `average_size` ± `size_variation` bytes, `delay` µs apart.

    Toxiproxy's Go slicer (toxics/slicer.go) calls `rand.Intn(size_variation * 2)`, which panics for 0,
    and with `size_variation >= average_size` it computes split points outside the chunk and panics on
    the slice bounds: so 1 <= size_variation < average_size (and average_size >= 2).
    """

    type: Literal["slicer"] = "slicer"
    average_size: Annotated[int, Field(ge=2)]
    size_variation: Annotated[int, Field(ge=1)]
    delay: NonNegative = 0

    @model_validator(mode="after")
    def _variation_below_size(self) -> Slicer:
        if self.size_variation >= self.average_size:
            raise ValueError(
                f"size_variation ({self.size_variation}) must be smaller than average_size "
                f"({self.average_size}): Toxiproxy's slicer panics otherwise"
            )
        return self


class LimitData(Toxic):
    """Closes the connection once `bytes` bytes have passed."""

    type: Literal["limit_data"] = "limit_data"
    bytes: NonNegative = 0


AnyToxic = Annotated[
    Latency | Bandwidth | SlowClose | Timeout | ResetPeer | Slicer | LimitData, Field(discriminator="type")
]
TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.model_fields["type"].default: cls
    for cls in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData)
}
_ADAPTER: TypeAdapter[Toxic] = TypeAdapter(AnyToxic)


def parse_toxic(data: dict[str, Any]) -> Toxic:
    """A toxic from a mapping such as `{"type": "latency", "latency": 200, "stream": "downstream"}`.

    Toxiproxy's nested form (`{"type": ..., "attributes": {...}}`) is accepted too.
    """
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        data = {**{k: v for k, v in data.items() if k != "attributes"}, **data["attributes"]}
    return _ADAPTER.validate_python(data)
