"""The lab's services as Testcontainers, in the shape of testcontainers-python's own modules: one
`DockerContainer` class per service, each with its readiness (a wait strategy that `start()` runs) and
accessors for what the host reaches (URLs on 127.0.0.1); `LabNetwork` is the library's `Network`, named
and labelled like the rest of the lab.

Host ports are allocated up front (`lab.topology.ports`) and bound with `with_bind_ports`. That method
takes no host address, so the lab network's bridge option `host_binding_ipv4` makes Docker publish them
on 127.0.0.1, and every start checks that it did (the first step of each readiness).

Readiness waits end at once (`Stopping`) when the lab is being stopped, so a Ctrl-C during start-up does
not wait for a start-up thread's timeout; a wait that times out raises `LabError` with the container's
state and last logs.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import orjson
import requests
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import CompositeWaitStrategy, LogMessageWaitStrategy
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from lab import jsonrpc
from lab.topology.ports import LOOPBACK
from lab.topology.specs import PROVIDER_PORT, TOXIPROXY_API_PORT, GatewaySpec, ProviderSpec

# The bridge driver's default host address for published ports (docker network create -o ...).
HOST_BINDING_OPTION = "com.docker.network.bridge.host_binding_ipv4"


class LabError(RuntimeError):
    """The lab could not be started or healed (images, containers, a server that never came up)."""


class Stopping(BaseException):
    """Ends a readiness wait in a start-up thread once the lab is being stopped (not an Exception, so
    the waits, which retry on exceptions, do not swallow it)."""


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


class LabNetwork(Network):
    """The lab's private bridge network `name`, labelled, publishing ports on 127.0.0.1 by default."""

    def __init__(self, name: str, labels: Mapping[str, str]) -> None:
        super().__init__(
            docker_network_kw={
                "driver": "bridge",
                "labels": dict(labels),
                "check_duplicate": True,
                "options": {HOST_BINDING_OPTION: LOOPBACK},
            }
        )
        self.name = name


# --- readiness -----------------------------------------------------------------------------------------


def _diagnose(container: WaitStrategyTarget) -> str:
    try:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        state = wrapped.attrs.get("State", {})
        logs = wrapped.logs(tail=30).decode(errors="replace")
    except Exception as exc:
        return f"(cannot inspect the container: {exc})"
    status = f"status={state.get('Status')} exit={state.get('ExitCode')}"
    return f"container {wrapped.name} {status}; last logs:\n{logs}"


