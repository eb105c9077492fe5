"""A running lab in Docker: a private network, Toxiproxy, N mock providers and a gateway, started with
Testcontainers (`lab.topology.containers`) and torn down by label.

Every provider is reachable from the gateway only through Toxiproxy: one proxy per provider and
transport (`<id>_http`, `<id>_ws`), and the gateway's configuration points every upstream URL at a
Toxiproxy listener. From the host, everything is reached through ports published on 127.0.0.1 and
allocated up front (`lab.topology.ports`).

    from lab.topology import Lab, TopologySpec

    with Lab(TopologySpec.with_providers(3)) as lab:
        lab.rpc("eth_blockNumber")
        with lab.faults.apply({"type": "latency", "latency": "200ms"}, "p1"):
            ...
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from lab import jsonrpc
from lab.topology.cleanup import (
    PORT_NAMES,
    PROVIDER_ID,
    CleanupReport,
    TerminationGuard,
    lab_labels,
    remove_lab_resources,
    termination_guard,
)
from lab.topology.containers import (
    GatewayContainer,
    LabContainer,
    LabError,
    LabNetwork,
    LocustContainer,
    ProviderContainer,
    ToxiproxyContainer,
    configure_testcontainers,
)
from lab.topology.endpoints import Endpoints, build_endpoints, container_name
from lab.topology.gateway_config import render_gateway_config
from lab.topology.ports import LOOPBACK, PortPlan, ProxyPlan, plan_ports
from lab.topology.specs import (
    GATEWAY_ALIAS,
    TOXIPROXY_ALIAS,
    TOXIPROXY_API_PORT,
    ProviderSpec,
    SpecError,
    TopologySpec,
)

if TYPE_CHECKING:
    from lab.faults import FaultInjector, ToxiproxyClient
    from lab.faults.control import ControlClient
    from lab.faults.process import ContainerTarget
    from lab.topology.event_stream import GatewayEventStream

__all__ = ["Lab", "LabError", "RpcResult"]

EXPOSED = "lab.exposed"  # on a `lab up --expose-providers` lab's Toxiproxy: its spec and port plan (JSON)
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


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


def started_by_this_process() -> str:
    """What started a lab in this process, for `lab ps`: `lab <command>`, `test session`, or the program."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    program = argv0.parent.name if argv0.name == "__main__.py" else argv0.name
    if program == "lab" and len(sys.argv) > 1:
        return f"lab {sys.argv[1]}"
    if program in ("pytest", "py.test"):
        return "test session"
    return program if program and not program.startswith("-") else "python"


_running_labs: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _stop_forgotten_labs() -> None:
    for lab in list(_running_labs):
        with contextlib.suppress(Exception):
            lab.stop()


