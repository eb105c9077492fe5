"""What a lab is made of, as data: the chain, the mock providers and the gateway under test, loaded from
YAML/JSON with errors that name the file and the field. Nothing here touches Docker.

The gateway under test is a `GatewaySpec`, a gateway adapter (lab.topology.adapters): the reference
gateway by default, or any shipped adapter (`lab gateways`) or adapter file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.topology.adapters import AdapterError, GatewaySpec, SpecError, load_adapter

# The lab's own services on its network: their aliases (which provider ids may not take) and ports.
PROVIDER_PORT = 8545
TOXIPROXY_API_PORT = 8474
TOXIPROXY_ALIAS = "toxiproxy"
GATEWAY_ALIAS = "gateway"
RESERVED_NAMES = frozenset({TOXIPROXY_ALIAS, GATEWAY_ALIAS})

ProviderId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]


class ProviderSpec(BaseModel):
    """One mock provider: its id (also its network alias), behaviour, block time and chain id."""

    model_config = ConfigDict(extra="forbid")

    id: ProviderId
    behavior: dict[str, Any] = Field(default_factory=lambda: {"type": "healthy"})
    block_time: float = Field(1.0, ge=0.01, le=600)
    chain_id: int | None = Field(None, ge=1, description="defaults to the topology's chain_id")
    priority: int | None = Field(
        None, description="the gateway's priority (lower first); default: list order"
    )
    weight: int = Field(1, ge=0, le=256, description="the gateway's weight, where it has one")
    seed: int | None = None

    @field_validator("behavior")
    @classmethod
    def _has_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("type"), str):
            raise ValueError('a behaviour needs a "type", e.g. {"type": "healthy"}')
        return value


class TopologySpec(BaseModel):
    """A whole lab: the chain, the providers, the gateway."""

    model_config = ConfigDict(extra="forbid")

    chain: str = Field("ethereum", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    chain_id: int = Field(1, ge=1)
    genesis_time: int = Field(1_700_000_000, ge=0, description="shared, so providers agree on every block")
    providers: list[ProviderSpec] = Field(
        default_factory=lambda: [ProviderSpec(id=f"p{i}") for i in (1, 2, 3)], min_length=1, max_length=32
    )
    gateway: GatewaySpec = Field(default_factory=lambda: load_adapter("reference"))
    toxiproxy_port_base: int = Field(8666, ge=1024, le=65000, description="proxy listen ports in Toxiproxy")
    startup_timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _unique_ids(self) -> TopologySpec:
        ids = [p.id for p in self.providers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate provider ids: {duplicates}")
        reserved = sorted(RESERVED_NAMES & set(ids))
        if reserved:
            raise ValueError(f"provider ids {reserved} are reserved for the lab's own containers")
        return self

    @classmethod
    def with_providers(cls, count: int = 3, **fields: Any) -> TopologySpec:
        return cls(providers=[ProviderSpec(id=f"p{i}") for i in range(1, count + 1)], **fields)

    def provider(self, provider_id: str) -> ProviderSpec:
        for provider in self.providers:
            if provider.id == provider_id:
                return provider
        raise KeyError(provider_id)


def _validated(model: type[BaseModel], data: Any, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SpecError(f"{source}: {problems}") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return data


def load_gateway_spec(value: str, variables: dict[str, Any] | None = None) -> GatewaySpec:
    """A gateway adapter: a shipped one by name (`lab gateways` lists them) or an adapter file, with
    `variables` over its defaults (see lab.topology.adapters)."""
    return load_adapter(value, variables)


def _gateway_from_field(value: Any, source: str) -> GatewaySpec:
    """A topology file's `gateway`: an adapter name or file, or `{adapter: NAME|FILE, variables: {...}}`."""
    if isinstance(value, str):
        return load_adapter(value)
    if isinstance(value, dict) and set(value) <= {"adapter", "variables"} and "adapter" in value:
        variables = value.get("variables") or {}
        if not isinstance(variables, dict):
            raise SpecError(f"{source}: gateway.variables: expected a mapping")
        return load_adapter(str(value["adapter"]), variables, variables_source=f"{source}: gateway.variables")
    raise SpecError(
        f"{source}: gateway: expected an adapter name or file, or {{adapter: ..., variables: ...}}"
    )


def load_topology_spec(path: str | Path) -> TopologySpec:
    """A TopologySpec from a YAML/JSON file; errors name the file and the field. Its `gateway` is an
    adapter name or file, or `{adapter: NAME|FILE, variables: {...}}`."""
    path = Path(path)
    data = _read_mapping(path)
    gateway = None
    if "gateway" in data:
        gateway = _gateway_from_field(data.pop("gateway"), str(path))
    spec = _validated(TopologySpec, data, str(path))
    return spec.model_copy(update={"gateway": gateway}) if gateway is not None else spec


__all__ = ["AdapterError", "GatewaySpec", "SpecError"]
