"""Every port of a lab, decided before any container starts: the Toxiproxy listener of each provider and
transport inside the network, and the host ports published on 127.0.0.1. Allocated up front, they stay
the same when a container is restarted by a fault (another process taking one of them in the moment
between allocation and container start fails the start-up)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from lab.topology.specs import PROVIDER_PORT, TOXIPROXY_ALIAS, TopologySpec

LOOPBACK = "127.0.0.1"
TRANSPORTS = ("http", "ws")


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
