"""The lab's containers as fault targets, through the compose lab's control service (lab.control.service).

`containers_from_env` gives the fault engine (`FaultInjector(containers=...)`) a mapping of targets to
`ContainerTarget`s whose container and network are proxies with the Docker SDK methods the fault
primitives of `lab.faults.process` call; each call is one HTTP request to the service. Nothing here
touches Docker: the Locust master no longer holds the Docker socket.

    LAB_CONTROL_URL  the control service, e.g. http://control:8000 (unset: no container faults)
    LAB_CONTAINERS   "target=service;...": a provider id (or `gateway`) -> its compose service
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from lab.faults.process import ContainerTarget


class ControlServiceError(RuntimeError):
    """The control service refused an action or could not be reached (its message says which)."""


def services_from_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """LAB_CONTAINERS: target (a provider id or `gateway`) -> compose service."""
    pairs = (item.split("=", 1) for item in env.get("LAB_CONTAINERS", "").split(";") if "=" in item)
    return {target.strip(): name.strip() for target, name in pairs if target.strip() and name.strip()}


class ControlServiceClient:
    """Blocking JSON calls to the control service, each with a timeout."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never through an environment proxy

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, wait: float = 0.0
    ) -> dict[str, Any]:
        """`wait`: seconds the action itself may take (a stop's grace period), added to the timeout."""
        url = f"{self.url}{path}"
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout + wait)
        except requests.RequestException as exc:
            raise ControlServiceError(f"control service at {self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text.strip()[:300]}
        if response.status_code != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise ControlServiceError(f"control service: {error} (HTTP {response.status_code})")
        return answer

    def describe(self, service: str) -> dict[str, Any]:
        return self.request("GET", f"/services/{quote(service, safe='')}")

    def act(self, service: str, action: str, **params: Any) -> dict[str, Any]:
        wait = float(params.get("timeout") or 0)
        return self.request("POST", f"/services/{quote(service, safe='')}/{action}", params, wait=wait)

    def memory_total(self) -> int:
        return int(self.request("GET", "/host")["mem_total"])


class RemoteContainer:
    """A compose service's container, with the Docker SDK container's methods the fault primitives use."""

    def __init__(self, control: ControlServiceClient, service: str, info: Mapping[str, Any]) -> None:
        self.control = control
        self.service = service
        self._set(info)

    def _set(self, info: Mapping[str, Any]) -> None:
        self.id = str(info.get("id", ""))
        self.name = str(info.get("name", self.service))
        self.status = str(info.get("status", "unknown"))
        # the part of `docker inspect` squeeze_memory reads
        self.attrs = {
            "HostConfig": {"Memory": info.get("memory", 0), "MemorySwap": info.get("memory_swap", 0)}
        }

    def reload(self) -> None:
        self._set(self.control.describe(self.service))

    def _act(self, action: str, **params: Any) -> None:
        self.status = str(self.control.act(self.service, action, **params).get("status", self.status))

    def kill(self, signal: str | int = "SIGKILL") -> None:
        self._act("kill", signal=str(signal))

    def stop(self, timeout: int = 10) -> None:
        self._act("stop", timeout=timeout)

    def start(self) -> None:
        self._act("start")

    def pause(self) -> None:
        self._act("pause")

    def unpause(self) -> None:
        self._act("unpause")

    def restart(self, timeout: int = 10) -> None:
        self._act("restart", timeout=timeout)

    def update(self, *, mem_limit: int | None = None, memswap_limit: int | None = None) -> None:
        limits = {"mem_limit": mem_limit, "memswap_limit": memswap_limit}
        self._act("update", **{key: value for key, value in limits.items() if value is not None})

    def __repr__(self) -> str:
        return f"RemoteContainer({self.service!r}, {self.name!r}, {self.status!r})"


class RemoteNetwork:
    """The compose network a container was on, with the Docker SDK network's connect/disconnect."""

    def __init__(self, name: str) -> None:
        self.name = name

    def disconnect(self, container: RemoteContainer) -> None:
        container._act("disconnect", network=self.name)

    def connect(self, container: RemoteContainer, aliases: list[str] | None = None) -> None:
        container._act("connect", network=self.name, aliases=list(aliases or []))

    def __repr__(self) -> str:
        return f"RemoteNetwork({self.name!r})"


class RemoteContainers(Mapping[str, ContainerTarget]):
    """Target -> its compose service's container, asked of the control service when a fault needs it."""

    def __init__(self, services: Mapping[str, str], control: ControlServiceClient | None) -> None:
        self.services = dict(services) if control is not None else {}
        self.control = control

    def __getitem__(self, target: str) -> ContainerTarget:
        service = self.services[target]  # KeyError: not a target with a container
        assert self.control is not None  # no targets without a control service
        info = self.control.describe(service)
        container = RemoteContainer(self.control, service, info)
        network = RemoteNetwork(info["network"]) if info.get("network") else None
        return ContainerTarget(target, container, network, list(info.get("aliases") or []))

    def __contains__(self, target: object) -> bool:  # without a request (Mapping's default would ask)
        return target in self.services

    def __iter__(self) -> Iterator[str]:
        return iter(self.services)

    def __len__(self) -> int:
        return len(self.services)

    def memory_total(self) -> int:
        if self.control is None:
            raise ControlServiceError("no control service (LAB_CONTROL_URL)")
        return self.control.memory_total()


def containers_from_env(
    env: Mapping[str, str] = os.environ, *, services: Mapping[str, str] | None = None
) -> RemoteContainers:
    """The lab's containers by target, through the control service at LAB_CONTROL_URL; `services`
    (target -> compose service) defaults to LAB_CONTAINERS. Empty without LAB_CONTROL_URL."""
    url = (env.get("LAB_CONTROL_URL") or "").strip()
    control = ControlServiceClient(url) if url else None
    return RemoteContainers(services_from_env(env) if services is None else services, control)
