"""A lab in Docker: a private network, Toxiproxy, N mock providers and a gateway, started with
Testcontainers and torn down by label.

Every provider is reachable from the gateway only through Toxiproxy: one proxy per provider and
transport (`<id>_http`, `<id>_ws`), and the gateway's configuration points every upstream URL at a
Toxiproxy listener. From the host, everything is reached through ports published on 127.0.0.1 and
allocated up front (so they stay the same when a container is restarted by a fault; another process
taking one of them in the moment between allocation and container start fails the start-up).

    spec = TopologySpec.with_providers(3)
    with Lab(spec) as lab:
        lab.rpc("eth_blockNumber")
        with lab.faults.latency("p1", 200):
            ...

The gateway is pluggable (`GatewaySpec`): image, command, how its configuration is rendered from the
provider list, port, health path, and where the file goes. Two are shipped: `reference` (the lab's own
gateway, the default) and `lasso` (Lasso RPC's image; rendered from Lasso's documented profile format,
untested here since no registry is reachable).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.cleanup import (
    PROVIDER_ID,
    CleanupReport,
    TerminationGuard,
    lab_labels,
    remove_lab_resources,
    termination_guard,
)
from lab.eventually import EventuallyTimeout, wait_for_value

if TYPE_CHECKING:
    from lab.faults import FaultInjector, ToxiproxyClient
    from lab.faults.control import ControlClient
    from lab.faults.process import ContainerTarget
    from lab.gateway_events import GatewayEventStream

PROVIDER_PORT = 8545
TOXIPROXY_API_PORT = 8474
TOXIPROXY_ALIAS = "toxiproxy"
GATEWAY_ALIAS = "gateway"
LOOPBACK = "127.0.0.1"
TRANSPORTS = ("http", "ws")
RESERVED_NAMES = frozenset({TOXIPROXY_ALIAS, GATEWAY_ALIAS})

ProviderId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]


class LabError(RuntimeError):
    """The lab could not be started or healed (images, containers, a server that never came up)."""


class _Stopping(BaseException):
    """Ends a readiness wait in a start-up thread once the lab is being stopped (not an Exception, so
    the waits, which retry on exceptions, do not swallow it)."""


class SpecError(ValueError):
    """A topology or gateway spec is invalid; the message names the source and the field."""


# --- specs -------------------------------------------------------------------------------------------


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


# --- ports ---------------------------------------------------------------------------------------------


def allocate_host_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct free TCP ports on `host`, asked of the kernel (all sockets held until the end so
    no port is handed out twice)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class ProxyPlan:
    name: str  # "<provider>_<transport>"
    provider: str
    transport: str  # "http" | "ws"
    listen_port: int  # inside the Toxiproxy container
    host_port: int  # published on 127.0.0.1
    upstream: str  # "<provider>:8545", resolved by Toxiproxy on the lab network

    @property
    def gateway_url(self) -> str:
        """The upstream URL the gateway uses: the Toxiproxy listener, never the provider itself."""
        if self.transport == "ws":
            return f"ws://{TOXIPROXY_ALIAS}:{self.listen_port}/ws"
        return f"http://{TOXIPROXY_ALIAS}:{self.listen_port}"


@dataclass(frozen=True)
class PortPlan:
    toxiproxy_api: int
    gateway: int
    providers: dict[str, int]  # provider id -> host port of its control API (direct, not proxied)
    proxies: tuple[ProxyPlan, ...]

    def proxies_of(self, provider: str) -> dict[str, ProxyPlan]:
        return {p.transport: p for p in self.proxies if p.provider == provider}


def plan_ports(spec: TopologySpec, allocate: Callable[[int], list[int]] = allocate_host_ports) -> PortPlan:
    """Every listen port and published host port of a lab, decided before any container starts."""
    n = len(spec.providers)
    host_ports = iter(allocate(2 + n + n * len(TRANSPORTS)))
    toxiproxy_api, gateway = next(host_ports), next(host_ports)
    providers = {p.id: next(host_ports) for p in spec.providers}
    proxies = []
    listen = spec.toxiproxy_port_base
    for provider in spec.providers:
        for transport in TRANSPORTS:
            proxies.append(
                ProxyPlan(
                    name=f"{provider.id}_{transport}",
                    provider=provider.id,
                    transport=transport,
                    listen_port=listen,
                    host_port=next(host_ports),
                    upstream=f"{provider.id}:{PROVIDER_PORT}",
                )
            )
            listen += 1
    return PortPlan(toxiproxy_api, gateway, providers, tuple(proxies))


# --- gateway configuration ---------------------------------------------------------------------------


def _providers_section(spec: TopologySpec, plan: PortPlan) -> list[dict[str, Any]]:
    entries = []
    for index, provider in enumerate(spec.providers, start=1):
        proxies = plan.proxies_of(provider.id)
        entries.append(
            {
                "id": provider.id,
                "url": proxies["http"].gateway_url,
                "ws_url": proxies["ws"].gateway_url,
                "priority": provider.priority if provider.priority is not None else index,
            }
        )
    return entries


def _profile_document(front: dict[str, Any], body: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + yaml.safe_dump(body, sort_keys=False)


def _render_lab_profile(spec: TopologySpec, plan: PortPlan) -> str:
    chain = {"chain_id": spec.chain_id, "providers": _providers_section(spec, plan)}
    body: dict[str, Any] = {"chains": {spec.chain: chain}}
    if spec.gateway.settings:
        body["gateway"] = spec.gateway.settings
    return _profile_document({"name": spec.gateway.profile_name, "slug": spec.gateway.profile_slug}, body)


def _render_lasso_profile(spec: TopologySpec, plan: PortPlan) -> str:
    block_time_ms = round(min(p.block_time for p in spec.providers) * 1000)
    chain = {
        "chain_id": spec.chain_id,
        "block_time_ms": block_time_ms,
        "providers": _providers_section(spec, plan),
    }
    front = {"name": spec.gateway.profile_name, "slug": spec.gateway.profile_slug}
    return _profile_document(front, {"chains": {spec.chain: chain}})


CONFIG_RENDERERS: dict[str, Callable[[TopologySpec, PortPlan], str]] = {
    "lab": _render_lab_profile,
    "lasso": _render_lasso_profile,
}


def render_gateway_config(spec: TopologySpec, plan: PortPlan) -> str:
    return CONFIG_RENDERERS[spec.gateway.config_format](spec, plan)


# --- endpoints -----------------------------------------------------------------------------------------


class ProviderEndpoints(BaseModel):
    id: str
    container: str
    control_url: str  # the provider's own HTTP port: control API and JSON-RPC without Toxiproxy
    proxies: dict[str, str]  # transport -> Toxiproxy proxy name
    proxy_urls: dict[str, str]  # transport -> the proxy's listener as published on 127.0.0.1
    upstream_urls: dict[str, str]  # transport -> the URL the gateway is configured with


class Endpoints(BaseModel):
    """Where everything of a running lab is, as seen from the host. `lab up --json` prints this."""

    run_id: str
    network: str
    chain: str
    chain_id: int
    gateway_kind: str
    gateway_url: str
    gateway_rpc_url: str
    gateway_ws_url: str
    gateway_health_url: str
    gateway_events_url: str | None
    toxiproxy_url: str
    providers: dict[str, ProviderEndpoints]

    def rpc_url(self, *, strategy: str | None = None, provider: str | None = None) -> str:
        """The gateway's HTTP route for a strategy (`/rpc/<strategy>/<chain>`) or a provider override."""
        if provider is not None:
            return f"{self.gateway_url}/rpc/provider/{provider}/{self.chain}"
        if strategy is not None:
            return f"{self.gateway_url}/rpc/{strategy}/{self.chain}"
        return self.gateway_rpc_url


