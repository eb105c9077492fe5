"""Process and network faults on the lab's containers, through the Docker SDK.

Each function applies one fault and returns its inverse (a callable that undoes it). Mapped host ports
must have been read before (Testcontainers' `get_exposed_port` raises on a paused or exited container);
the lab publishes fixed host ports, so they are the same after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Inverse = Callable[[], None]


@dataclass
class ContainerTarget:
    """A container of the lab as a fault target: the Docker SDK objects and its network aliases."""

    name: str
    container: Any  # docker.models.containers.Container
    network: Any  # docker.models.networks.Network
    aliases: list[str] = field(default_factory=list)

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)


def start(target: ContainerTarget) -> None:
    """Start a stopped or killed container (a no-op when it runs; unpauses a paused one)."""
    status = target.status()
    if status == "paused":
        target.container.unpause()
    elif status != "running":
        target.container.start()


def kill(target: ContainerTarget, signal: str = "SIGKILL") -> Inverse:
    target.container.kill(signal=signal)
    return lambda: start(target)


def stop(target: ContainerTarget, timeout: int = 10) -> Inverse:
    """A graceful stop: SIGTERM, then SIGKILL after `timeout` seconds (the container is kept)."""
    target.container.stop(timeout=timeout)
    return lambda: start(target)


def pause(target: ContainerTarget) -> Inverse:
    """Freeze every process (cgroup freezer): connections stay open and nothing answers."""
    target.container.pause()
    return target.container.unpause


def restart(target: ContainerTarget, timeout: int = 10, *, clock: Callable[[], float] = time.time) -> float:
    """Stop, then start the container (what `docker restart` does); when it was stopped (by `clock`)."""
    target.container.stop(timeout=timeout)
    stopped = clock()
    target.container.start()
    return stopped


def disconnect(target: ContainerTarget) -> Inverse:
    """Take the container off the lab network; the inverse reconnects it under the same aliases."""
    target.network.disconnect(target.container)
    return lambda: target.network.connect(target.container, aliases=list(target.aliases))


def squeeze_memory(target: ContainerTarget, limit: int | str, *, unlimited: int) -> Inverse:
    """Lower the memory limit (and memory+swap to the same value: no swap escape) while it runs.

    Docker's update drops zero values and refuses to remove a limit, so the inverse restores the
    earlier limit, or `unlimited` bytes (the machine's memory) when there was none. It raises memory
    and memory+swap together first (cgroup v1 wants memory <= memory+swap at every step), then puts
    memory+swap back to unlimited (-1) if it was.
    """
    from docker.utils import parse_bytes  # the Docker SDK only when a fault needs it

    target.container.reload()
    host_config = target.container.attrs.get("HostConfig", {})
    before_memory = int(host_config.get("Memory") or 0)
    before_swap = int(host_config.get("MemorySwap") or 0)
    limit_bytes = int(parse_bytes(limit))
    target.container.update(mem_limit=limit_bytes, memswap_limit=limit_bytes)

    def release() -> None:
        memory = before_memory or unlimited
        swap = before_swap if before_swap > 0 else 2 * memory
        target.container.update(mem_limit=memory, memswap_limit=swap)
        if before_swap <= 0:
            target.container.update(memswap_limit=-1)

    return release
