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
    LAB_RUN_DIR        where faults.jsonl goes (unset: not recorded); in Locust's web UI, the inbox the
                       sessions' records are filed from (lab.webui.session: each swarm start → stop a run)
    LAB_SCENARIOS_DIR  the scenarios the tab can play (lab.webui.play; default: a checkout's toxics/)

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
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from pydantic import ValidationError

from lab.control import containers_from_env, services_from_env
from lab.faults.actions import ACTIONS, Action, ContainerAction, describe_actions, parse_action
from lab.faults.control import ControlClient
from lab.faults.injector import FaultInjector, UnknownTarget
from lab.faults.journal import Fault, FaultEvent, FaultJournal, fault_event
from lab.faults.toxiproxy import ToxiproxyClient

if TYPE_CHECKING:
    from lab.webui.play import Player
    from lab.webui.session import Sessions

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
        self.sessions: Sessions | None = None  # set: faults only while a session (a swarm) runs
        self.player: Player | None = None  # plays a scenario's timeline beside the swarm
        self.history: list[FaultEvent] = []
        self._names = itertools.count(1)
        self._failures = itertools.count(1)
        self._lock = threading.Lock()
        self._end_reason: str | None = None  # while lifting at a session's stop: why the faults ended
        self._proxies_seen: tuple[float, dict[str, Any]] = (0.0, {})
        injector.journal.subscribe(self._recorded)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] = os.environ,
        *,
        run_dir: Path | None = None,
        sessions: Sessions | None = None,
    ) -> FaultAPI:
        """The API from the environment; with `sessions`, faults are recorded in the running session's
        run directory (and refused while none runs), else in `run_dir` (LAB_RUN_DIR)."""
        record: Callable[[FaultEvent], None] | None = sessions.record if sessions is not None else None
        run_dir = run_dir or (Path(env["LAB_RUN_DIR"]) if env.get("LAB_RUN_DIR") else None)
        if run_dir is not None and sessions is None:
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
        api = cls(injector=injector, providers=providers, toxiproxy_url=url, record=record)
        api.sessions = sessions
        return api

    def _recorded(self, event: FaultEvent) -> None:
        if event.get("event") == "end" and self._end_reason and not event.get("reason"):
            event = {**event, "reason": self._end_reason}
        self.history.append(event)
        self.record(event)

    # --- what the page shows -------------------------------------------------------------------------
    def actions(self) -> list[dict[str, Any]]:
        """The actions a person can apply (from the registry), with their fields' JSON Schema."""
        return describe_actions()

    def state(self) -> dict[str, Any]:
        now = time.time()
        active = self.active_faults()
        manual = {f.fault_id for f in self.injector.journal.active()}
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
            "active": [_active(f, now, played=f.fault_id not in manual) for f in active],
            "cards": self.cards(active),
            "history": list(self.history[-50:]),
            "session": self.session_state(),
            "playing": self.player.state() if self.player is not None else None,
            "scenarios": self.player is not None and self.player.directory is not None,
        }

    def session_state(self) -> dict[str, Any] | None:
        if self.sessions is None:
            return None
        session = self.sessions.current or self.sessions.latest
        if session is None:
            return {"running": False, "run_id": None}
        return {"running": session.running, "run_id": session.run_id, "started": session.manifest["started"]}

    def cards(self, active: list[Fault]) -> dict[str, dict[str, Any]]:
        """Each target's state: its toxics, cut, killed, paused (the faults active on it), and what
        Toxiproxy itself holds for its proxies (the truth, should the two ever differ)."""
        proxies = self._toxiproxy_proxies()
        cards: dict[str, dict[str, Any]] = {}
        for target in [*self.providers, "gateway"]:
            mine = [f for f in active if f.target == target]
            provider = self.providers.get(target)
            held = {
                name: proxies[name]
                for name in (provider.proxies.values() if provider else ())
                if name in proxies
            }
            cards[target] = {
                "toxics": [_describe(f) for f in mine if "toxic" in f.params],
                "cut": any(f.action == "cut" for f in mine) or any(not p["enabled"] for p in held.values()),
                "killed": any(f.action == "kill" for f in mine),
                "paused": any(f.action == "pause" for f in mine),
                "stopped": any(f.action == "stop" for f in mine),
                "other": [
                    _describe(f)
                    for f in mine
                    if f.action not in ("cut", "kill", "pause", "stop") and "toxic" not in f.params
                ],
                "proxies": held,
                # toxics Toxiproxy holds that no active fault of this lab put there (e.g. a dead master's)
                "foreign_toxics": sorted(
                    f"{name} ({kind})"
                    for proxy in held.values()
                    for name, kind in proxy["toxics"].items()
                    if name not in {f.params.get("toxic") for f in mine}
                ),
            }
        return cards

    def _toxiproxy_proxies(self) -> dict[str, Any]:
        """Toxiproxy's proxies (enabled, toxics by name and type), asked at most once a second; empty
        when Toxiproxy does not answer (the cards then show what the lab knows)."""
        if self.toxiproxy_url is None:
            return {}
        seen, proxies = self._proxies_seen
        if time.monotonic() - seen < 1.0:
            return proxies
        try:
            proxies = {
                name: {
                    "enabled": p.enabled,
                    "toxics": {str(t.get("name")): str(t.get("type")) for t in p.toxics},
                }
                for name, p in self.injector.toxiproxy.proxies().items()
            }
        except Exception:
            proxies = {}
        self._proxies_seen = (time.monotonic(), proxies)
        return proxies

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
        if self.sessions is not None and self.sessions.current is None:
            raise FaultRequestError(
                "no session: start a swarm first (a session, from start to stop, is a run: its faults are "
                "recorded with its requests)"
            )
        with self._lock:
            name = f"{SOURCE}-{next(self._names)}"
        attempted = time.time()
        try:
            fault = self.injector.apply(parsed, target, name=name)
        except UnknownTarget as exc:
            hint = "" if self.toxiproxy_url else " (no Toxiproxy configured: LAB_TOXIPROXY_URL)"
            raise FaultRequestError(f"{exc}{hint}") from None
        except Exception as exc:  # attempted and failed: recorded as failed, then told to the page
            with self._lock:
                failure_id = f"{SOURCE}-failed-{next(self._failures)}"
            self._recorded(
                fault_event(
                    "failed",
                    fault_id=failure_id,
                    name=name,
                    action=parsed.type,
                    target=target,
                    ts=attempted,
                    params=parsed.params(),
                    source=SOURCE,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            raise
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

    def active_faults(self) -> list[Fault]:
        """The faults applied by hand and by a played scenario, still active."""
        played = self.player.active() if self.player is not None else []
        return [*self.injector.journal.active(), *played]

    def lift(self, fault_id: str) -> None:
        fault = next((f for f in self.injector.journal.active() if f.fault_id == fault_id), None)
        if fault is None and self.player is not None and fault_id in {f.name for f in self.player.active()}:
            raise FaultRequestError(f"{fault_id} belongs to a played scenario: stop the play to lift it")
        if fault is None:
            raise FaultRequestError(f"no active fault {fault_id!r}")
        fault.lift()  # a lift that fails raises and leaves the fault active, to be lifted again

    def lift_all(self, *, reason: str | None = None) -> list[str]:
        """Lift every active fault; `reason` goes into their end events (e.g. the session stopped)."""
        if self.player is not None:
            self.player.stop()  # its faults end with the nemesis' own end events
        self._end_reason = reason
        try:
            return self.injector.lift_all()
        finally:
            self._end_reason = None


_UNSHOWN = ("type", "toxic", "proxies", "before", "planned_start", "planned_end", "applied")


def _describe(fault: Fault) -> str:
    """A fault in a few words for its card: `latency (latency 300, jitter 0, stream downstream, ...)`."""
    shown = [
        f"{k} {v if isinstance(v, str | int | float) else orjson.dumps(v).decode()}"
        for k, v in fault.params.items()
        if k not in _UNSHOWN
    ]
    return f"{fault.action} ({', '.join(shown)})" if shown else fault.action


def _active(fault: Fault, now: float, *, played: bool = False) -> dict[str, Any]:
    """A fault as the page lists it; a played one under its id in the record (the nemesis' name for it)."""
    return {
        "fault_id": fault.name if played else fault.fault_id,
        "played": played,
        "action": fault.action,
        "target": fault.target,
        "params": fault.params,
        "since_s": round(now - fault.started_at, 1),
    }