def build_endpoints(spec: TopologySpec, plan: PortPlan, run_id: str, network: str) -> Endpoints:
    gateway_url = f"http://{LOOPBACK}:{plan.gateway}"
    providers = {}
    for provider in spec.providers:
        proxies = plan.proxies_of(provider.id)
        providers[provider.id] = ProviderEndpoints(
            id=provider.id,
            container=container_name(run_id, provider.id),
            control_url=f"http://{LOOPBACK}:{plan.providers[provider.id]}",
            proxies={t: p.name for t, p in proxies.items()},
            proxy_urls={
                "http": f"http://{LOOPBACK}:{proxies['http'].host_port}",
                "ws": f"ws://{LOOPBACK}:{proxies['ws'].host_port}/ws",
            },
            upstream_urls={t: p.gateway_url for t, p in proxies.items()},
        )
    return Endpoints(
        run_id=run_id,
        network=network,
        chain=spec.chain,
        chain_id=spec.chain_id,
        gateway_kind=spec.gateway.kind,
        gateway_url=gateway_url,
        gateway_rpc_url=gateway_url + spec.gateway.rpc_path.format(chain=spec.chain),
        gateway_ws_url=f"ws://{LOOPBACK}:{plan.gateway}" + spec.gateway.ws_path.format(chain=spec.chain),
        gateway_health_url=gateway_url + spec.gateway.health_path,
        gateway_events_url=f"{gateway_url}/admin/events" if spec.gateway.admin_api else None,
        toxiproxy_url=f"http://{LOOPBACK}:{plan.toxiproxy_api}",
        providers=providers,
    )


