"""Labels on everything the lab creates in Docker, and the sweep that removes what a run left behind.

Ryuk (Testcontainers' reaper) cannot be pulled here, so labels are the only guard: every container and
network of a lab carries `lab.managed=true` and `lab.run-id=<id>`, plus who owns it (pid and host) and
what started it, so that a sweep (a test session's start, `lab down`) removes only what a *crashed* run
left, never a lab another live process (or `lab up`) is using. Nothing without the `lab.managed=true`
label is ever touched.

Also here: `TerminationGuard`, which turns SIGTERM into an exception in the main thread while a lab is
up, so that `with Lab(...)` blocks tear down on SIGTERM as they do on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

MANAGED = "lab.managed"
RUN_ID = "lab.run-id"
ROLE = "lab.role"
PROVIDER_ID = "lab.provider-id"
OWNER_PID = "lab.owner-pid"
OWNER_HOST = "lab.owner-host"
# Set on a lab started by `lab up`: its starting process exits on purpose, so it is never an orphan.
DETACHED = "lab.detached"
STARTED_BY = "lab.started-by"  # "lab up", "lab run", "test session", or the program's name
CREATED = "lab.created"  # Unix time (s) the resource was made, for `lab ps`'s age
PORT_NAMES = "lab.port-names"  # "8474=api,8666=p1_http,...": what a container's ports are, for `lab ps`


def lab_labels(
    run_id: str,
    *,
    role: str | None = None,
    detached: bool = False,
    started_by: str = "",
    **extra: str,
) -> dict[str, str]:
    """The labels of one Docker resource of the lab `run_id`."""
    labels = {
        MANAGED: "true",
        RUN_ID: run_id,
        OWNER_PID: str(os.getpid()),
        OWNER_HOST: socket.gethostname(),
        DETACHED: "true" if detached else "false",
        STARTED_BY: started_by,
        CREATED: str(int(time.time())),
    }
    if role is not None:
        labels[ROLE] = role
    labels.update(extra)
    return labels


def label_filters(run_id: str | None = None) -> dict[str, list[str]]:
    """Docker list filters selecting the labs' resources (one run, or all of them). Filters are ANDed.

    A run id is required, not only `lab.managed=true`: the lab's images carry that label too, so every
    container made from them inherits it (a `docker build` step, a docker-compose lab).
    """
    return {"label": [f"{MANAGED}=true", f"{RUN_ID}={run_id}" if run_id is not None else RUN_ID]}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# Whose a lab is, from its labels: `running` (its owner process is alive on this host), `detached`
# (`lab up`: the starter exited on purpose; kept until `lab down --run-id`/`--all`), `orphan` (the owner
# is gone: a crashed or killed run), `elsewhere` (owned on another host: not ours to judge), `unknown`
# (no owner pid: not made by a Lab of this version).
OwnerState = Literal["running", "detached", "orphan", "elsewhere", "unknown"]


def owner_state(
    labels: Mapping[str, str],
    *,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> OwnerState:
    if labels.get(DETACHED) == "true":
        return "detached"
    if labels.get(OWNER_HOST) != (hostname or socket.gethostname()):
        return "elsewhere"
    try:
        pid = int(labels.get(OWNER_PID, ""))
    except ValueError:
        return "unknown"
    return "running" if alive(pid) else "orphan"


def is_orphan(
    labels: Mapping[str, str],
    *,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether a lab resource was left by a process that no longer runs on this host (a crashed or
    killed run). Detached labs (`lab up`) and resources owned by another host are never orphans."""
    if labels.get(MANAGED) != "true" or RUN_ID not in labels:
        return False
    return owner_state(labels, hostname=hostname, alive=alive) == "orphan"


@dataclass
class CleanupReport:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "containers": self.containers,
            "networks": self.networks,
            "volumes": self.volumes,
            "errors": self.errors,
        }


def _labels_of(resource: Any) -> Mapping[str, str]:
    labels = getattr(resource, "labels", None)
    if labels is None:  # networks and volumes keep them in attrs only
        labels = (getattr(resource, "attrs", None) or {}).get("Labels")
    return labels or {}


def _selected(resources: Iterable[Any], run_id: str | None, only_orphans: bool) -> list[Any]:
    chosen = []
    for resource in resources:
        labels = _labels_of(resource)
        # Checked again here, not only in the Docker filter: an unlabelled resource is never touched.
        if labels.get(MANAGED) != "true" or RUN_ID not in labels:
            continue
        if run_id is not None and labels.get(RUN_ID) != run_id:
            continue
        if only_orphans and not is_orphan(labels):
            continue
        chosen.append(resource)
    return chosen


