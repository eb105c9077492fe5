"""Gateway configuration: Lasso RPC profile files, plus this gateway's routing policy.

A profile file is YAML front matter (`name`, `slug`) and a document with `chains`, as Lasso reads it:

    ---
    name: Lab
    slug: public
    ---
    chains:
      ethereum:
        chain_id: 1
        providers:
          - {id: a, url: "http://127.0.0.1:8545", ws_url: "ws://127.0.0.1:8545/ws"}
    gateway:            # optional, this gateway's own policy for the profile (see GatewaySettings)
      retries: 2

The configuration is one such file or a directory of them (`*.yml`, `*.yaml`; file name = slug).
`${NAME}` in any string is replaced by the environment variable NAME; an unset variable is an error.
Every error names the file and the key path of the offending value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PROFILE = "public"
PROFILE_ALIASES = {"default": DEFAULT_PROFILE}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_M = TypeVar("_M", bound="BaseModel")


class ConfigError(Exception):
    """An invalid configuration; the message names the file and the key path."""


class Strategy(StrEnum):
    FASTEST = "fastest"
    LOAD_BALANCED = "load-balanced"
    LATENCY_WEIGHTED = "latency-weighted"
    PRIORITY = "priority"


# URL spellings of the strategies; Lasso also accepts round-robin for load-balanced.
STRATEGY_SLUGS: dict[str, Strategy] = {s.value: s for s in Strategy} | {"round-robin": Strategy.LOAD_BALANCED}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BreakerSettings(_Strict):
    """Circuit breaker per (provider, transport). Lasso's defaults: 5 failures, 2 successes."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, description="consecutive failures that open the breaker")
    success_threshold: int = Field(2, ge=1, description="consecutive half-open successes that close it")
    cooldown_s: float = Field(30.0, gt=0, description="time open before half-open probes are let through")
    half_open_max_probes: int = Field(1, ge=1, description="concurrent probe attempts while half-open")
    panic_routing: bool = Field(
        True, description="when every breaker refuses, try the providers anyway rather than fail for sure"
    )


class GatewaySettings(_Strict):
    """This gateway's routing policy for one profile (the optional `gateway:` section)."""

    default_strategy: Strategy = Strategy.LOAD_BALANCED
    breaker: BreakerSettings = BreakerSettings()
    retries: int = Field(2, ge=0, description="extra attempts on other providers after the first")
    attempt_timeout_s: float = Field(3.0, gt=0, description="timeout of one upstream attempt")
    deadline_s: float = Field(10.0, gt=0, description="overall time budget of one request, all attempts")
    slow_call_s: float | None = Field(
        0.3,
        gt=0,
        description="an HTTP attempt slower than this is a slow call: the breaker counts it as a failure "
        "(its answer is still passed on), and a provider whose oldest attempt in flight is already older "
        "is tried after the others; null: slowness moves no provider (only the latency strategies)",
    )
    lag_check: bool = Field(True, description="avoid lagging providers for head-sensitive methods")
    max_lag_blocks: int = Field(1, ge=0, description="lag beyond which a provider counts as lagging")
    head_poll_interval_s: float = Field(1.0, gt=0, description="eth_blockNumber polling of every provider")
    chain_id_check: bool = Field(
        True,
        description="verify each provider's eth_chainId at start and every chain_check_interval_s; one "
        "that serves another chain is never used (requests, subscriptions, head tracking)",
    )
    chain_check_interval_s: float = Field(
        5.0, gt=0, description="re-verification of each provider's chain id"
    )
    answer_check: bool = Field(
        True,
        description="fail over from answers that cannot be right: malformed for the method, from another "
        "chain, another block than asked, a head more than max_lag_blocks behind one already seen",
    )
    gap_filling: bool = Field(True, description="fill subscription gaps over HTTP after a resubscribe")
    max_backfill_blocks: int = Field(100, ge=1, description="largest gap filled after a resubscribe")
    follow_reorgs: bool = Field(True, description="pass a reorg's new branch on to newHeads subscribers")
    silence_timeout_s: float | None = Field(
        None, gt=0, description="upstream silence that triggers a resubscribe; default 3 block times or 35 s"
    )
    max_body_bytes: int = Field(1_048_576, ge=64, description="largest accepted request body")
    max_batch_size: int = Field(50, ge=1, description="largest accepted batch")
    test_leak_bytes_per_request: int = Field(
        0,
        ge=0,
        description="TEST ONLY: bytes retained forever per HTTP request, a planted memory leak for the soak "
        "checks to catch; never set it in production",
    )


# --- Lasso's profile schema (the fields this gateway reads; the others Lasso documents are accepted) ---


class _Monitoring(_Strict):
    probe_interval_ms: int | None = Field(None, gt=0)
    lag_alert_threshold_blocks: int | None = None  # Lasso's; not used here


class _Selection(_Strict):
    max_lag_blocks: int | None = Field(None, ge=0)
    archival_threshold: int | None = None  # Lasso's; not used here


class _Failover(_Strict):
    max_backfill_blocks: int | None = Field(None, ge=1)
    backfill_timeout_ms: int | None = Field(None, gt=0)


