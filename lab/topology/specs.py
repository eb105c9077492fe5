"""What a lab is made of, as data: the chain, the mock providers and the gateway under test, loaded from
YAML/JSON with errors that name the file and the field. Nothing here touches Docker.

The gateway is pluggable (`GatewaySpec`): image, command, how its configuration is rendered from the
provider list, port, health path, and where the file goes. Two are shipped: `reference` (the lab's own
gateway, the default) and `lasso` (Lasso RPC's image; rendered from Lasso's documented profile format,
untested here since no registry is reachable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The lab's own services on its network: their aliases (which provider ids may not take) and ports.
PROVIDER_PORT = 8545
TOXIPROXY_API_PORT = 8474
TOXIPROXY_ALIAS = "toxiproxy"
GATEWAY_ALIAS = "gateway"
RESERVED_NAMES = frozenset({TOXIPROXY_ALIAS, GATEWAY_ALIAS})

ProviderId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]


class SpecError(ValueError):
    """A topology or gateway spec is invalid; the message names the source and the field."""


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
    seed: int | None = None

    @field_validator("behavior")
    @classmethod
    def _has_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("type"), str):
            raise ValueError('a behaviour needs a "type", e.g. {"type": "healthy"}')
        return value


ConfigFormat = Literal["lab", "lasso"]


class GatewaySpec(BaseModel):
    """How to run a gateway under test. `command` and `env` values may contain the `{port}` and
    `{config_path}` placeholders."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "reference"
    image: str | None = Field(None, description="None: the lab's reference gateway image")
    command: list[str] | None = ["--config", "{config_path}", "--port", "{port}"]
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    port: int = Field(4000, ge=1, le=65535)
    health_path: str = "/api/health"
    rpc_path: str = "/rpc/{chain}"
    ws_path: str = "/ws/rpc/{chain}"
    config_format: ConfigFormat = "lab"
    config_path: str = "/home/lab/gateway.yml"
    config_delivery: Literal["copy", "mount"] = Field(
        "copy", description="copy: put into the container before start (works with any Docker host)"
    )
    profile_name: str = "Lab"
    profile_slug: str = Field("lab", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    admin_api: bool = Field(True, description="has the reference gateway's /admin API (events, breakers)")
    settings: dict[str, Any] = Field(default_factory=dict, description="the reference gateway's `gateway:`")

    @model_validator(mode="after")
    def _settings_need_the_lab_format(self) -> GatewaySpec:
        if self.settings and self.config_format != "lab":
            raise ValueError("settings are the reference gateway's; they need config_format 'lab'")
        return self

    def rendered_command(self) -> list[str] | None:
        if self.command is None:
            return None
        return [part.format(port=self.port, config_path=self.config_path) for part in self.command]

    def rendered_env(self) -> dict[str, str]:
        return {k: v.format(port=self.port, config_path=self.config_path) for k, v in self.env.items()}


# Lasso RPC's container (docs/DEPLOYMENT.md of jaxernst/lasso-rpc): profiles from LASSO_PROFILES_DIR,
# PORT, runs as uid 10001. The secret only signs Phoenix sessions of this throwaway local instance.
_LASSO_SECRET = "lab-local-lasso-instance-not-a-secret-" + "0" * 40
GATEWAY_PROFILES: dict[str, GatewaySpec] = {
    "reference": GatewaySpec(),
    "lasso": GatewaySpec(
        kind="lasso",
        image="ghcr.io/jaxernst/lasso-rpc:latest",
        command=None,
        env={
            "PORT": "{port}",
            "PHX_SERVER": "true",
            "PHX_HOST": "localhost",
            "PHX_SCHEME": "http",
            "LASSO_NODE_ID": "lab",
            "LASSO_PROFILES_DIR": "/profiles",
            "SECRET_KEY_BASE": _LASSO_SECRET,
        },
        config_format="lasso",
        config_path="/profiles/public.yml",
        profile_slug="public",
        admin_api=False,
    ),
}


class TopologySpec(BaseModel):
    """A whole lab: the chain, the providers, the gateway."""

    model_config = ConfigDict(extra="forbid")

    chain: str = Field("ethereum", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    chain_id: int = Field(1, ge=1)
    genesis_time: int = Field(1_700_000_000, ge=0, description="shared, so providers agree on every block")
    providers: list[ProviderSpec] = Field(
        default_factory=lambda: [ProviderSpec(id=f"p{i}") for i in (1, 2, 3)], min_length=1, max_length=32
    )
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
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


def load_gateway_spec(value: str) -> GatewaySpec:
    """A shipped profile by name (`reference`, `lasso`), or a YAML/JSON file of GatewaySpec fields.

    A file may start from a shipped profile with `profile: lasso` and override single fields.
    """
    if value in GATEWAY_PROFILES:
        return GATEWAY_PROFILES[value].model_copy(deep=True)
    path = Path(value)
    if not path.is_file():
        raise SpecError(
            f"gateway spec {value!r}: neither a profile ({', '.join(GATEWAY_PROFILES)}) nor a file"
        )
    return _gateway_from_mapping(_read_mapping(path), str(path))


def _gateway_from_mapping(data: dict[str, Any], source: str) -> GatewaySpec:
    data = dict(data)
    base = data.pop("profile", "reference")
    if base not in GATEWAY_PROFILES:
        raise SpecError(f"{source}: profile: unknown {base!r} (known: {', '.join(GATEWAY_PROFILES)})")
    return _validated(GatewaySpec, {**GATEWAY_PROFILES[base].model_dump(), **data}, source)


def load_topology_spec(path: str | Path) -> TopologySpec:
    """A TopologySpec from a YAML/JSON file; errors name the file and the field. Its `gateway` may be a
    profile name, or a mapping of GatewaySpec fields (optionally starting from `profile: <name>`)."""
    path = Path(path)
    data = _read_mapping(path)
    gateway = data.get("gateway")
    if isinstance(gateway, str):
        data["gateway"] = load_gateway_spec(gateway).model_dump()
    elif isinstance(gateway, dict):
        data["gateway"] = _gateway_from_mapping(gateway, f"{path}: gateway").model_dump()
    return _validated(TopologySpec, data, str(path))
