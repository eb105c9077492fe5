"""The fault API behind the web UI's Faults tab: toxics, cut/restore, container kill/restart and
behaviour switches, called server-side (Toxiproxy refuses browsers with 403), each recorded in the
run's `faults.jsonl` with `source: "webui"`.

Configured by environment variables, so the same code serves `lab run` and the compose lab's Locust
container (which reaches Toxiproxy and the providers by their network aliases):

    LAB_TOXIPROXY_URL  Toxiproxy's API, e.g. http://toxiproxy:8474
    LAB_PROVIDERS      "id=http_proxy,ws_proxy,control_url;..." or a JSON list of
                       {"id", "proxies": {"http", "ws"}, "control_url", "container"}
    LAB_CONTAINERS     "id=container;gateway=container" (enables kill/restart through Docker): a
                       container name or id, or a service of the compose project this process runs in
    LAB_RUN_DIR        where faults.jsonl goes (unset: not recorded)

Only `requests` is used (Locust depends on it); the Docker SDK is imported on first use, after Locust.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

TOXIC_TYPES = ("latency", "bandwidth", "timeout", "reset_peer", "slow_close", "slicer", "limit_data")
CONTAINER_ACTIONS = ("kill", "stop", "pause", "restart")


class FaultRequestError(ValueError):
    """A request the fault API cannot honour (unknown provider, bad attributes); HTTP 400."""


@dataclass(frozen=True)
class ProviderConfig:
    id: str
    proxies: dict[str, str] = field(default_factory=dict)  # transport -> Toxiproxy proxy name
    control_url: str | None = None
    container: str | None = None


def containers_from_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """LAB_CONTAINERS: target (a provider id or `gateway`) -> container name, id or compose service."""
    pairs = (item.split("=", 1) for item in env.get("LAB_CONTAINERS", "").split(";") if "=" in item)
    return {target.strip(): name.strip() for target, name in pairs if target.strip() and name.strip()}


def providers_from_env(env: Mapping[str, str] = os.environ) -> list[ProviderConfig]:
    raw = env.get("LAB_PROVIDERS", "").strip()
    containers = containers_from_env(env)
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


@dataclass
class ActiveFault:
    fault_id: str
    action: str
    target: str
    params: dict[str, Any]
    started: float
    lift: Callable[[], None]


class FaultAPI:
    """Applies and lifts faults by hand; thread-safe (the web server may serve requests concurrently)."""

    def __init__(
        self,
        *,
        toxiproxy_url: str | None,
        providers: list[ProviderConfig],
        containers: Mapping[str, str] | None = None,
        record: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.toxiproxy_url = toxiproxy_url.rstrip("/") if toxiproxy_url else None
        self.providers = {p.id: p for p in providers}
        self.containers = {p.id: p.container for p in providers if p.container} | dict(containers or {})
        self.record = record or (lambda event: None)
        self.timeout = timeout
        self.active: dict[str, ActiveFault] = {}
        self.history: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False
        self._docker: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, run_dir: Path | None = None) -> FaultAPI:
        record = None
        run_dir = run_dir or (Path(env["LAB_RUN_DIR"]) if env.get("LAB_RUN_DIR") else None)
        if run_dir is not None:
            from lab.record import EventLog

            record = EventLog(run_dir, "faults").append
        return cls(
            toxiproxy_url=env.get("LAB_TOXIPROXY_URL"),
            providers=providers_from_env(env),
            containers=containers_from_env(env),  # the gateway's too, not only the providers'
            record=record,
        )

    # --- what the page shows -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            active = [
                {"fault_id": f.fault_id, "action": f.action, "target": f.target, "params": f.params,
                 "since_s": round(time.time() - f.started, 1)}
                for f in self.active.values()
            ]  # fmt: skip
            history = list(self.history[-50:])
        return {
            "providers": [
                {
                    "id": p.id,
                    "proxies": p.proxies,
                    "control": bool(p.control_url),
                    "container": p.id in self.containers,
                }
                for p in self.providers.values()
            ],
            "gateway_container": "gateway" in self.containers,
            "toxiproxy": self.toxiproxy_url is not None,
            "toxic_types": TOXIC_TYPES,
            "active": active,
            "history": history,
        }

    # --- applying --------------------------------------------------------------------------------------
    def apply(self, target: str, action: str, params: Mapping[str, Any]) -> str:
        """Apply one fault; returns its id. FaultRequestError for a request that makes no sense."""
        params = dict(params)
        if action in TOXIC_TYPES or action == "toxic":
            lift = self._toxic(target, action, params)
        elif action == "cut":
            lift = self._cut(target, params.get("transport", "both"))
        elif action in CONTAINER_ACTIONS:
            lift = self._container(target, action)
        elif action == "behavior":
            lift = self._behavior(target, params.get("behavior"))
        else:
            raise FaultRequestError(f"unknown action {action!r}")
        with self._lock:
            fault_id = f"webui-{next(self._ids)}"
            fault = ActiveFault(fault_id, action, target, params, time.time(), lift)
            self._emit("start", fault, fault.started)
            if action == "restart":
                self._emit("end", fault, time.time())
            else:
                self.active[fault_id] = fault
        return fault_id

    def lift(self, fault_id: str) -> None:
        with self._lock:
            fault = self.active.pop(fault_id, None)
        if fault is None:
            raise FaultRequestError(f"no active fault {fault_id!r}")
        error = None
        try:
            fault.lift()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._emit("end", fault, time.time(), **({"error": error} if error else {}))
        if error:
            raise RuntimeError(error)

    def lift_all(self) -> list[str]:
        errors = []
        for fault_id in reversed(list(self.active)):
            try:
                self.lift(fault_id)
            except (FaultRequestError, RuntimeError) as exc:
                errors.append(f"{fault_id}: {exc}")
        return errors

    def _emit(self, kind: str, fault: ActiveFault, ts: float, **extra: Any) -> None:
        event = {
            "event": kind, "fault_id": fault.fault_id, "name": fault.fault_id, "action": fault.action,
            "target": fault.target, "ts": ts, "params": fault.params, "source": "webui", **extra,
        }  # fmt: skip
        self.history.append(event)
        self.record(event)

    # --- the primitives ----------------------------------------------------------------------------------
    def _provider(self, target: str) -> ProviderConfig:
        provider = self.providers.get(target)
        if provider is None:
            raise FaultRequestError(f"unknown provider {target!r} (known: {', '.join(self.providers)})")
        return provider

    def _proxies(self, target: str, transport: str) -> list[str]:
        if self.toxiproxy_url is None:
            raise FaultRequestError("no Toxiproxy configured (LAB_TOXIPROXY_URL)")
        proxies = self._provider(target).proxies
        names = list(proxies.values()) if transport == "both" else [proxies.get(transport, "")]
        if not all(names) or not names:
            raise FaultRequestError(f"{target} has no {transport} proxy")
        return names

    def _call(self, method: str, url: str, body: Any = None, expected: tuple[int, ...] = (200, 204)) -> Any:
        response = self._session.request(method, url, json=body, timeout=self.timeout)
        if response.status_code not in expected:
            raise RuntimeError(f"{method} {url}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json() if response.content else None

    def _toxic(self, target: str, action: str, params: dict[str, Any]) -> Callable[[], None]:
        toxic_type = params.get("type") if action == "toxic" else action
        attributes = params.get("attributes") or {}
        if not isinstance(toxic_type, str) or not isinstance(attributes, dict):
            raise FaultRequestError("a toxic needs a type and an attributes object")
        try:
            attributes = {str(k): int(v) for k, v in attributes.items()}
            toxicity = float(params.get("toxicity", 1.0))
        except (TypeError, ValueError):
            raise FaultRequestError("toxic attributes must be integers, toxicity a number") from None
        stream = params.get("stream", "downstream")
        if stream not in ("upstream", "downstream") or not 0 <= toxicity <= 1:
            raise FaultRequestError("stream must be upstream or downstream, toxicity within 0..1")
        proxies = self._proxies(target, params.get("transport", "both"))
        name = f"webui_{toxic_type}_{stream}_{time.time_ns() % 10**9}"
        body = {
            "name": name,
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        added: list[str] = []
        try:
            for proxy in proxies:
                self._call("POST", f"{self.toxiproxy_url}/proxies/{proxy}/toxics", body)
                added.append(proxy)
        except Exception:
            for proxy in added:
                self._call("DELETE", f"{self.toxiproxy_url}/proxies/{proxy}/toxics/{name}")
            raise

        def remove() -> None:
            for proxy in proxies:
                self._call(
                    "DELETE", f"{self.toxiproxy_url}/proxies/{proxy}/toxics/{name}", expected=(200, 204, 404)
                )

        return remove

    def _cut(self, target: str, transport: str) -> Callable[[], None]:
        proxies = self._proxies(target, transport)
        for proxy in proxies:
            self._call("POST", f"{self.toxiproxy_url}/proxies/{proxy}", {"enabled": False})

        def restore() -> None:
            for proxy in proxies:
                self._call("POST", f"{self.toxiproxy_url}/proxies/{proxy}", {"enabled": True})

        return restore

    def _behavior(self, target: str, behavior: Any) -> Callable[[], None]:
        url = self._provider(target).control_url
        if url is None:
            raise FaultRequestError(f"{target} has no control URL")
        if isinstance(behavior, str):
            behavior = {"type": behavior}
        if not isinstance(behavior, dict) or not isinstance(behavior.get("type"), str):
            raise FaultRequestError('a behaviour is an object with a "type", e.g. {"type": "always_fail"}')
        url = f"{url.rstrip('/').removesuffix('/_lab')}/_lab/behavior"
        before = self._call("GET", url)
        try:
            self._call("PUT", url, behavior)
        except RuntimeError as exc:
            raise FaultRequestError(str(exc)) from None
        return lambda: self._call("PUT", url, before)

    def _container(self, target: str, action: str) -> Callable[[], None]:
        name = self.containers.get(target)
        if name is None:
            raise FaultRequestError(f"no container known for {target!r} (LAB_CONTAINERS)")
        if self._docker is None:
            import docker  # after Locust's monkey-patching, as it must be

            self._docker = docker.from_env()
        container = find_container(self._docker, name)
        if action == "kill":
            container.kill()
        elif action == "stop":
            container.stop(timeout=10)
        elif action == "pause":
            container.pause()
            return container.unpause
        else:
            container.restart(timeout=10)
            return lambda: None

        def start() -> None:
            container.reload()
            if container.status != "running":
                container.start()

        return start


def find_container(client: Any, name: str, *, own_id: str | None = None) -> Any:
    """The container called `name`, or else the container of compose service `name` in the compose
    project this process runs in (docker-compose v1 names containers `<project>_<service>_1`, so the
    compose file can only name services). `own_id` defaults to the hostname, a container's short id."""
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        pass
    labels = [f"com.docker.compose.service={name}"]
    with contextlib.suppress(NotFound):
        own = client.containers.get(own_id or socket.gethostname())
        project = own.labels.get("com.docker.compose.project")
        if project:
            labels.append(f"com.docker.compose.project={project}")
    found = client.containers.list(all=True, filters={"label": labels})
    if not found:
        raise FaultRequestError(f"no container {name!r}, nor a compose service of that name")
    return found[0]