class _WebSocket(_Strict):
    subscribe_new_heads: bool | None = None  # Lasso's; not used here
    new_heads_timeout_ms: int | None = Field(None, gt=0)
    failover: _Failover = _Failover()


class ProviderConfig(_Strict):
    id: str = Field(min_length=1)
    url: str | None = None
    ws_url: str | None = None
    priority: int = Field(100, description="lower first, for the priority strategy and ties")
    weight: float = Field(1.0, gt=0, description="share of traffic under load-balanced")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every upstream request")
    # Lasso's, accepted and not used here:
    name: str | None = None
    archival: bool | None = None
    subscribe_new_heads: bool | None = None
    capabilities: dict[str, Any] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @model_validator(mode="after")
    def _some_url(self) -> ProviderConfig:
        if self.url is None and self.ws_url is None:
            raise ValueError("a provider needs url, ws_url or both")
        return self


class ChainConfig(_Strict):
    chain_id: int = Field(ge=1)
    providers: list[ProviderConfig] = Field(min_length=1)
    block_time_ms: int | None = Field(None, gt=0)
    monitoring: _Monitoring = _Monitoring()
    selection: _Selection = _Selection()
    websocket: _WebSocket = _WebSocket()
    name: str | None = None  # Lasso's display name
    ui_topology: dict[str, Any] | None = Field(None, alias="ui-topology")  # Lasso's dashboard

    @field_validator("providers")
    @classmethod
    def _unique_ids(cls, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        seen: set[str] = set()
        for provider in providers:
            if provider.id in seen:
                raise ValueError(f"duplicate provider id {provider.id!r}")
            seen.add(provider.id)
        return providers


class _FrontMatter(BaseModel):
    model_config = ConfigDict(extra="allow")  # Lasso's rps_limit, burst_limit... are not used here

    name: str = Field(min_length=1)
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")


class _Body(_Strict):
    chains: dict[str, ChainConfig] = Field(min_length=1)
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="after")
    def _unique_chain_ids(self) -> _Body:
        seen: dict[int, str] = {}
        for name, chain in self.chains.items():
            if chain.chain_id in seen:
                raise ValueError(f"chains {seen[chain.chain_id]!r} and {name!r} have the same chain_id")
            seen[chain.chain_id] = name
        return self


class ProfileConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    slug: str
    source: Path
    chains: dict[str, ChainConfig]
    gateway: GatewaySettings


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    profiles: dict[str, ProfileConfig]

    @property
    def default_profile(self) -> str | None:
        """The profile of routes without /profile/: `public`, or the only profile there is."""
        if DEFAULT_PROFILE in self.profiles:
            return DEFAULT_PROFILE
        return next(iter(self.profiles)) if len(self.profiles) == 1 else None


# --- loading -------------------------------------------------------------------------------------------


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load one profile file or a directory of them."""
    path = Path(path)
    env = os.environ if environ is None else environ
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        if not files:
            raise ConfigError(f"{path}: no profile files (*.yml, *.yaml) in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"{path}: no such file or directory")
    profiles: dict[str, ProfileConfig] = {}
    for file in files:
        profile = load_profile(file, env, require_slug_as_name=path.is_dir())
        if profile.slug in profiles:
            raise ConfigError(
                f"{file}: slug {profile.slug!r} is also used by {profiles[profile.slug].source}"
            )
        profiles[profile.slug] = profile
    return GatewayConfig(profiles=profiles)


def load_profile(
    file: Path, environ: Mapping[str, str], *, require_slug_as_name: bool = False
) -> ProfileConfig:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    front, body = _split_documents(file, text)
    front = _substitute_env(file, front, environ, ())
    body = _substitute_env(file, body, environ, ())
    meta = _validate(file, _FrontMatter, front, "front matter: ")
    if require_slug_as_name and file.stem != meta.slug:
        raise ConfigError(f"{file}: slug {meta.slug!r} must match the file name ({file.stem!r})")
    parsed = _validate(file, _Body, body, "")
    return ProfileConfig(
        name=meta.name, slug=meta.slug, source=file, chains=parsed.chains, gateway=parsed.gateway
    )


def _split_documents(file: Path, text: str) -> tuple[Any, Any]:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: invalid YAML{where}: {problem}") from exc
    if len(documents) != 2:
        raise ConfigError(
            f"{file}: expected YAML front matter (---, name and slug, ---) followed by a document with "
            f"'chains', found {len(documents)} document(s)"
        )
    for label, doc in zip(("front matter", "profile body"), documents, strict=True):
        if not isinstance(doc, dict):
            raise ConfigError(f"{file}: the {label} must be a mapping, not {type(doc).__name__}")
    return documents[0], documents[1]


def _substitute_env(file: Path, node: Any, environ: Mapping[str, str], path: tuple[Any, ...]) -> Any:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{file}: {_dotted(path)}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REFERENCE.sub(replace, node)
    if isinstance(node, dict):
        return {key: _substitute_env(file, value, environ, (*path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute_env(file, value, environ, (*path, i)) for i, value in enumerate(node)]
    return node


def _validate(file: Path, model: type[_M], data: Any, prefix: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{prefix}{_dotted(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"{file}: " + "; ".join(lines)) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
