"""A fake Docker SDK client (the parts the control service uses) and the control service run on it in a
thread, for the unit tests of lab.control and of the Faults tab."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from lab import serving
from lab.control.service import ControlService, make_app


def compose_labels(project: str, service: str, **more: str) -> dict[str, str]:
    return {"com.docker.compose.project": project, "com.docker.compose.service": service, **more}


class FakeContainer:
    """Remembers what was done to it, as (action, arguments)."""

    def __init__(self, name: str, labels: dict[str, str], network: str | None = None) -> None:
        self.id = f"id-{name}"
        self.name, self.labels, self.status = name, labels, "running"
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.memory = 0
        self.networks = (
            {network: [labels.get("com.docker.compose.service", name), self.id[:12]]} if network else {}
        )

    @property
    def attrs(self) -> dict[str, Any]:
        return {
            "HostConfig": {"Memory": self.memory, "MemorySwap": 0},
            "NetworkSettings": {"Networks": {name: {"Aliases": a} for name, a in self.networks.items()}},
        }

    def reload(self) -> None:
        pass

    def _did(self, action: str, status: str | None = None, **params: Any) -> None:
        from docker.errors import APIError

        if action in ("pause", "kill") and self.status != "running":
            raise APIError(f"Container {self.id} is not running")
        self.actions.append((action, params))
        self.status = status or self.status

    def kill(self, signal: str = "SIGKILL") -> None:
        self._did("kill", "exited", signal=signal)

    def stop(self, timeout: int = 10) -> None:
        self._did("stop", "exited", timeout=timeout)

    def start(self) -> None:
        self._did("start", "running")

    def pause(self) -> None:
        self._did("pause", "paused")

    def unpause(self) -> None:
        self._did("unpause", "running")

    def restart(self, timeout: int = 10) -> None:
        self._did("restart", "running", timeout=timeout)

    def update(self, **limits: int) -> None:
        self.memory = limits.get("mem_limit", self.memory)
        self._did("update", **limits)

    def remove(self, **kwargs: Any) -> None:  # must never be reachable through the service
        self._did("remove", "removed", **kwargs)


class FakeNetwork:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name = name
        self.attrs = {"Labels": labels}

    def disconnect(self, container: FakeContainer) -> None:
        container._did("disconnect", network=self.name)
        container.networks.pop(self.name, None)

    def connect(self, container: FakeContainer, aliases: list[str] | None = None) -> None:
        container._did("connect", network=self.name, aliases=aliases)
        container.networks[self.name] = list(aliases or [])


class FakeDocker:
    """containers.get/list (by label filter, as Docker matches labels) and networks.get, info."""

    def __init__(self, containers: list[FakeContainer], networks: list[FakeNetwork] | None = None) -> None:
        self.all = containers
        self.by_name = {n.name: n for n in networks or []}
        self.containers = _Containers(self)
        self.networks = _Networks(self)

    def info(self) -> dict[str, Any]:
        return {"MemTotal": 8 * 1024**3}


class _Containers:
    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker

    def get(self, name: str) -> FakeContainer:
        from docker.errors import NotFound

        for container in self.docker.all:
            if name in (container.name, container.id, container.id[:12]):
                return container
        raise NotFound(f"No such container: {name}")

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[FakeContainer]:
        wanted = dict(label.split("=", 1) for label in (filters or {}).get("label", []))
        return [
            c
            for c in self.docker.all
            if (all or c.status == "running") and wanted.items() <= c.labels.items()
        ]


class _Networks:
    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker

    def get(self, name: str) -> FakeNetwork:
        from docker.errors import NotFound

        if name not in self.docker.by_name:
            raise NotFound(f"network {name} not found")
        return self.docker.by_name[name]


@contextlib.contextmanager
def serve_control(service: ControlService) -> Iterator[str]:
    """The control service's HTTP API on a free loopback port, in a thread; yields its URL."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        runner, port = await serving.listen(make_app(service), "127.0.0.1", 0)
        state["port"], state["stop"], state["loop"] = port, asyncio.Event(), asyncio.get_running_loop()
        started.set()
        try:
            await state["stop"].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the control service did not start"
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
