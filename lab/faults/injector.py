"""The fault API of a running lab: `apply` does any action of `lab.faults.actions`; the primitives the
actions are made of (a toxic, a cut, a kill, a behaviour switch, ...) are methods too. Each returns a
recorded, liftable `Fault`.

Targets are names: a provider id (`"p1"`), or for toxics also a proxy name (`"p1_http"`); process
faults also take `"gateway"` and `"toxiproxy"`. A provider has one Toxiproxy proxy per transport, and
toxic faults apply to `transport="both"` unless told otherwise.

    fault = lab.faults.apply(LatencyAction(latency="200ms", jitter="20ms"), "p1")
    fault = lab.faults.apply({"type": "latency", "latency": "200ms"}, "p1")   # the same, as in a scenario
    with lab.faults.cut("p2"):                                                # p2 unreachable in the block
        ...
    fault.lift()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lab.faults import process
from lab.faults.actions import Action, Transport, parse_action
from lab.faults.control import ControlClient
from lab.faults.journal import Fault, FaultJournal
from lab.faults.process import ContainerTarget
from lab.faults.toxics import Toxic
from lab.faults.toxiproxy import ToxiproxyClient

__all__ = ["FaultInjector", "Transport", "UnknownTarget"]


class UnknownTarget(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class FaultInjector:
    """Binds the fault primitives to one lab's Toxiproxy, containers and control endpoints."""

    def __init__(
        self,
        *,
        toxiproxy: ToxiproxyClient,
        proxies: Mapping[str, Mapping[str, str]],
        containers: Mapping[str, ContainerTarget],
        control: ControlClient,
        control_urls: Mapping[str, str],
        gateway_url: str,
        chain: str,
        memory_total: Callable[[], int],
        journal: FaultJournal | None = None,
    ) -> None:
        self.toxiproxy = toxiproxy
        self.control = control
        self.journal = journal or FaultJournal()
        self._proxies = proxies  # provider id -> {"http": proxy name, "ws": proxy name}
        self._containers = containers
        self._control_urls = control_urls
        self._gateway_url = gateway_url
        self._chain = chain
        self._memory_total = memory_total

    @property
    def containers(self) -> Mapping[str, ContainerTarget]:
        """The lab's containers by target name (a provider id, `gateway`, `toxiproxy`)."""
        return self._containers

    # --- targets -----------------------------------------------------------------------------------
    def proxy_names(self, target: str, transport: Transport = "both") -> list[str]:
        if target in self._proxies:
            by_transport = self._proxies[target]
            names = list(by_transport.values()) if transport == "both" else [by_transport.get(transport, "")]
            if not names or not all(names):
                raise UnknownTarget(f"{target} has no {transport} proxy")
            return names
        if any(target in names.values() for names in self._proxies.values()):
            return [target]
        raise UnknownTarget(f"no provider or proxy named {target!r} (providers: {sorted(self._proxies)})")

    def _container(self, target: str) -> ContainerTarget:
        try:
            return self._containers[target]
        except KeyError:
            raise UnknownTarget(
                f"no container named {target!r} (known: {sorted(self._containers)})"
            ) from None

    def _control_url(self, provider: str) -> str:
        try:
            return self._control_urls[provider]
        except KeyError:
            raise UnknownTarget(
                f"no provider {provider!r} (providers: {sorted(self._control_urls)})"
            ) from None

    # --- actions -----------------------------------------------------------------------------------
    def apply(self, action: Action | Mapping[str, Any], target: str, *, name: str | None = None) -> Fault:
        """Do an action (or its mapping, validated as a scenario's) to `target`; `name` labels the fault
        (and names its toxic, so two toxics of one type can coexist)."""
        return parse_action(action).apply(self, target, name=name)

    # --- toxics ------------------------------------------------------------------------------------
    def toxic(
        self, target: str, toxic: Toxic, *, transport: Transport = "both", name: str | None = None
    ) -> Fault:
        """Add any toxic to the target's proxies; lifting removes it."""
        proxies = self.proxy_names(target, transport)
        issued = self.journal.now()
        added: list[str] = []
        try:
            for proxy in proxies:
                self.toxiproxy.add_toxic(proxy, toxic)
                added.append(proxy)
        except Exception:
            for proxy in added:  # all or nothing
                self.toxiproxy.remove_toxic(proxy, toxic.toxic_name)
            raise

        def remove() -> None:
            for proxy in proxies:
                self.toxiproxy.remove_toxic(proxy, toxic.toxic_name)

        params = {**toxic.params(), "toxic": toxic.toxic_name, "proxies": proxies}
        return self.journal.record(toxic.type, target, params, remove, name=name, issued_at=issued)

    def update_toxic(self, fault: Fault, **changes: Any) -> Fault:
        """Change a toxic fault's attributes or toxicity in place: the old fault ends, a new one starts."""
        if not fault.active:
            raise ValueError(f"fault {fault.fault_id} has been lifted")
        toxic = _toxic_of(fault)
        issued = self.journal.now()
        updated = Toxic.model_validate({**toxic.params(), **changes, "name": toxic.toxic_name})
        for proxy in fault.params["proxies"]:
            self.toxiproxy.update_toxic(proxy, updated)
        inverse, fault._inverse = fault._inverse, None  # the toxic stays: the new fault removes it
        fault.lift()
        params = {**updated.params(), "toxic": updated.toxic_name, "proxies": fault.params["proxies"]}
        return self.journal.record(
            updated.type, fault.target, params, inverse, name=fault.name, issued_at=issued
        )

    # --- whole proxies -----------------------------------------------------------------------------
    def cut(self, target: str, *, transport: Transport = "both", name: str | None = None) -> Fault:
        """Disable the target's proxies: listeners closed, open connections dropped (a hard outage)."""
        proxies = self.proxy_names(target, transport)
        issued = self.journal.now()
        for proxy in proxies:
            self.toxiproxy.set_enabled(proxy, False)

        def restore() -> None:
            for proxy in proxies:
                self.toxiproxy.set_enabled(proxy, True)

        return self.journal.record("cut", target, {"proxies": proxies}, restore, name=name, issued_at=issued)

    # --- processes ---------------------------------------------------------------------------------
    def kill(self, target: str, *, signal: str = "SIGKILL", name: str | None = None) -> Fault:
        """Kill the container's main process; lifting starts the container again."""
        container, issued = self._container(target), self.journal.now()
        inverse = process.kill(container, signal)
        return self.journal.record("kill", target, {"signal": signal}, inverse, name=name, issued_at=issued)

    def stop(self, target: str, *, timeout_s: int = 10, name: str | None = None) -> Fault:
        container, issued = self._container(target), self.journal.now()
        inverse = process.stop(container, timeout_s)
        params = {"timeout_s": timeout_s}
        return self.journal.record("stop", target, params, inverse, name=name, issued_at=issued)

    def pause(self, target: str, *, name: str | None = None) -> Fault:
        container, issued = self._container(target), self.journal.now()
        inverse = process.pause(container)
        return self.journal.record("pause", target, {}, inverse, name=name, issued_at=issued)

    def restart(self, target: str, *, timeout_s: int = 10, name: str | None = None) -> Fault:
        """Restart the container (an instant fault: it has ended when this returns). Recorded as stop
        then start: issued before the stop, in effect once stopped, its end issued at the start and in
        effect once the container runs again — its impact falls inside its window."""
        container, issued = self._container(target), self.journal.now()
        stopped = process.restart(container, timeout_s, clock=self.journal.now)
        return self.journal.record(
            "restart", target, {"timeout_s": timeout_s}, None, name=name, instant=True,
            issued_at=issued, effective_at=stopped, lift_issued_at=stopped,
        )  # fmt: skip

    def disconnect(self, target: str, *, name: str | None = None) -> Fault:
        container, issued = self._container(target), self.journal.now()
        inverse = process.disconnect(container)
        return self.journal.record("disconnect", target, {}, inverse, name=name, issued_at=issued)

    def squeeze_memory(self, target: str, limit: int | str, *, name: str | None = None) -> Fault:
        """Lower the container's memory limit (e.g. "64m"); lifting restores the earlier limit."""
        container, issued = self._container(target), self.journal.now()
        inverse = process.squeeze_memory(container, limit, unlimited=self._memory_total())
        params = {"limit": limit}
        return self.journal.record("squeeze_memory", target, params, inverse, name=name, issued_at=issued)

    # --- behaviour and breakers --------------------------------------------------------------------
    def behavior(self, provider: str, behavior: dict[str, Any], *, name: str | None = None) -> Fault:
        """Switch a mock provider's behaviour (e.g. `{"type": "always_fail"}`); lifting restores it."""
        url = self._control_url(provider)
        before = self.control.get_behavior(url)
        issued = self.journal.now()
        self.control.set_behavior(url, behavior)
        return self.journal.record(
            "behavior",
            provider,
            {"behavior": behavior, "before": before},
            lambda: self.control.set_behavior(url, before),
            name=name,
            issued_at=issued,
        )

    def open_breaker(self, provider: str, *, name: str | None = None) -> Fault:
        """Force the gateway's circuit breaker for the provider open; lifting resets it."""
        self._control_url(provider)  # an unknown provider is an error here, not a 4xx from the gateway
        if not self._gateway_url:
            raise UnknownTarget("no gateway admin URL known to open its breakers")
        issued = self.journal.now()
        self.control.open_breaker(self._gateway_url, self._chain, provider)
        return self.journal.record(
            "open_breaker",
            provider,
            {"chain": self._chain},
            lambda: self.control.reset_breaker(self._gateway_url, self._chain, provider),
            name=name,
            issued_at=issued,
        )

    def lift_all(self) -> list[str]:
        return self.journal.lift_all()


def _toxic_of(fault: Fault) -> Toxic:
    if "toxic" not in fault.params or "proxies" not in fault.params:
        raise ValueError(f"fault {fault.fault_id} ({fault.action}) is not a toxic")
    recorded = {k: v for k, v in fault.params.items() if k not in ("toxic", "proxies")}
    return Toxic.model_validate({**recorded, "name": fault.params["toxic"]})
