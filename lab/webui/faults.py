"""The fault API behind the web UI's Faults tab: the lab's own `FaultInjector` applying the actions of
`lab.faults.actions`, validated as a scenario's are, each fault recorded in the run's `faults.jsonl`
(by the journal, with `source: "webui"`). Called server-side (Toxiproxy refuses browsers with 403).

Configured by environment variables, so the same code serves `lab run` and the compose lab's Locust
container (which reaches Toxiproxy and the providers by their network aliases):

    LAB_TOXIPROXY_URL  Toxiproxy's API, e.g. http://toxiproxy:8474
    LAB_PROVIDERS      "id=http_proxy,ws_proxy,control_url;..." or a JSON list of
                       {"id", "proxies": {"http", "ws"}, "control_url", "container"}
    LAB_CONTROL_URL    the compose lab's control service (lab.control), e.g. http://control:8000: enables
                       kill/pause/restart, ... on the containers of this compose project only
    LAB_CONTAINERS     "id=service;gateway=service": the compose service of each target
    LAB_GATEWAY_URL    the gateway's admin API (enables breaker_open), e.g. http://gateway:8545
    LAB_CHAIN          the chain whose breakers are opened (default ethereum)
    LAB_RUN_DIR        where faults.jsonl goes (unset: not recorded)

This process never talks to Docker: container faults go through the control service, which holds the
Docker socket and acts only on its own compose project's containers.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from lab.control import containers_from_env, services_from_env
from lab.faults.actions import ACTIONS, Action, ContainerAction, describe_actions, parse_action
from lab.faults.control import ControlClient
from lab.faults.injector import FaultInjector, UnknownTarget
from lab.faults.journal import Fault, FaultEvent, FaultJournal
from lab.faults.toxiproxy import ToxiproxyClient

SOURCE = "webui"


class FaultRequestError(ValueError):
    """A request the fault API cannot honour (unknown provider, bad fields); HTTP 400."""


@dataclass(frozen=True)
class ProviderConfig:
    id: str
    proxies: dict[str, str] = field(default_factory=dict)  # transport -> Toxiproxy proxy name
    control_url: str | None = None
    container: str | None = None


def providers_from_env(env: Mapping[str, str] = os.environ) -> list[ProviderConfig]:
    raw = env.get("LAB_PROVIDERS", "").strip()
    containers = services_from_env(env)
    if raw.startswith("["):
        entries = orjson.loads(raw)
        return [
            ProviderConfig(
                id=e["id"],
                proxies=dict(e.get("proxies") or {}),
                control_url=e.get("control_url"),
                container=e.get("container") or containers.get(e["id"]),
            )
            for e in entries
        ]
    providers = []
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        pid, _, rest = item.partition("=")
        http, ws, control = ([*rest.split(","), "", "", ""])[:3]
        proxies = {t: name for t, name in (("http", http), ("ws", ws)) if name}
        providers.append(ProviderConfig(pid, proxies, control or None, containers.get(pid)))
    return providers


class FaultAPI:
    """Applies and lifts faults by hand; thread-safe (the web server may serve requests concurrently)."""

    def __init__(
        self,
        *,
        injector: FaultInjector,
        providers: list[ProviderConfig],
        toxiproxy_url: str | None,
        record: Callable[[FaultEvent], None] | None = None,
    ) -> None:
        self.injector = injector
        self.providers = {p.id: p for p in providers}
        self.toxiproxy_url = toxiproxy_url
        self.record = record or (lambda event: None)
        self.history: list[FaultEvent] = []
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        injector.journal.subscribe(self._recorded)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, run_dir: Path | None = None) -> FaultAPI:
        record = None
        run_dir = run_dir or (Path(env["LAB_RUN_DIR"]) if env.get("LAB_RUN_DIR") else None)
        if run_dir is not None:
            from lab.record import EventLog

            record = EventLog(run_dir, "faults").append
        providers = providers_from_env(env)
        url = env.get("LAB_TOXIPROXY_URL") or None
        containers = containers_from_env(
            env, services={p.id: p.container for p in providers if p.container} | services_from_env(env)
        )
        injector = FaultInjector(
            toxiproxy=ToxiproxyClient.from_url(url or "127.0.0.1:8474", timeout=5.0),
            proxies={p.id: p.proxies for p in providers if p.proxies and url},
            containers=containers,
            control=ControlClient(),
            control_urls={
                p.id: p.control_url.rstrip("/").removesuffix("/_lab") for p in providers if p.control_url
            },
            gateway_url=(env.get("LAB_GATEWAY_URL") or "").rstrip("/"),
            chain=env.get("LAB_CHAIN") or "ethereum",
            memory_total=containers.memory_total,
            journal=FaultJournal(id_prefix="webui-", source=SOURCE),
        )
        return cls(injector=injector, providers=providers, toxiproxy_url=url, record=record)

    def _recorded(self, event: FaultEvent) -> None:
        self.history.append(event)
        self.record(event)

    # --- what the page shows -------------------------------------------------------------------------
    def actions(self) -> list[dict[str, Any]]:
        """The actions a person can apply (from the registry), with their fields' JSON Schema."""
        return describe_actions()

    def state(self) -> dict[str, Any]:
        now = time.time()
        containers = set(self.injector.containers)
        return {
            "providers": [
                {
                    "id": p.id,
                    "proxies": p.proxies,
                    "control": bool(p.control_url),
                    "container": p.id in containers,
                }
                for p in self.providers.values()
            ],
            "gateway_container": "gateway" in containers,
            "toxiproxy": self.toxiproxy_url is not None,
            "active": [_active(f, now) for f in self.injector.journal.active()],
            "history": list(self.history[-50:]),
        }

    # --- applying --------------------------------------------------------------------------------------
    def apply(self, target: str, action: str, params: Mapping[str, Any]) -> str:
        """Apply one fault; returns its id. FaultRequestError for a request that makes no sense."""
        parsed = self._parse({**params, "type": action})
        kind = "gateway" if target == "gateway" else "provider"
        if kind not in parsed.targets:
            where = "providers, not the gateway" if kind == "gateway" else "the gateway only"
            raise FaultRequestError(f"{parsed.type} applies to {where}")
        if isinstance(parsed, ContainerAction) and target not in self.injector.containers:
            raise FaultRequestError(
                f"no container known for {target!r} (LAB_CONTAINERS and LAB_CONTROL_URL, the control service)"
            )
        with self._lock:
            name = f"{SOURCE}-{next(self._names)}"
        try:
            fault = self.injector.apply(parsed, target, name=name)
        except UnknownTarget as exc:
            hint = "" if self.toxiproxy_url else " (no Toxiproxy configured: LAB_TOXIPROXY_URL)"
            raise FaultRequestError(f"{exc}{hint}") from None
        return fault.fault_id

    def _parse(self, data: dict[str, Any]) -> Action:
        """The action, or FaultRequestError worded as the scenario loader words a scenario's."""
        from lab.scenario.loader import describe_errors

        if data["type"] not in ACTIONS or ACTIONS[data["type"]].schedule:
            known = ", ".join(a["type"] for a in describe_actions())
            raise FaultRequestError(f"unknown action {data['type']!r}; expected one of: {known}")
        try:
            return parse_action(data)
        except ValidationError as exc:
            problems = describe_errors(exc, yaml.compose(orjson.dumps(data).decode(), Loader=yaml.SafeLoader))
            raise FaultRequestError(
                "; ".join(
                    f"action.{p.path}: {p.message}" if p.path else f"action: {p.message}" for p in problems
                )
            ) from None

    def lift(self, fault_id: str) -> None:
        fault = next((f for f in self.injector.journal.active() if f.fault_id == fault_id), None)
        if fault is None:
            raise FaultRequestError(f"no active fault {fault_id!r}")
        fault.lift()  # a lift that fails raises and leaves the fault active, to be lifted again

    def lift_all(self) -> list[str]:
        return self.injector.lift_all()


def _active(fault: Fault, now: float) -> dict[str, Any]:
    return {
        "fault_id": fault.fault_id,
        "action": fault.action,
        "target": fault.target,
        "params": fault.params,
        "since_s": round(now - fault.started_at, 1),
    }