class Lab:
    """A running lab. Use as a context manager, or `start()` / `stop()`.

    `detached=True` labels the lab as long-lived (`lab up`): only `lab down --run-id`/`--all` remove it,
    and `detach()` leaves it running when this process exits. `started_by` names what started it, for
    `lab ps` (default: `lab up` when detached, else this process's command).
    """

    def __init__(
        self,
        spec: TopologySpec | None = None,
        *,
        images: Any = None,
        run_id: str | None = None,
        detached: bool = False,
        started_by: str | None = None,
        progress: Callable[[str], None] | None = None,
        expose_providers: bool = False,
        plan: PortPlan | None = None,
        external_gateway_url: str | None = None,
    ) -> None:
        from lab.record import new_run_id

        self.spec = spec or TopologySpec()
        self.run_id = run_id or new_run_id()
        if not _RUN_ID.match(self.run_id):
            raise SpecError(f"run id {self.run_id!r}: use lower-case letters, digits, '.', '_' and '-'")
        self.detached = detached
        self.started_by = started_by or ("lab up" if detached else started_by_this_process())
        self.images = images  # an ImageSet; ensured at start when not given
        self._progress = progress or (lambda message: None)
        self.plan = plan or plan_ports(self.spec)
        self.network_name = f"lab-{self.run_id}"
        # expose_providers (`lab up --expose-providers`): no gateway container; the user's gateway, on the
        # host, reaches the providers' Toxiproxy listeners through their ports published on 127.0.0.1.
        self.expose_providers = expose_providers
        self.external_gateway_url = external_gateway_url
        self._attached = False  # attach(): someone else's lab (`lab up`), left running at stop()
        self.endpoints = build_endpoints(
            self.spec, self.plan, self.run_id, self.network_name, external_url=external_gateway_url
        )
        # Rendered now, so that a template error is bad input before any container starts.
        self.gateway_config = render_gateway_config(self.spec, self.plan)
        self.gateway_image: str | None = None  # the reference it ran from, once resolved at start
        self.timings: dict[str, float] = {}
        self._docker: Any = None
        self._network: LabNetwork | None = None
        self._docker_network: Any = None  # the Docker SDK's object of the network, for the faults
        self._containers: dict[str, LabContainer] = {}  # alias -> container, every one this lab made
        self._toxiproxy_container: ToxiproxyContainer | None = None
        self._providers: dict[str, ProviderContainer] = {}
        self._gateway: GatewayContainer | None = None
        self._targets: dict[str, ContainerTarget] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
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
        """Remove every container, network and volume of this lab: each container through
        Testcontainers, then whatever else carries its run-id label."""
        report = CleanupReport()
        _running_labs.discard(self)
        self._stopping.set()
        with TerminationGuard.deferred():
            if self._pool is not None:  # let container starts in flight finish, so none escapes the sweep
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            for container in self._containers.values():
                _stop_container(container, report)
            self._containers.clear()
            if self._network is not None:
                _remove_network(self._network, report)
                self._network = None
            if self._docker is not None and not self._attached:
                swept = remove_lab_resources(self._docker, run_id=self.run_id)
                report.containers += swept.containers
                report.networks += swept.networks
                report.volumes += swept.volumes
                report.errors += swept.errors
            if self._control is not None:
                self._control.close()
            if self._docker is not None:
                self._docker.close()
                self._docker = None
        self._release_guard()
        return report

    def detach(self) -> Endpoints:
        """Leave the lab running after this process ends (`lab up`); `lab down --run-id` removes it."""
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
        return self._containers[name].get_wrapped_container()

    def logs(self, name: str, tail: int = 50) -> str:
        return str(self.container(name).logs(tail=tail).decode(errors="replace"))

    def locust(self, *args: str, name: str = "locust") -> LocustContainer:
        """A Locust container (the lab-locust image, not started yet; `args` are Locust's) on this lab's
        network, aimed at the gateway and labelled like the lab, so that it goes with the lab."""
        if self._network is None or self.images is None:
            raise LabError("the lab is not running")
        if name in self._containers:
            raise ValueError(f"a container named {name!r} is already in this lab")
        locust = LocustContainer(
            self.images.locust,
            target=f"http://{GATEWAY_ALIAS}:{self.spec.gateway.port}",
            args=list(args),
            **self._container_options(name, "locust"),
        )
        self._containers[name] = locust
        return locust

    # --- start-up ----------------------------------------------------------------------------------
    def _step(self, label: str, started: float) -> None:
        self.timings[label] = round(time.monotonic() - started, 3)
        self._progress(f"{label}: {self.timings[label]:.1f}s")

    def _start(self) -> None:
        import docker

        from lab.faults import ToxiproxyClient
        from lab.faults.control import ControlClient

        t0 = time.monotonic()
        configure_testcontainers()
        images = self.images = self.images or _ensure_images(self._progress)
        self._step("images", t0)
        self._docker = docker.from_env()
        gateway_image = None
        if not self.without_gateway:
            gateway_image = self.gateway_image = self._gateway_image(images)
            self._require_image(gateway_image)
        self._control = ControlClient()
        self._toxiproxy = ToxiproxyClient(LOOPBACK, self.plan.toxiproxy_api)
        self._network = LabNetwork(self.network_name, self._labels("network")).create()
        self._docker_network = self._docker.networks.get(self._network.id)
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
        gateway = self._pool.submit(self._start_gateway, gateway_image) if gateway_image else None
        advancing = [
            self._pool.submit(self._providers[pid].wait_head_past, head) for pid, head in heads.items()
        ]
        if gateway is not None:
            gateway.result()
        for future in advancing:
            future.result()
        self._step("gateway ready", t0)
        self._pool.shutdown(wait=True)
        self._pool = None
        self._make_injector()

    @property
    def without_gateway(self) -> bool:
        """No gateway container: its providers exposed for a gateway on the host, or an external one."""
        return self.expose_providers or self.external_gateway_url is not None

    def _make_injector(self) -> None:
        from lab.faults import FaultInjector

        self._faults = FaultInjector(
            toxiproxy=self.toxiproxy,
            proxies={pid: ep.proxies for pid, ep in self.endpoints.providers.items()},
            containers=self._targets,
            control=self.control,
            control_urls={pid: ep.control_url for pid, ep in self.endpoints.providers.items()},
            gateway_url=self.endpoints.gateway_url,
            chain=self.spec.chain,
            memory_total=lambda: int(self._docker.info()["MemTotal"]),
        )

    # --- a gateway outside the lab ----------------------------------------------------------------------
    def host_gateway_config(self) -> str:
        """The gateway adapter's configuration with every upstream at its Toxiproxy listener's port on
        127.0.0.1: for the user's own gateway process (`lab up --expose-providers`)."""
        return render_gateway_config(self.spec, self.plan, on_host=True)

    def exposed_state(self) -> str:
        """What `attach` needs to drive this lab again (kept in a label of its Toxiproxy container)."""
        return orjson.dumps(
            {"spec": self.spec.model_dump(mode="json"), "plan": dataclasses.asdict(self.plan)}
        ).decode()

    @classmethod
    def attach(
        cls,
        run_id: str,
        *,
        gateway_url: str,
        progress: Callable[[str], None] | None = None,
    ) -> Lab:
        """The running `lab up --expose-providers` lab `run_id`, driven with the gateway at `gateway_url`
        (the user's, outside the lab). `stop()` leaves that lab running."""
        import docker
        from docker.errors import DockerException, NotFound

        configure_testcontainers()
        client = docker.from_env()
        try:
            toxiproxy = client.containers.get(container_name(run_id, TOXIPROXY_ALIAS))
        except NotFound:
            client.close()
            raise LabError(
                f"no lab {run_id!r} with exposed providers (start one with: lab up --expose-providers)"
            ) from None
        except DockerException as exc:
            client.close()
            raise LabError(f"Docker: {exc}") from None
        state = toxiproxy.labels.get(EXPOSED)
        if not state:
            client.close()
            raise LabError(f"lab {run_id} was not started with --expose-providers")
        data = orjson.loads(state)
        spec = TopologySpec.model_validate(data["spec"])
        raw = data["plan"]
        plan = PortPlan(
            toxiproxy_api=raw["toxiproxy_api"],
            gateway=raw["gateway"],
            providers=raw["providers"],
            proxies=tuple(ProxyPlan(**p) for p in raw["proxies"]),
        )
        lab = cls(spec, run_id=run_id, plan=plan, external_gateway_url=gateway_url, progress=progress)
        lab._attached = True
        lab._started = True
        lab._docker = client
        lab._attach_containers()
        return lab

    def _attach_containers(self) -> None:
        from lab.faults import ToxiproxyClient
        from lab.faults.control import ControlClient
        from lab.faults.process import ContainerTarget

        network = self._docker.networks.get(self.network_name)
        self._docker_network = network
        for alias in [TOXIPROXY_ALIAS, *(p.id for p in self.spec.providers)]:
            container = self._docker.containers.get(container_name(self.run_id, alias))
            self._targets[alias] = ContainerTarget(
                name=alias, container=container, network=network, aliases=[alias]
            )
        self._control = ControlClient()
        self._toxiproxy = ToxiproxyClient(LOOPBACK, self.plan.toxiproxy_api)
        self._make_injector()

    def wait_external_gateway(self, timeout: float) -> int:
        """Wait until eth_blockNumber answers through the external gateway; the block number."""
        from lab.eventually import wait_for_value

        def number() -> int | None:
            try:
                result = self.rpc("eth_blockNumber", timeout=2.0)
            except Exception:
                return None
            body = result.body
            return jsonrpc.quantity(body.get("result")) if isinstance(body, dict) else None

        try:
            found = wait_for_value(
                number,
                lambda n: n is not None,
                timeout=timeout,
                message="eth_blockNumber through the gateway",
            )
            assert found is not None
            return found
        except Exception as exc:
            raise LabError(
                f"the gateway at {self.endpoints.gateway_rpc_url} did not answer eth_blockNumber within "
                f"{timeout:g}s ({exc})"
            ) from None

    def _gateway_image(self, images: Any) -> str:
        """The gateway's image: the lab's reference gateway, an image of the lab's own Dockerfiles built
        in the same mode as the rest (official base where a registry is reachable), or the adapter's."""
        gateway = self.spec.gateway
        if gateway.build is not None:
            from lab.images import ensure_gateway_image

            return str(ensure_gateway_image(gateway.build, progress=self._progress))
        return gateway.image or images.gateway

    def image_id(self, image: str) -> str | None:
        """Docker's id of an image reference (None: unknown)."""
        try:
            return str(self._docker.images.get(image).id)
        except Exception:
            return None

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
        return lab_labels(self.run_id, role=role, detached=self.detached, started_by=self.started_by, **extra)

    def _container_options(self, alias: str, role: str, **labels: str) -> dict[str, Any]:
        assert self._network is not None
        return {
            "alias": alias,
            "name": container_name(self.run_id, alias),
            "network": self._network,
            "labels": self._labels(role, **labels),
            "startup_timeout": self.spec.startup_timeout_s,
            "stopping": self._stopping,
        }

    def _run(self, container: LabContainer) -> None:
        """Start one container (its readiness included) and make it a fault target."""
        from lab.faults.process import ContainerTarget

        self._containers[container.alias] = container  # before start: stop() removes it even if that fails
        container.start()
        self._targets[container.alias] = ContainerTarget(
            name=container.alias,
            container=container.get_wrapped_container(),
            network=self._docker_network,
            aliases=[container.alias],
        )

    def _start_toxiproxy(self, image: str) -> None:
        proxy_ports = {p.listen_port: p.host_port for p in self.plan.proxies}
        names = ",".join(
            [f"{TOXIPROXY_API_PORT}=api", *(f"{p.listen_port}={p.name}" for p in self.plan.proxies)]
        )
        labels = {PORT_NAMES: names, **({EXPOSED: self.exposed_state()} if self.expose_providers else {})}
        container = ToxiproxyContainer(
            image,
            api_port=self.plan.toxiproxy_api,
            proxy_ports=proxy_ports,
            **self._container_options(TOXIPROXY_ALIAS, "toxiproxy", **labels),
        )
        self._toxiproxy_container = container
        self._run(container)
        self._ensure_proxies()

    def _ensure_proxies(self) -> None:
        """Create the proxies that are missing (all at start; after a Toxiproxy restart, all again)."""
        assert self._toxiproxy_container is not None
        existing = self.toxiproxy.proxies()
        for proxy in self.plan.proxies:
            if proxy.name not in existing:
                self.toxiproxy.create_proxy(
                    proxy.name, listen_port=proxy.listen_port, upstream=proxy.upstream
                )
        names = {p.name for p in self.plan.proxies}
        self._toxiproxy_container.wait_until(
            "every proxy is listed", lambda _: names <= set(self.toxiproxy.proxies())
        )

    def _start_provider(self, provider: ProviderSpec, image: str) -> int:
        container = ProviderContainer(
            image,
            provider,
            chain_id=self.spec.chain_id,
            genesis_time=self.spec.genesis_time,
            control_port=self.plan.providers[provider.id],
            **self._container_options(provider.id, "provider", **{PROVIDER_ID: provider.id}),
        )
        self._providers[provider.id] = container
        self._run(container)
        return container.wait_ready()

    def _start_gateway(self, image: str) -> None:
        container = GatewayContainer(
            image,
            self.spec.gateway,
            chain=self.spec.chain,
            chain_id=self.spec.chain_id,
            config=self.gateway_config.encode(),
            host_port=self.plan.gateway,
            **self._container_options(GATEWAY_ALIAS, "gateway"),
        )
        self._gateway = container
        self._run(container)

    # --- readiness ---------------------------------------------------------------------------------
    def wait_gateway(self, timeout: float | None = None) -> int:
        """Wait until the gateway's health endpoint answers and eth_blockNumber succeeds through it
        (so through Toxiproxy). Returns the block number."""
        if self._gateway is None:
            raise LabError("the lab is not running")
        return self._gateway.wait_ready(timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Every provider healthy and the gateway answering through Toxiproxy."""
        for provider in self._providers.values():
            provider.wait_ready(timeout)
        self.wait_gateway(timeout)

    # --- isolation ---------------------------------------------------------------------------------
    def heal(self, timeout: float | None = None) -> list[str]:
        """Back to the spec'd state between tests: faults lifted, toxics removed, containers running and
        connected, behaviours and statistics reset, breakers closed. Returns what could not be undone
        through its fault record (then repaired directly)."""
        from lab.faults import process

        if self._toxiproxy_container is None:
            raise LabError("the lab is not running")
        errors = self.faults.lift_all()
        for name, target in self._targets.items():
            process.start(target)
            target.container.reload()
            if self.network_name not in target.container.attrs["NetworkSettings"]["Networks"]:
                target.network.connect(target.container, aliases=list(target.aliases))
                errors.append(f"{name}: reconnected to {self.network_name}")
        self._toxiproxy_container.wait_ready(timeout)
        self.toxiproxy.reset()
        self._ensure_proxies()
        for provider_id, provider in self._providers.items():
            provider.wait_ready(timeout)
            url = provider.control_url
            self.control.set_behavior(url, self.spec.provider(provider_id).behavior)
            self.control.reset_provider(url)
        if self.spec.gateway.admin_api and not self.without_gateway:
            self.control.reset_breakers(self.endpoints.gateway_url)
        if not self.without_gateway:
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
        from lab.topology.event_stream import GatewayEventStream

        if self.endpoints.gateway_events_url is None:
            raise LabError(f"the {self.spec.gateway.kind} gateway has no event stream")
        with GatewayEventStream(self.endpoints.gateway_events_url) as stream:
            yield stream


def _stop_container(container: LabContainer, report: CleanupReport) -> None:
    """The library's own teardown (remove with volumes, close its client), recorded in `report`."""
    from docker.errors import NotFound
    from testcontainers.core.exceptions import ContainerStartException

    try:
        name: str | None = container.get_wrapped_container().name
    except ContainerStartException:
        name = None  # never created: only its client to close
    try:
        container.stop()
    except NotFound:
        return
    except Exception as exc:
        report.errors.append(f"container {name or container.alias}: {exc}")
        return
    if name is not None:
        report.containers.append(name)


def _remove_network(network: LabNetwork, report: CleanupReport) -> None:
    from docker.errors import NotFound

    try:
        network.remove()
    except NotFound:
        return
    except Exception:  # a container still attached: the label sweep that follows retries and reports
        return
    report.networks.append(network.name)


def _ensure_images(progress: Callable[[str], None]) -> Any:
    from lab.images import ensure_images

    return ensure_images(progress=progress)