def remove_lab_resources(
    client: Any, *, run_id: str | None = None, only_orphans: bool = False
) -> CleanupReport:
    """Remove the lab's containers (with their anonymous volumes), then networks, then labelled volumes.

    `run_id` limits the sweep to one lab; `only_orphans` to resources whose owning process on this host
    is gone (what a test session runs at its start, and `lab down` without arguments). Errors are
    collected, not raised: a sweep does all it can.
    """
    from docker.errors import NotFound

    report = CleanupReport()
    filters = label_filters(run_id)
    for container in _selected(client.containers.list(all=True, filters=filters), run_id, only_orphans):
        try:
            container.remove(force=True, v=True)
            report.containers.append(container.name)
        except NotFound:
            pass
        except Exception as exc:
            report.errors.append(f"container {container.name}: {exc}")
    for network in _selected(client.networks.list(filters=filters), run_id, only_orphans):
        try:
            network.remove()
            report.networks.append(network.name)
        except NotFound:
            pass
        except Exception as exc:
            report.errors.append(f"network {network.name}: {exc}")
    for volume in _selected(client.volumes.list(filters=filters), run_id, only_orphans):
        try:
            volume.remove(force=True)
            report.volumes.append(volume.name)
        except NotFound:
            pass
        except Exception as exc:
            report.errors.append(f"volume {volume.name}: {exc}")
    return report


def list_labs(
    client: Any,
    *,
    now: float | None = None,
    hostname: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> list[dict[str, Any]]:
    """The labs on this Docker host, from their labelled containers and networks (nothing else is
    looked at), oldest first: run id, what started it, whose it is (`owner_state`), age, containers,
    networks and the ports published on the host."""
    now = time.time() if now is None else now
    filters = label_filters()
    labs: dict[str, dict[str, Any]] = {}

    def lab_of(labels: Mapping[str, str]) -> dict[str, Any] | None:
        if labels.get(MANAGED) != "true" or not labels.get(RUN_ID):
            return None
        run_id = labels[RUN_ID]
        if run_id not in labs:
            try:
                pid: int | None = int(labels.get(OWNER_PID, ""))
            except ValueError:
                pid = None
            labs[run_id] = {
                "run_id": run_id,
                "started_by": labels.get(STARTED_BY) or None,
                "owner": owner_state(labels, hostname=hostname, alive=alive),
                "owner_pid": pid,
                "owner_host": labels.get(OWNER_HOST),
                "created": None,
                "age_s": None,
                "containers": [],
                "networks": [],
                "ports": [],
            }
        return labs[run_id]

    def saw_created(lab: dict[str, Any], labels: Mapping[str, str], fallback: Any) -> None:
        try:
            created = float(labels.get(CREATED) or fallback)
        except (TypeError, ValueError):
            return
        if lab["created"] is None or created < lab["created"]:
            lab["created"] = created
            lab["age_s"] = round(max(0.0, now - created), 1)

    for container in client.api.containers(all=True, filters=filters):
        labels = container.get("Labels") or {}
        lab = lab_of(labels)
        if lab is None:
            continue
        saw_created(lab, labels, container.get("Created"))
        service = labels.get(PROVIDER_ID) or labels.get(ROLE) or "?"
        names = dict(part.split("=", 1) for part in labels.get(PORT_NAMES, "").split(",") if "=" in part)
        lab["containers"].append(
            {
                "name": (container.get("Names") or ["?"])[0].lstrip("/"),
                "service": service,
                "state": container.get("State"),
            }
        )
        for port in container.get("Ports") or []:
            if port.get("PublicPort") is None:
                continue
            private = str(port.get("PrivatePort"))
            lab["ports"].append(
                {
                    "host": f"{port.get('IP')}:{port['PublicPort']}",
                    "service": service,
                    "port": int(private),
                    "name": names.get(private),
                }
            )
    for network in client.api.networks(filters=filters):
        labels = network.get("Labels") or {}
        lab = lab_of(labels)
        if lab is None:
            continue
        saw_created(lab, labels, None)
        lab["networks"].append(network.get("Name"))
    for lab in labs.values():
        lab["ports"].sort(key=lambda p: (p["service"], p["port"]))
    return sorted(labs.values(), key=lambda lab: (lab["created"] or 0.0, lab["run_id"]))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt so that everything that tears down on Ctrl-C (context
    managers, pytest's session teardown) does the same on SIGTERM."""


class TerminationGuard:
    """While entered (by any number of labs, nested), SIGTERM raises `Terminated` in the main thread.

    Each entry installs the handler and each exit puts back what was there when it entered, so a handler
    someone set in between (a test, another library) is honoured and restored in turn.
    Outside the main thread it does nothing (Python delivers signals to the main thread only).
    """

    def __init__(self) -> None:
        self._previous: list[Any] = []

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"received signal {signum}")

    def __enter__(self) -> TerminationGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous.append(signal.signal(signal.SIGTERM, self._raise))
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is threading.main_thread() and self._previous:
            signal.signal(signal.SIGTERM, self._previous.pop() or signal.SIG_DFL)

    @staticmethod
    @contextlib.contextmanager
    def deferred() -> Iterator[None]:
        """Hold off SIGINT/SIGTERM for the duration (a teardown); a second signal forces the interrupt.

        The first signal that arrives is remembered and raised once the block has finished.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        pending: list[int] = []

        def hold(signum: int, frame: FrameType | None) -> None:
            if pending:
                raise Terminated(f"received signal {signum} twice during teardown")
            pending.append(signum)

        previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if pending:
            if pending[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise Terminated(f"received signal {pending[0]}")


termination_guard = TerminationGuard()
