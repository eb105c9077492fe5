"""The compose lab's control service: the one process that holds the Docker socket.

It acts only on containers of its own compose project (the `com.docker.compose.project` label of its own
container) whose `com.docker.compose.service` is one it was told to control, and only with the actions
the lab's faults need. A container is never looked up by name, so an unrelated container called `p3` on
the same host is out of its reach, and so are the Locust containers and itself.

HTTP API (JSON; errors are `{"ok": false, "error": "..."}`):

    GET  /health                     {"status": "ok", "project", "services"}
    GET  /host                       {"mem_total"}: the machine's memory (a memory fault's "unlimited")
    GET  /services/<service>         the container's status, memory limits, network and aliases there
    POST /services/<service>/<action>  body: the action's parameters (ACTIONS); answers the new status

400: an unknown action or bad parameters; 403: a service it does not control, or a network outside the
project; 404: no container of that service in the project; 409: Docker refused (e.g. pausing a stopped
container); 503: Docker is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("lab.control")

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"  # `docker-compose run` containers: never a fault target

Signal = Annotated[str, Field(pattern=r"^(SIG)?[A-Z0-9+-]{1,12}$|^[0-9]{1,2}$")]
Seconds = Annotated[int, Field(ge=0, le=600)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    pass


class KillParams(_Params):
    signal: Signal = "SIGKILL"


class TimeoutParams(_Params):
    timeout: Seconds = 10


class NetworkParams(_Params):
    network: Annotated[str, Field(min_length=1, max_length=200)]


class ConnectParams(NetworkParams):
    aliases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default=[], max_length=16)


class UpdateParams(_Params):
    """Memory limits in bytes (a memory fault and its lifting); -1 memory+swap: unlimited swap."""

    mem_limit: Annotated[int, Field(ge=6 * 1024 * 1024)] | None = None  # Docker's own minimum: 6 MiB
    memswap_limit: Annotated[int, Field(ge=-1)] | None = None


# action -> its parameters; nothing else is ever done to a container.
ACTIONS: dict[str, type[_Params]] = {
    "kill": KillParams,
    "stop": TimeoutParams,
    "start": NoParams,
    "pause": NoParams,
    "unpause": NoParams,
    "restart": TimeoutParams,
    "disconnect": NetworkParams,
    "connect": ConnectParams,
    "update": UpdateParams,
}


class Refused(Exception):
    """A request the service will not or cannot carry out; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ControlService:
    """The actions on the controlled services' containers, through a Docker SDK client (blocking calls)."""

    client: Any  # docker.DockerClient
    project: str
    services: frozenset[str]

    def find(self, service: str) -> Any:
        """The one container of `service` in this project (never by name)."""
        if service not in self.services:
            raise Refused(
                403, f"service {service!r} is not one this lab controls ({', '.join(sorted(self.services))})"
            )
        labels = [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]
        found = [
            c
            for c in self._docker(lambda: self.client.containers.list(all=True, filters={"label": labels}))
            # the filter already matched; checked again so that the rule does not rest on the filter alone
            if c.labels.get(PROJECT_LABEL) == self.project
            and c.labels.get(SERVICE_LABEL) == service
            and c.labels.get(ONEOFF_LABEL, "False") != "True"
        ]
        if not found:
            raise Refused(404, f"no container of service {service!r} in compose project {self.project!r}")
        if len(found) > 1:
            raise Refused(409, f"service {service!r} has {len(found)} containers; the lab controls one")
        return found[0]

    def describe(self, service: str) -> dict[str, Any]:
        container = self.find(service)
        self._docker(container.reload)
        attrs = container.attrs or {}
        host = attrs.get("HostConfig") or {}
        networks: dict[str, Any] = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        network: str | None = next(iter(networks), None)  # the lab's containers are on one network
        settings: dict[str, Any] = networks.get(network) or {} if network else {}
        return {
            "service": service,
            "id": container.id,
            "name": container.name,
            "status": container.status,
            "memory": int(host.get("Memory") or 0),
            "memory_swap": int(host.get("MemorySwap") or 0),
            "network": network,
            "aliases": list(settings.get("Aliases") or []),
        }

    def act(self, service: str, action: str, body: Any) -> dict[str, Any]:
        params = self.parse(action, body)
        container = self.find(service)
        if isinstance(params, NetworkParams):
            network = self.project_network(params.network)
            if isinstance(params, ConnectParams):
                self._docker(lambda: network.connect(container, aliases=list(params.aliases) or None))
            else:
                self._docker(lambda: network.disconnect(container))
        elif isinstance(params, UpdateParams):
            self._docker(lambda: container.update(**params.model_dump(exclude_none=True)))
        else:
            method: Callable[..., Any] = getattr(container, action)
            self._docker(lambda: method(**params.model_dump()))
        self._docker(container.reload)
        log.info("%s %s (%s): %s", action, service, container.name, container.status)
        return {"service": service, "action": action, "status": container.status}

    @staticmethod
    def parse(action: str, body: Any) -> _Params:
        model = ACTIONS.get(action)
        if model is None:
            raise Refused(400, f"unknown action {action!r}; expected one of: {', '.join(ACTIONS)}")
        try:
            return model.model_validate(body if body is not None else {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise Refused(400, f"{action}: {problems}") from None

    def project_network(self, name: str) -> Any:
        network = self._docker(lambda: self.client.networks.get(name), missing=f"no network {name!r}")
        if (network.attrs.get("Labels") or {}).get(PROJECT_LABEL) != self.project:
            raise Refused(403, f"network {name!r} is not one of compose project {self.project!r}")
        return network

    def memory_total(self) -> int:
        return int(self._docker(self.client.info)["MemTotal"])

    @staticmethod
    def _docker(call: Callable[[], Any], *, missing: str | None = None) -> Any:
        """Docker's errors as the service's answers: NotFound 404, other API errors 409, no Docker 503."""
        from docker.errors import APIError, DockerException, NotFound

        try:
            return call()
        except NotFound as exc:
            raise Refused(404, missing or _explain(exc)) from None
        except APIError as exc:
            raise Refused(409, _explain(exc)) from None
        except (DockerException, OSError) as exc:
            raise Refused(503, f"Docker is unreachable: {exc}") from None


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def own_project(client: Any, own_id: str) -> str:
    """The compose project of the container `own_id` (this process's own: its hostname is its short id)."""
    from docker.errors import NotFound

    try:
        labels = client.containers.get(own_id).labels
    except NotFound:
        raise LookupError(f"no container {own_id!r}: is this running in a compose service?") from None
    project = labels.get(PROJECT_LABEL)
    if not project:
        raise LookupError(f"container {own_id!r} has no {PROJECT_LABEL} label: not started by compose")
    return str(project)


def make_app(service: ControlService) -> web.Application:
    """The HTTP API; Docker's blocking calls run in threads, so a slow stop does not hold up the rest."""

    def reply(payload: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")

    async def call(fn: Callable[[], dict[str, Any]]) -> web.Response:
        try:
            return reply({"ok": True, **await asyncio.to_thread(fn)})
        except Refused as exc:
            log.warning("refused: %s", exc)
            return reply({"ok": False, "error": str(exc)}, exc.status)

    async def health(request: web.Request) -> web.Response:
        return reply({"status": "ok", "project": service.project, "services": sorted(service.services)})

    async def host(request: web.Request) -> web.Response:
        return await call(lambda: {"mem_total": service.memory_total()})

    async def describe(request: web.Request) -> web.Response:
        return await call(lambda: service.describe(request.match_info["service"]))

    async def act(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return reply({"ok": False, "error": "the body is not JSON"}, 400)
        return await call(
            lambda: service.act(request.match_info["service"], request.match_info["action"], body)
        )

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/health", health)
    app.router.add_get("/host", host)
    app.router.add_get("/services/{service}", describe)
    app.router.add_post("/services/{service}/{action}", act)
    return app


def controlled(services: Iterable[str]) -> frozenset[str]:
    """Service names from options that may each hold a comma-separated list."""
    return frozenset(name.strip() for item in services for name in item.split(",") if name.strip())
