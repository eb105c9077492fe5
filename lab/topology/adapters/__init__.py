"""Gateway adapters: how to run any gateway under test, as one small declarative file per gateway.

An adapter (`<name>.yml` here for the shipped ones, or any file the user names) says the image (or the
lab's Dockerfile that builds it), the command, the port, how to tell it is ready (an HTTP path, then
always a JSON-RPC call through its RPC path), its RPC and WebSocket paths, whether it has the reference
gateway's admin API, its variables with their defaults, and a Jinja2 template of its configuration file,
rendered from the topology (chain, chain id, block time, and each provider's Toxiproxy URLs, id, priority
and weight) to the path the adapter names.

Everything is checked when the adapter is loaded, before any container starts: the file's fields, the
template's syntax, and a trial rendering (StrictUndefined, so a misspelt name is an error); every error
names the file and the field or the template's line (`AdapterError`, a `SpecError`).

    spec = load_adapter("haproxy", {"inter": "500ms", "fall": 2})
    text = render_config(spec, RenderInput(...))
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ADAPTERS_DIR = Path(__file__).resolve().parent
ADAPTER_SUFFIX = ".yml"
UNTESTED_NOTE = "untested here: no registry"


class SpecError(ValueError):
    """A topology, gateway adapter or template is invalid; the message names the source and the field."""


class AdapterError(SpecError):
    """A gateway adapter or its template is invalid; the message names the file and the field or line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Readiness(_Strict):
    """Ready once `GET path` answers 200 (when a path is given) and then the JSON-RPC `rpc` call through the
    RPC path returns a block number (always: a gateway that answers its health path may still not serve)."""

    path: str | None = Field(None, description="an HTTP path that answers 200 once the gateway is up")
    rpc: Literal["eth_blockNumber"] = "eth_blockNumber"


class Paths(_Strict):
    """The gateway's routes, Jinja2 strings over `chain`, `chain_id` and `vars` (and `strategy`)."""

    rpc: str = Field(description="HTTP JSON-RPC path, e.g. /rpc/{{ chain }}")
    ws: str = Field(description="WebSocket JSON-RPC path")
    strategy: str | None = Field(None, description="a routing strategy's path, e.g. /rpc/{{ strategy }}/...")
    provider: str | None = Field(None, description="a provider override's path, over `provider`")


class ConfigFile(_Strict):
    template: str = Field(description="the Jinja2 template, relative to the adapter file")
    path: str = Field(pattern=r"^/", description="where the rendered file goes in the container")
    delivery: Literal["copy", "mount"] = Field(
        "copy", description="copy: put into the container before start (works with any Docker host)"
    )


class Variable(_Strict):
    default: Any = None
    description: str = ""