class ReadyWhen(WaitStrategy):
    """Ready once `accept(probe(container))` holds; a probe that raises counts as "not yet" (a server
    still starting refuses connections). The accepted value is kept in `value`."""

    def __init__(
        self,
        what: str,
        probe: Callable[[Any], Any],
        accept: Callable[[Any], bool] = lambda value: value is not None and value is not False,
        *,
        timeout: float,
        stopping: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.what = what
        self.value: Any = None
        self._probe = probe
        self._accept = accept
        self._stopping = stopping
        self._startup_timeout = timeout  # the base class's setter takes whole seconds only
        self.with_poll_interval(0.1)

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        last = "no answer yet"

        def attempt() -> bool:
            nonlocal last
            if self._stopping is not None and self._stopping.is_set():
                raise Stopping
            try:
                value = self._probe(container)
            except Exception as exc:
                last = f"last error: {type(exc).__name__}: {exc}"
                return False
            last = f"last value: {value!r}"[:300]
            if not self._accept(value):
                return False
            self.value = value
            return True

        if not self._poll(attempt):
            name = getattr(container, "alias", "container")
            raise LabError(
                f"{name}: {self.what}: not true after {self._startup_timeout:.1f}s ({last})\n"
                f"{_diagnose(container)}"
            )


class PublishedOnLoopback(WaitStrategy):
    """Every published port of the container is bound on 127.0.0.1 (the network's default) and nowhere
    else; a Docker host that ignores the network option fails the start instead of exposing the lab."""

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        bindings = wrapped.attrs["NetworkSettings"]["Ports"] or {}
        exposed = sorted(
            f"{b['HostIp']}:{b['HostPort']}"
            for bs in bindings.values()
            if bs
            for b in bs
            if b["HostIp"] != LOOPBACK
        )
        if exposed:
            raise LabError(f"{wrapped.name}: ports published beyond {LOOPBACK}: {', '.join(exposed)}")


# --- the containers ------------------------------------------------------------------------------------


class LabContainer(DockerContainer):
    """A labelled container of one lab on its network under `alias`, its `ports` (inside -> host) bound
    on 127.0.0.1. Subclasses give `readiness_steps()` and the accessors of their service."""

    def __init__(
        self,
        image: str,
        *,
        alias: str,
        name: str,
        network: LabNetwork,
        labels: Mapping[str, str],
        ports: Mapping[int, int] | None = None,
        env: Mapping[str, str] | None = None,
        command: list[str] | None = None,
        startup_timeout: float = 60.0,
        stopping: threading.Event | None = None,
        **docker_options: Any,
    ) -> None:
        super().__init__(
            image,
            name=name,
            env=dict(env or {}),
            network=network,
            network_aliases=[alias],
            labels=dict(labels),
            **docker_options,
        )
        if command is not None:
            self.with_command(command)
        self.alias = alias
        self.host_ports = dict(ports or {})
        for inner, outer in self.host_ports.items():
            self.with_bind_ports(inner, outer)
        self.startup_timeout = startup_timeout
        self.stopping = stopping
        self._http = requests.Session()
        self._http.trust_env = False  # never send lab traffic through an environment proxy

    def readiness_steps(self) -> list[WaitStrategy]:
        """What `start()` waits for once the container runs, after the loopback check."""
        return []

    def start(self) -> Self:
        self.waiting_for(CompositeWaitStrategy(PublishedOnLoopback(), *self.readiness_steps()))
        return super().start()

    def ready_when(
        self,
        what: str,
        probe: Callable[[Any], Any],
        accept: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
    ) -> ReadyWhen:
        """A readiness step of this container (the lab's stop ends it; `timeout` defaults to the
        container's start-up timeout)."""
        options: dict[str, Any] = {} if accept is None else {"accept": accept}
        return ReadyWhen(
            what, probe, timeout=timeout or self.startup_timeout, stopping=self.stopping, **options
        )

    def wait_until(
        self,
        what: str,
        probe: Callable[[Any], Any],
        accept: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Wait for a condition on this (running) container; returns the accepted value."""
        step = self.ready_when(what, probe, accept, timeout)
        step.wait_until_ready(self)
        return step.value

    def url(self, port: int) -> str:
        """The host's URL of a port inside the container (its pinned host port, valid across restarts)."""
        return f"http://{LOOPBACK}:{self.host_ports[port]}"

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        try:
            super().stop(force=force, delete_volume=delete_volume)
        finally:
            self._http.close()


class ToxiproxyContainer(LabContainer):
    """Toxiproxy: its REST API, and the proxy listeners (`proxy_ports`: listen port -> host port)."""

    def __init__(self, image: str, *, api_port: int, proxy_ports: Mapping[int, int], **options: Any) -> None:
        super().__init__(image, ports={TOXIPROXY_API_PORT: api_port, **proxy_ports}, **options)

    @property
    def api_url(self) -> str:
        return self.url(TOXIPROXY_API_PORT)

    def version(self) -> str:
        response = self._http.get(f"{self.api_url}/version", timeout=5)
        response.raise_for_status()
        return response.text

    def readiness_steps(self) -> list[WaitStrategy]:
        return [self.ready_when("the Toxiproxy API answers", lambda c: c.version())]

    def wait_ready(self, timeout: float | None = None) -> None:
        self.wait_until("the Toxiproxy API answers", lambda c: c.version(), timeout=timeout)


class ProviderContainer(LabContainer):
    """A mock provider (`lab provider`): JSON-RPC and its control API on one port."""

    def __init__(
        self,
        image: str,
        provider: ProviderSpec,
        *,
        chain_id: int,
        genesis_time: int,
        control_port: int,
        **options: Any,
    ) -> None:
        env = {
            "LAB_PROVIDER_ID": provider.id,
            "LAB_PROVIDER_HOST": "0.0.0.0",
            "LAB_PROVIDER_PORT": str(PROVIDER_PORT),
            "LAB_PROVIDER_CHAIN_ID": str(provider.chain_id or chain_id),
            "LAB_PROVIDER_BLOCK_TIME": str(provider.block_time),
            "LAB_PROVIDER_GENESIS_TIME": str(genesis_time),
            "LAB_PROVIDER_BEHAVIOR": orjson.dumps(provider.behavior).decode(),
        }
        if provider.seed is not None:
            env["LAB_PROVIDER_SEED"] = str(provider.seed)
        super().__init__(image, env=env, ports={PROVIDER_PORT: control_port}, **options)
        self.provider = provider

    @property
    def control_url(self) -> str:
        """The provider's own port: control API and JSON-RPC without Toxiproxy."""
        return self.url(PROVIDER_PORT)

    def health(self) -> dict[str, Any]:
        response = self._http.get(f"{self.control_url}/_lab/health", timeout=5)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError(f"health: not an object: {body!r}")
        return body

    def head(self) -> int:
        """The provider's current block number, from its health endpoint."""
        head = self.health().get("head")
        number = jsonrpc.quantity(head)
        if number is None:
            raise ValueError(f"{self.alias}: health: not a block number: {head!r}")
        return number

    def _healthy_head(self, timeout: float | None = None) -> ReadyWhen:
        return self.ready_when(
            "its health endpoint answers ok",
            lambda c: c.health(),
            accept=lambda h: h.get("status") == "ok" and jsonrpc.quantity(h.get("head")) is not None,
            timeout=timeout,
        )

    def readiness_steps(self) -> list[WaitStrategy]:
        return [self._healthy_head()]

    def wait_ready(self, timeout: float | None = None) -> int:
        """Wait until healthy; returns the head."""
        step = self._healthy_head(timeout)
        step.wait_until_ready(self)
        head = jsonrpc.quantity(step.value["head"])
        assert head is not None  # accepted only with a head
        return head

    def wait_head_past(self, first: int) -> int:
        """Wait until the head advances past `first` (blocks are being made); allows three block times."""
        return int(
            self.wait_until(
                f"its head advances past {first}",
                lambda c: c.head(),
                accept=lambda head: head > first,
                timeout=self.provider.block_time * 3 + 10,
            )
        )


class GatewayContainer(LabContainer):
    """The gateway under test, its configuration `config` put in place before it starts: copied into the
    container, or (`config_delivery: mount`) bind-mounted read-only from a file that `stop()` removes."""

    def __init__(
        self,
        image: str,
        gateway: GatewaySpec,
        *,
        chain: str,
        config: bytes,
        host_port: int,
        chain_id: int = 1,
        **options: Any,
    ) -> None:
        if gateway.user is not None:
            options["user"] = gateway.user
        super().__init__(
            image,
            env=gateway.rendered_env(chain, chain_id),
            command=gateway.rendered_command(chain, chain_id),
            ports={gateway.port: host_port},
            **options,
        )
        self.gateway = gateway
        self.chain = chain
        self.chain_id = chain_id
        self.config_dir: Path | None = None
        config_path = gateway.config.path
        if gateway.config.delivery == "copy":
            self.with_copy_into_container(config, config_path)
        else:
            self.config_dir = Path(tempfile.mkdtemp(prefix=f"{options.get('name', 'lab')}-"))
            self.config_dir.chmod(0o755)  # readable by the gateway's non-root user
            config_file = self.config_dir / Path(config_path).name
            config_file.write_bytes(config)
            config_file.chmod(0o644)
            self.with_volume_mapping(config_file, config_path, "ro")

    @property
    def base_url(self) -> str:
        return self.url(self.gateway.port)

    @property
    def health_url(self) -> str | None:
        path = self.gateway.ready.path
        return None if path is None else self.base_url + path

    @property
    def rpc_url(self) -> str:
        return self.base_url + self.gateway.rpc_path(self.chain, self.chain_id)

    def health_status(self) -> int:
        assert self.health_url is not None
        return self._http.get(self.health_url, timeout=5).status_code

    def block_number(self) -> int | None:
        """eth_blockNumber through the gateway (so through Toxiproxy): the number, or None if no result."""
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
        response = self._http.post(self.rpc_url, data=orjson.dumps(payload), timeout=2.0, headers=_JSON)
        body = response.json() if response.status_code == 200 else None
        return jsonrpc.quantity(body.get("result")) if isinstance(body, dict) else None

    def _steps(self, timeout: float | None = None) -> list[ReadyWhen]:
        steps = []
        if self.health_url is not None:
            steps.append(
                self.ready_when(
                    f"GET {self.health_url} answers 200",
                    lambda c: c.health_status(),
                    accept=lambda status: status == 200,
                    timeout=timeout,
                )
            )
        return [
            *steps,
            self.ready_when(
                f"{self.gateway.ready.rpc} answers through the gateway ({self.rpc_url})",
                lambda c: c.block_number(),
                accept=lambda number: number is not None,
                timeout=timeout,
            ),
        ]

    def readiness_steps(self) -> list[WaitStrategy]:
        return list(self._steps())

    def wait_ready(self, timeout: float | None = None) -> int:
        """Wait until the health endpoint answers and eth_blockNumber succeeds; returns the number."""
        steps = self._steps(timeout)
        for step in steps:
            step.wait_until_ready(self)
        return int(steps[-1].value)

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        try:
            super().stop(force=force, delete_volume=delete_volume)
        finally:
            if self.config_dir is not None:
                shutil.rmtree(self.config_dir, ignore_errors=True)


_JSON = {"Content-Type": "application/json"}


class LocustContainer(LabContainer):
    """Locust with the lab's locustfiles (the `lab-locust` image; its arguments are Locust's), aimed at
    `target` (a URL on the lab network, e.g. http://gateway:4000). Ready once Locust has started."""

    def __init__(self, image: str, *, target: str, args: list[str] | None = None, **options: Any) -> None:
        super().__init__(image, command=["--host", target, *(args or [])], **options)

    def readiness_steps(self) -> list[WaitStrategy]:
        strategy = LogMessageWaitStrategy(r"Starting Locust")
        strategy.with_startup_timeout(math.ceil(self.startup_timeout))
        return [strategy]

    def exit_code(self, timeout: float) -> int:
        """Wait for Locust to end (a headless run with a run time); its exit code (1: requests failed)."""
        return int(self.get_wrapped_container().wait(timeout=timeout)["StatusCode"])