# --- the lab -------------------------------------------------------------------------------------------


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def container_name(run_id: str, role: str) -> str:
    return f"lab-{run_id}-{role}"


_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def configure_testcontainers() -> None:
    """Ryuk off (it cannot be pulled here; labels are the guard) and the host reported as 127.0.0.1."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TC_HOST", LOOPBACK)
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.ryuk_disabled = os.environ["TESTCONTAINERS_RYUK_DISABLED"].lower() in (
        "1",
        "true",
        "yes",
    )
    testcontainers_config.tc_host_override = os.environ["TC_HOST"]


@dataclass(frozen=True)
class RpcResult:
    status: int
    body: Any
    headers: dict[str, str]
    latency_ms: float

    @property
    def result(self) -> Any:
        if not isinstance(self.body, dict) or "result" not in self.body:
            raise AssertionError(f"not a JSON-RPC result: HTTP {self.status} {self.body!r}")
        return self.body["result"]


_running_labs: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _stop_forgotten_labs() -> None:
    for lab in list(_running_labs):
        with contextlib.suppress(Exception):
            lab.stop()


class Lab:
    """A running lab. Use as a context manager, or `start()` / `stop()`.

    `detached=True` labels the lab as long-lived (`lab up`): a test session's sweep of crashed runs
    leaves it alone, and `detach()` leaves it running when this process exits.
    """

    def __init__(
        self,
        spec: TopologySpec | None = None,
        *,
        images: Any = None,
        run_id: str | None = None,
        detached: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec or TopologySpec()
        self.run_id = run_id or new_run_id()
        if not _RUN_ID.match(self.run_id):
            raise SpecError(f"run id {self.run_id!r}: use lower-case letters, digits, '.', '_' and '-'")
        self.detached = detached
        self.images = images  # an ImageSet; ensured at start when not given
        self._progress = progress or (lambda message: None)
        self.plan = plan_ports(self.spec)
        self.network_name = f"lab-{self.run_id}"
        self.endpoints = build_endpoints(self.spec, self.plan, self.run_id, self.network_name)
        self.timings: dict[str, float] = {}
        self._docker: Any = None
        self._network: Any = None
        self._containers: dict[str, Any] = {}  # name -> testcontainers DockerContainer
        self._targets: dict[str, ContainerTarget] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._config_dir: Path | None = None
        self._guarded = False
        self._started = False
        self._faults: FaultInjector | None = None
        self._toxiproxy: ToxiproxyClient | None = None
        self._control: ControlClient | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Lab:
        if self._started:
            return self
        self._started = True
        termination_guard.__enter__()
        self._guarded = True
        _running_labs.add(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> CleanupReport:
        """Remove every container, network and volume of this lab (by its run-id label)."""
        report = CleanupReport()
        _running_labs.discard(self)
        self._stopping.set()
        with TerminationGuard.deferred():
            if self._pool is not None:  # let container starts in flight finish, so none escapes the sweep
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._docker is not None:
                report = remove_lab_resources(self._docker, run_id=self.run_id)
            for container in self._containers.values():
                with contextlib.suppress(Exception):
                    container.get_docker_client().client.close()
            self._containers.clear()
            if self._control is not None:
                self._control.close()
            if self._docker is not None:
                self._docker.close()
                self._docker = None
            if self._config_dir is not None:
                shutil.rmtree(self._config_dir, ignore_errors=True)
                self._config_dir = None
        self._release_guard()
        return report

    def detach(self) -> Endpoints:
        """Leave the lab running after this process ends (`lab up`); `lab down` removes it."""
        _running_labs.discard(self)
        self._release_guard()
        return self.endpoints

    def _release_guard(self) -> None:
        if self._guarded:
            self._guarded = False
            termination_guard.__exit__(None, None, None)

    # --- accessors ---------------------------------------------------------------------------------
    @property
    def faults(self) -> FaultInjector:
        if self._faults is None:
            raise LabError("the lab is not running")
        return self._faults

    @property
    def toxiproxy(self) -> ToxiproxyClient:
        if self._toxiproxy is None:
            raise LabError("the lab is not running")
        return self._toxiproxy

    @property
    def control(self) -> ControlClient:
        if self._control is None:
            raise LabError("the lab is not running")
        return self._control

    @property
    def docker(self) -> Any:
        return self._docker

    def container(self, name: str) -> Any:
        """The Docker SDK container of a provider id, `gateway` or `toxiproxy`."""
        return self._targets[name].container

    def logs(self, name: str, tail: int = 50) -> str:
        return self.container(name).logs(tail=tail).decode(errors="replace")

    # --- start-up ----------------------------------------------------------------------------------
    def _step(self, label: str, started: float) -> None:
        self.timings[label] = round(time.monotonic() - started, 3)
        self._progress(f"{label}: {self.timings[label]:.1f}s")

    def _start(self) -> None:
        import docker

        from lab.faults import FaultInjector, ToxiproxyClient
        from lab.faults.control import ControlClient

        t0 = time.monotonic()
        configure_testcontainers()
        images = self.images = self.images or _ensure_images(self._progress)
        self._step("images", t0)
        self._docker = docker.from_env()
        gateway_image = self.spec.gateway.image or images.gateway
        self._require_image(gateway_image)
        self._control = ControlClient()
        self._toxiproxy = ToxiproxyClient(LOOPBACK, self.plan.toxiproxy_api)
        self._create_network()
        self._pool = ThreadPoolExecutor(
            max_workers=len(self.spec.providers) + 2, thread_name_prefix="lab-start"
        )

        # Toxiproxy and the providers first, side by side; the gateway once its upstreams answer, so it
        # does not open circuit breakers on a half-built lab.
        toxiproxy = self._pool.submit(self._start_toxiproxy, images.toxiproxy)
        providers = [self._pool.submit(self._start_provider, p, images.provider) for p in self.spec.providers]
        toxiproxy.result()
        self._step("toxiproxy ready", t0)
        heads = {p.id: f.result() for p, f in zip(self.spec.providers, providers, strict=True)}
        self._step("providers ready", t0)
        gateway = self._pool.submit(self._start_gateway, gateway_image)
        advancing = [self._pool.submit(self._wait_head_advances, pid, head) for pid, head in heads.items()]
        gateway.result()
        for future in advancing:
            future.result()
        self._step("gateway ready", t0)
        self._pool.shutdown(wait=True)
        self._pool = None
        self._faults = FaultInjector(
            toxiproxy=self._toxiproxy,
            proxies={pid: ep.proxies for pid, ep in self.endpoints.providers.items()},
            containers=self._targets,
            control=self._control,
            control_urls={pid: ep.control_url for pid, ep in self.endpoints.providers.items()},
            gateway_url=self.endpoints.gateway_url,
            chain=self.spec.chain,
            memory_total=lambda: int(self._docker.info()["MemTotal"]),
        )

    def _require_image(self, image: str) -> None:
        """Fail before anything starts when an image is neither here nor pullable (a custom gateway)."""
        from docker.errors import DockerException, ImageNotFound

        try:
            self._docker.images.get(image)
        except ImageNotFound:
            self._progress(f"pulling {image} ...")
            try:
                self._docker.images.pull(image)
            except DockerException as exc:
                raise LabError(f"image {image} is not here and cannot be pulled: {exc}") from None

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return lab_labels(self.run_id, role=role, detached=self.detached, **extra)

    def _create_network(self) -> None:
        # Testcontainers only needs the network's name; the Docker SDK object also serves the faults.
        self._network = self._docker.networks.create(
            self.network_name, driver="bridge", labels=self._labels("network"), check_duplicate=True
        )

    def _run(self, name: str, image: str, aliases: list[str], ports: dict[int, int], **options: Any) -> Any:
        """Create and start one labelled container on the lab network with ports on 127.0.0.1."""
        from testcontainers.core.container import DockerContainer

        from lab.faults.process import ContainerTarget

        labels = options.pop("labels")
        copies = options.pop("copies", ())
        mounts = options.pop("mounts", ())
        container = DockerContainer(
            image,
            name=container_name(self.run_id, name),
            network=self._network,
            network_aliases=aliases,
            env=options.pop("env", None),
            command=options.pop("command", None),
        )
        # testcontainers would publish on 0.0.0.0; (ip, port) tuples pin the host side to loopback.
        container.ports = {f"{inner}/tcp": (LOOPBACK, outer) for inner, outer in ports.items()}
        for data, path in copies:
            container.with_copy_into_container(data, path)
        for host_path, path in mounts:
            container.with_volume_mapping(host_path, path, "ro")
        container.with_kwargs(labels=labels, **options)
        self._containers[name] = container
        container.start()
        self._targets[name] = ContainerTarget(
            name=name,
            container=self._docker.containers.get(container.get_container_id()),
            network=self._network,
            aliases=aliases,
        )
        return container

    def _start_toxiproxy(self, image: str) -> None:
        ports = {TOXIPROXY_API_PORT: self.plan.toxiproxy_api} | {
            p.listen_port: p.host_port for p in self.plan.proxies
        }
        self._run(TOXIPROXY_ALIAS, image, [TOXIPROXY_ALIAS], ports, labels=self._labels("toxiproxy"))
        self._until(self.toxiproxy.version, TOXIPROXY_ALIAS, "the Toxiproxy API answers")
        self._ensure_proxies()

    def _ensure_proxies(self) -> None:
        """Create the proxies that are missing (all at start; after a Toxiproxy restart, all again)."""
        existing = self.toxiproxy.proxies()
        for proxy in self.plan.proxies:
            if proxy.name not in existing:
                self.toxiproxy.create_proxy(
                    proxy.name, listen_port=proxy.listen_port, upstream=proxy.upstream
                )
        names = {p.name for p in self.plan.proxies}
        self._until(lambda: names <= set(self.toxiproxy.proxies()), TOXIPROXY_ALIAS, "every proxy is listed")

    def _start_provider(self, provider: ProviderSpec, image: str) -> int:
        env = {
            "LAB_PROVIDER_ID": provider.id,
            "LAB_PROVIDER_HOST": "0.0.0.0",
            "LAB_PROVIDER_PORT": str(PROVIDER_PORT),
            "LAB_PROVIDER_CHAIN_ID": str(provider.chain_id or self.spec.chain_id),
            "LAB_PROVIDER_BLOCK_TIME": str(provider.block_time),
            "LAB_PROVIDER_GENESIS_TIME": str(self.spec.genesis_time),
            "LAB_PROVIDER_BEHAVIOR": orjson.dumps(provider.behavior).decode(),
        }
        if provider.seed is not None:
            env["LAB_PROVIDER_SEED"] = str(provider.seed)
        ports = {PROVIDER_PORT: self.plan.providers[provider.id]}
        labels = self._labels("provider", **{PROVIDER_ID: provider.id})
        self._run(provider.id, image, [provider.id], ports, labels=labels, env=env)
        return self._provider_head(provider.id)

    def _provider_head(self, provider_id: str, timeout: float | None = None) -> int:
        url = self.endpoints.providers[provider_id].control_url
        health = self._until(
            lambda: self.control.provider_health(url),
            provider_id,
            "its health endpoint answers ok",
            predicate=lambda h: isinstance(h, dict) and h.get("status") == "ok",
            timeout=timeout,
        )
        return _block_number(health.get("head"))

    def _wait_head_advances(self, provider_id: str, first: int) -> None:
        url = self.endpoints.providers[provider_id].control_url
        self._until(
            lambda: _block_number(self.control.provider_health(url).get("head")),
            provider_id,
            f"its head advances past {first}",
            predicate=lambda head: head > first,
            timeout=self.spec.provider(provider_id).block_time * 3 + 10,
        )

    def _start_gateway(self, image: str) -> None:
        gateway = self.spec.gateway
        config = render_gateway_config(self.spec, self.plan).encode()
        options: dict[str, Any] = {
            "labels": self._labels("gateway"),
            "env": gateway.rendered_env(),
            "command": gateway.rendered_command(),
        }
        if gateway.user is not None:
            options["user"] = gateway.user
        if gateway.config_delivery == "copy":
            options["copies"] = [(config, gateway.config_path)]
        else:
            self._config_dir = Path(tempfile.mkdtemp(prefix=f"lab-{self.run_id}-"))
            self._config_dir.chmod(0o755)  # readable by the gateway's non-root user
            config_file = self._config_dir / Path(gateway.config_path).name
            config_file.write_bytes(config)
            config_file.chmod(0o644)
            options["mounts"] = [(str(config_file), gateway.config_path)]
        ports = {gateway.port: self.plan.gateway}
        self._run(GATEWAY_ALIAS, image, [GATEWAY_ALIAS], ports, **options)
        self.wait_gateway()

    # --- readiness ---------------------------------------------------------------------------------
    def _until(
        self,
        fn: Callable[[], Any],
        container: str,
        what: str,
        *,
        predicate: Callable[[Any], bool] = lambda value: value is not None and value is not False,
        timeout: float | None = None,
    ) -> Any:
        """Wait for a condition; on timeout, raise LabError with the container's state and last logs."""

        def attempt() -> Any:
            if self._stopping.is_set():
                raise _Stopping
            return fn()

        try:
            return wait_for_value(
                attempt, predicate, timeout=timeout or self.spec.startup_timeout_s, interval=0.1, message=what
            )
        except EventuallyTimeout as exc:
            raise LabError(f"{container}: {exc}\n{self._diagnose(container)}") from None

    def _diagnose(self, name: str) -> str:
        target = self._targets.get(name)
        if target is None:
            return f"(container {name} was not created)"
        try:
            target.container.reload()
            state = target.container.attrs.get("State", {})
            logs = target.container.logs(tail=30).decode(errors="replace")
        except Exception as exc:
            return f"(cannot inspect container {name}: {exc})"
        return (
            f"container {name} status={state.get('Status')} exit={state.get('ExitCode')}; last logs:\n{logs}"
        )

    def wait_gateway(self, timeout: float | None = None) -> int:
        """Wait until the gateway's health endpoint answers and eth_blockNumber succeeds through it
        (so through Toxiproxy). Returns the block number."""
        health = self.endpoints.gateway_health_url
        self._until(
            lambda: self.control.status(health),
            GATEWAY_ALIAS,
            f"GET {health} answers 200",
            predicate=lambda status: status == 200,
            timeout=timeout,
        )
        answer = self._until(
            lambda: self.rpc("eth_blockNumber", timeout=2.0),
            GATEWAY_ALIAS,
            "eth_blockNumber answers through the gateway",
            predicate=lambda r: r.status == 200 and isinstance(r.body, dict) and "result" in r.body,
            timeout=timeout,
        )
        return _block_number(answer.body["result"])

    def wait_ready(self, timeout: float | None = None) -> None:
        """Every provider healthy and the gateway answering through Toxiproxy."""
        for provider in self.spec.providers:
            self._provider_head(provider.id, timeout=timeout)
        self.wait_gateway(timeout)

    # --- isolation ---------------------------------------------------------------------------------
    def heal(self, timeout: float | None = None) -> list[str]:
        """Back to the spec'd state between tests: faults lifted, toxics removed, containers running and
        connected, behaviours and statistics reset, breakers closed. Returns what could not be undone
        through its fault record (then repaired directly)."""
        from lab.faults import process

        errors = self.faults.lift_all()
        for name, target in self._targets.items():
            process.start(target)
            target.container.reload()
            if self.network_name not in target.container.attrs["NetworkSettings"]["Networks"]:
                target.network.connect(target.container, aliases=list(target.aliases))
                errors.append(f"{name}: reconnected to {self.network_name}")
        self._until(self.toxiproxy.version, TOXIPROXY_ALIAS, "the Toxiproxy API answers", timeout=timeout)
        self.toxiproxy.reset()
        self._ensure_proxies()
        for provider in self.spec.providers:
            self._provider_head(provider.id, timeout=timeout)
            url = self.endpoints.providers[provider.id].control_url
            self.control.set_behavior(url, provider.behavior)
            self.control.reset_provider(url)
        if self.spec.gateway.admin_api:
            self.control.reset_breakers(self.endpoints.gateway_url)
        self.wait_gateway(timeout)
        return errors

    # --- convenience -------------------------------------------------------------------------------
    def rpc(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        strategy: str | None = None,
        provider: str | None = None,
        include_meta: bool = False,
        timeout: float = 5.0,
    ) -> RpcResult:
        """One JSON-RPC call through the gateway, timed. Connection errors raise (requests')."""
        url = self.endpoints.rpc_url(strategy=strategy, provider=provider)
        if include_meta:
            url += "?include_meta=headers"
        payload = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": params if params is not None else [],
        }
        started = time.perf_counter()
        response = self.control.session.post(
            url, data=orjson.dumps(payload), timeout=timeout, headers={"Content-Type": "application/json"}
        )
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return RpcResult(response.status_code, body, dict(response.headers), latency_ms)

    @contextlib.contextmanager
    def events(self) -> Iterator[GatewayEventStream]:
        """Subscribe to the gateway's event stream (server-sent events) for the duration of a block."""
        from lab.gateway_events import GatewayEventStream

        if self.endpoints.gateway_events_url is None:
            raise LabError(f"the {self.spec.gateway.kind} gateway has no event stream")
        with GatewayEventStream(self.endpoints.gateway_events_url) as stream:
            yield stream


def _block_number(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise ValueError(f"not a block number: {value!r}")


def _ensure_images(progress: Callable[[str], None]) -> Any:
    from lab.images import ensure_images

    return ensure_images(progress=progress)