class GatewaySpec(_Strict):
    """A gateway adapter, loaded: the file's fields, its template's text and the variables' values."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    description: str = ""
    tested: bool = Field(True, description=f"false: {UNTESTED_NOTE}")
    try_command: str | None = Field(
        None, alias="try", description="the one command that tries it where its image can be pulled"
    )
    image: str | None = Field(None, description="an image reference to pull (or already here)")
    build: str | None = Field(
        None, pattern=r"^[a-z0-9-]+$", description="a lab Dockerfile folder under lab/images/ that builds it"
    )
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    port: int = Field(ge=1, le=65535)
    ready: Readiness = Field(default_factory=Readiness)
    paths: Paths
    config: ConfigFile
    admin_api: bool = Field(False, description="has the reference gateway's /admin API (events, breakers)")
    variables: dict[str, Variable] = Field(default_factory=dict)
    # Filled by the loader, not written in the file:
    source: str = ""
    template_text: str = ""
    values: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_image(self) -> GatewaySpec:
        if self.image is not None and self.build is not None:
            raise ValueError("give image or build, not both")
        return self

    @property
    def kind(self) -> str:
        return self.name

    @property
    def lab_image(self) -> bool:
        """Neither image nor build: the lab's own reference gateway image."""
        return self.image is None and self.build is None

    @property
    def template_name(self) -> str:
        return str(Path(self.source).parent / self.config.template) if self.source else self.config.template

    # --- the strings of the adapter, rendered -----------------------------------------------------------
    def _context(self, chain: str, chain_id: int, **extra: Any) -> dict[str, Any]:
        return {
            "chain": chain,
            "chain_id": chain_id,
            "port": self.port,
            "config_path": self.config.path,
            "vars": self.values,
            **extra,
        }

    def render_string(self, field: str, text: str, chain: str, chain_id: int, **extra: Any) -> str:
        try:
            return _ENV.from_string(text).render(self._context(chain, chain_id, **extra))
        except jinja2.TemplateError as exc:
            raise AdapterError(f"{self.source or self.name}: {field}: {_message(exc)}") from None

    def rendered_command(self, chain: str = "ethereum", chain_id: int = 1) -> list[str] | None:
        if self.command is None:
            return None
        return [
            self.render_string(f"command[{i}]", part, chain, chain_id) for i, part in enumerate(self.command)
        ]

    def rendered_env(self, chain: str = "ethereum", chain_id: int = 1) -> dict[str, str]:
        return {k: self.render_string(f"env.{k}", v, chain, chain_id) for k, v in self.env.items()}

    def rpc_path(self, chain: str, chain_id: int = 1) -> str:
        return self.render_string("paths.rpc", self.paths.rpc, chain, chain_id)

    def ws_path(self, chain: str, chain_id: int = 1) -> str:
        return self.render_string("paths.ws", self.paths.ws, chain, chain_id)

    def strategy_path(self, strategy: str, chain: str, chain_id: int = 1) -> str:
        if self.paths.strategy is None:
            raise AdapterError(
                f"{self.source or self.name}: paths.strategy: this gateway has no strategy routes"
            )
        return self.render_string("paths.strategy", self.paths.strategy, chain, chain_id, strategy=strategy)

    def provider_path(self, provider: str, chain: str, chain_id: int = 1) -> str:
        if self.paths.provider is None:
            raise AdapterError(
                f"{self.source or self.name}: paths.provider: this gateway has no provider routes"
            )
        return self.render_string("paths.provider", self.paths.provider, chain, chain_id, provider=provider)

    def describe_image(self) -> str:
        if self.image is not None:
            return self.image
        if self.build is not None:
            return f"lab-{self.build} (built by the lab: lab/images/{self.build}/Dockerfile)"
        return "lab-gateway (the lab's reference gateway)"


# --- rendering -------------------------------------------------------------------------------------------

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@dataclass(frozen=True)
class Upstream:
    """One provider as a gateway's configuration sees it: ids, preference, and its Toxiproxy URLs."""

    id: str
    index: int  # 1-based, in the topology's order
    priority: int  # lower first
    weight: int
    http_host: str
    http_port: int
    ws_host: str
    ws_port: int
    ws_path: str = "/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.ws_host}:{self.ws_port}{self.ws_path}"

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "priority": self.priority,
            "weight": self.weight,
            "http_url": self.http_url,
            "ws_url": self.ws_url,
            "http_host": self.http_host,
            "http_port": self.http_port,
            "ws_host": self.ws_host,
            "ws_port": self.ws_port,
            "ws_path": self.ws_path,
        }


@dataclass(frozen=True)
class RenderInput:
    """What a configuration template is rendered from: the chain and the upstreams."""

    chain: str
    chain_id: int
    block_time: float  # seconds, the fastest provider's
    upstreams: Sequence[Upstream]

    def context(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "chain_id": self.chain_id,
            "block_time": self.block_time,
            "block_time_ms": round(self.block_time * 1000),
            "providers": [u.as_context() for u in self.upstreams],
        }


SAMPLE_INPUT = RenderInput(
    chain="ethereum",
    chain_id=1,
    block_time=1.0,
    upstreams=[
        Upstream(f"p{i}", i, i, 1, "toxiproxy", 8664 + 2 * i, "toxiproxy", 8665 + 2 * i) for i in (1, 2, 3)
    ],
)


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line a rendering error happened on (Jinja2 rewrites tracebacks to template lines)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _compile(name: str, text: str) -> jinja2.Template:
    # A filename, so that Jinja2 maps a rendering error's traceback to the template's lines.
    env = _ENV.overlay(loader=jinja2.FunctionLoader(lambda _: (text, name, lambda: True)))
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise AdapterError(f"{name}:{exc.lineno}: {exc.message}") from None


def render_config(spec: GatewaySpec, data: RenderInput) -> str:
    """The gateway's configuration file from its template; AdapterError naming the template's line."""
    name = spec.template_name
    template = _compile(name, spec.template_text)
    context = {**data.context(), "port": spec.port, "config_path": spec.config.path, "vars": spec.values}
    try:
        return template.render(context)
    except Exception as exc:  # an undefined name, a failing filter, a bad value in a variable
        line = _template_line(exc, name)
        where = f"{name}:{line}" if line is not None else name
        raise AdapterError(f"{where}: {_message(exc)}") from None


# --- loading ---------------------------------------------------------------------------------------------


def shipped_adapters() -> dict[str, Path]:
    """The adapters that come with the lab, by name."""
    return {path.stem: path for path in sorted(ADAPTERS_DIR.glob(f"*{ADAPTER_SUFFIX}"))}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise AdapterError(f"{path}{line}: not valid YAML: {exc.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AdapterError(f"{path}: cannot read: {_message(exc)}") from None
    if not isinstance(data, dict):
        raise AdapterError(f"{path}: expected a mapping of adapter fields at the top level")
    return data


def _validation_message(source: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
    )
    return f"{source}: {problems}"


def resolve_adapter_path(value: str, base_dir: Path | None = None) -> Path:
    """A shipped adapter's file by name, or a file (relative paths also tried against `base_dir`)."""
    shipped = shipped_adapters()
    if value in shipped:
        return shipped[value]
    candidates = [Path(value)]
    if base_dir is not None and not Path(value).is_absolute():
        candidates.append(base_dir / value)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AdapterError(
        f"gateway {value!r}: neither a shipped adapter ({', '.join(shipped)}) nor an adapter file"
    )


def load_adapter(
    value: str,
    variables: Mapping[str, Any] | None = None,
    *,
    base_dir: Path | None = None,
    variables_source: str = "variables",
) -> GatewaySpec:
    """A gateway adapter by shipped name or file, with `variables` set over its defaults; checked whole
    (fields, template syntax, a trial rendering) before it is returned. AdapterError names what is wrong."""
    path = resolve_adapter_path(value, base_dir)
    source = str(path)
    data = _read(path)
    for key in ("source", "template_text", "values"):
        if key in data:
            raise AdapterError(f"{source}: {key}: not an adapter field (the loader fills it)")
    try:
        spec = GatewaySpec.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise AdapterError(_validation_message(source, exc)) from None
    template_path = path.parent / spec.config.template
    try:
        text = template_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdapterError(
            f"{source}: config.template: cannot read {template_path}: {_message(exc)}"
        ) from None
    values = {name: variable.default for name, variable in spec.variables.items()}
    unknown = sorted(set(variables or {}) - set(values))
    if unknown:
        known = ", ".join(values) or "none"
        raise AdapterError(
            f"{variables_source}: unknown variable(s) {', '.join(unknown)} of the {spec.name} gateway "
            f"(known: {known})"
        )
    values.update(variables or {})
    spec = spec.model_copy(update={"template_text": text, "values": values})
    check_adapter(spec)
    return spec


def check_adapter(spec: GatewaySpec) -> None:
    """Render everything once against a sample topology: the template, the command, env and paths."""
    _compile(spec.template_name, spec.template_text)
    render_config(spec, SAMPLE_INPUT)
    spec.rendered_command()
    spec.rendered_env()
    spec.rpc_path("ethereum")
    spec.ws_path("ethereum")


def parse_variable(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line; VALUE read as YAML (2, true, 500ms, [a, b]), except that only
    true/false are booleans (YAML 1.1 would make nginx's `off` False)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise SpecError(f"--gateway-var {text!r}: expected NAME=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()
    return name.strip(), value
