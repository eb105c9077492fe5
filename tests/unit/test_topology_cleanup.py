"""Labels, the selection of what a sweep removes (with a fake Docker client), and SIGTERM handling."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lab.topology import cli as topology_cli
from lab.topology.cleanup import (
    CREATED,
    DETACHED,
    MANAGED,
    OWNER_HOST,
    OWNER_PID,
    PORT_NAMES,
    PROVIDER_ID,
    ROLE,
    RUN_ID,
    STARTED_BY,
    Terminated,
    TerminationGuard,
    is_orphan,
    lab_labels,
    label_filters,
    list_labs,
    owner_state,
    remove_lab_resources,
)

HOST = socket.gethostname()


class FakeResource:
    def __init__(self, name: str, labels: dict[str, str], log: list[str], *, fails: bool = False) -> None:
        self.name = name
        self.labels = labels
        self._log = log
        self._fails = fails

    def remove(self, **kwargs: object) -> None:
        if self._fails:
            raise RuntimeError("device busy")
        self._log.append(self.name)
        getattr(self, "_log_also", []).append(self.name)


class FakeNetwork(FakeResource):
    """Networks keep their labels in attrs only, as the Docker SDK's do."""

    def __init__(self, name: str, labels: dict[str, str], log: list[str], **kwargs: bool) -> None:
        super().__init__(name, labels, log, **kwargs)
        self.attrs = {"Labels": self.labels}
        del self.labels


class FakeCollection:
    """Returns everything regardless of filters: the code under test must check labels itself."""

    def __init__(self, items: list[FakeResource]) -> None:
        self.items = items
        self.filters: list[dict] = []

    def list(self, all: bool = False, filters: dict | None = None) -> list[FakeResource]:
        self.filters.append(filters or {})
        return list(self.items)


class FakeApi:
    """The low-level API's listings (`lab ps`), as dicts, from the same fake resources."""

    def __init__(self, docker: FakeDocker) -> None:
        self._docker = docker

    def containers(self, all: bool = False, filters: dict | None = None) -> list[dict]:
        return [
            {"Names": [f"/{c.name}"], "Labels": c.labels, "State": "running", "Created": 0, "Ports": []}
            for c in self._docker.containers.items
            if c.name not in self._docker.removed
        ]

    def networks(self, filters: dict | None = None) -> list[dict]:
        return [
            {"Name": n.name, "Labels": n.attrs["Labels"]}
            for n in self._docker.networks.items
            if n.name not in self._docker.removed
        ]


class FakeDocker:
    def __init__(self, containers=(), networks=(), volumes=()) -> None:
        self.containers = FakeCollection(list(containers))
        self.networks = FakeCollection(list(networks))
        self.volumes = FakeCollection(list(volumes))
        self.api = FakeApi(self)
        self.removed: list[str] = []
        for resource in [*containers, *networks, *volumes]:
            resource._log_also = self.removed

    def close(self) -> None:
        pass


def labels(
    run_id: str, *, pid: int | None = None, host: str = HOST, detached: bool = False
) -> dict[str, str]:
    out = lab_labels(run_id, role="provider", detached=detached)
    out[OWNER_PID] = str(pid if pid is not None else os.getpid())
    out[OWNER_HOST] = host
    return out


def dead_pid() -> int:
    """A pid that is certainly not running: one past the highest, unless it wrapped."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    assert not os.path.exists(f"/proc/{pid}")
    return pid


def test_labels_say_managed_run_owner_and_role():
    out = lab_labels("r1", role="gateway", detached=True)
    assert out[MANAGED] == "true" and out[RUN_ID] == "r1" and out[DETACHED] == "true"
    assert out[OWNER_PID] == str(os.getpid()) and out["lab.role"] == "gateway"


def test_filters_select_managed_resources_and_optionally_one_run():
    assert label_filters() == {"label": ["lab.managed=true", "lab.run-id"]}
    assert label_filters("r1") == {"label": ["lab.managed=true", "lab.run-id=r1"]}


def test_orphans_are_resources_of_dead_local_processes():
    assert is_orphan(labels("r", pid=dead_pid()))
    assert not is_orphan(labels("r"))  # this process is alive
    assert not is_orphan(labels("r", pid=dead_pid(), detached=True))  # `lab up` labs stay
    assert not is_orphan(labels("r", pid=dead_pid(), host="another-machine"))
    assert not is_orphan({"com.example": "x"})
    assert not is_orphan({**labels("r"), OWNER_PID: "garbage"})
    assert not is_orphan({MANAGED: "true"})  # inherited from a lab image (a build step, docker compose)


def test_sweep_never_touches_unlabelled_resources():
    log: list[str] = []
    client = FakeDocker(
        containers=[
            FakeResource("mine", labels("r1"), log),
            FakeResource("unrelated", {"com.docker.compose.project": "x"}, log),
            FakeResource("unmanaged-run", {RUN_ID: "r1"}, log),
            FakeResource("docker-build-step", {MANAGED: "true", "lab.image": "provider"}, log),
        ],
        networks=[FakeNetwork("lab-r1", labels("r1"), log), FakeNetwork("bridge", {}, log)],
        volumes=[FakeResource("somebody's data", {}, log)],
    )
    report = remove_lab_resources(client)
    assert log == ["mine", "lab-r1"]  # containers before networks
    assert report.containers == ["mine"] and report.networks == ["lab-r1"] and report.volumes == []
    assert client.containers.filters == [{"label": ["lab.managed=true", "lab.run-id"]}]


def test_sweep_of_one_run_leaves_other_runs():
    log: list[str] = []
    client = FakeDocker(
        containers=[FakeResource("a", labels("r1"), log), FakeResource("b", labels("r2"), log)]
    )
    remove_lab_resources(client, run_id="r2")
    assert log == ["b"]


def test_orphan_sweep_leaves_live_and_detached_labs():
    log: list[str] = []
    gone = dead_pid()
    client = FakeDocker(
        containers=[
            FakeResource("crashed", labels("r1", pid=gone), log),
            FakeResource("live", labels("r2"), log),
            FakeResource("lab-up", labels("r3", pid=gone, detached=True), log),
        ],
        networks=[
            FakeNetwork("lab-r1", labels("r1", pid=gone), log),
            FakeNetwork("lab-r2", labels("r2"), log),
        ],
    )
    report = remove_lab_resources(client, only_orphans=True)
    assert log == ["crashed", "lab-r1"]
    assert report.removed == 2


def test_owner_state_says_whose_a_lab_is():
    assert owner_state(labels("r")) == "running"  # this process
    assert owner_state(labels("r", pid=dead_pid())) == "orphan"
    assert owner_state(labels("r", pid=dead_pid(), detached=True)) == "detached"
    assert owner_state(labels("r", detached=True)) == "detached"
    assert owner_state(labels("r", host="another-machine")) == "elsewhere"
    assert owner_state({**labels("r"), OWNER_PID: "garbage"}) == "unknown"


def mixed_host(log: list[str]) -> FakeDocker:
    """A crashed run, a live test session, a `lab up` lab and a lab of another host."""
    gone = dead_pid()
    return FakeDocker(
        containers=[
            FakeResource("crashed", labels("r1", pid=gone), log),
            FakeResource("test-session", labels("r2"), log),  # this process: alive
            FakeResource("lab-up", labels("r3", pid=gone, detached=True), log),
            FakeResource("elsewhere", labels("r4", host="another-machine"), log),
        ],
        networks=[
            FakeNetwork("lab-r1", labels("r1", pid=gone), log),
            FakeNetwork("lab-r2", labels("r2"), log),
            FakeNetwork("lab-r3", labels("r3", pid=gone, detached=True), log),
        ],
    )


def lab_down(monkeypatch: pytest.MonkeyPatch, client: FakeDocker, *args: str) -> Result:
    monkeypatch.setattr(topology_cli, "_docker_client", lambda command: client)
    return CliRunner().invoke(topology_cli.down_command, list(args))


def test_lab_down_without_arguments_removes_only_what_dead_runs_left(monkeypatch: pytest.MonkeyPatch):
    log: list[str] = []
    result = lab_down(monkeypatch, mixed_host(log))
    assert result.exit_code == 0, result.output
    assert log == ["crashed", "lab-r1"]
    assert "removed 1 container(s), 1 network(s)" in result.output
    # What was left is named, with how to remove it.
    assert "left 3 lab(s) in use" in result.output and "r3 (detached)" in result.output
    assert "lab down --run-id ID" in result.output


def test_lab_down_removes_a_lab_up_lab_by_its_run_id(monkeypatch: pytest.MonkeyPatch):
    log: list[str] = []
    result = lab_down(monkeypatch, mixed_host(log), "--run-id", "r3", "--json")
    assert result.exit_code == 0, result.output
    assert log == ["lab-up", "lab-r3"]
    assert json.loads(result.output) == {
        "containers": ["lab-up"],
        "networks": ["lab-r3"],
        "volumes": [],
        "errors": [],
    }


def test_lab_down_all_removes_every_lab(monkeypatch: pytest.MonkeyPatch):
    log: list[str] = []
    result = lab_down(monkeypatch, mixed_host(log), "--all")
    assert result.exit_code == 0, result.output
    assert log == ["crashed", "test-session", "lab-up", "elsewhere", "lab-r1", "lab-r2", "lab-r3"]


def test_sweep_collects_errors_and_carries_on():
    log: list[str] = []
    client = FakeDocker(
        containers=[
            FakeResource("stuck", labels("r1"), log, fails=True),
            FakeResource("ok", labels("r1"), log),
        ]
    )
    report = remove_lab_resources(client)
    assert log == ["ok"]
    assert report.errors == ["container stuck: device busy"]


def test_sigterm_raises_terminated_inside_the_guard_and_not_after():
    guard = TerminationGuard()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), guard:
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5)  # the handler interrupts this wait; reaching the end fails the test
        pytest.fail("SIGTERM did not interrupt")
    assert signal.getsignal(signal.SIGTERM) is before


def test_nested_guards_keep_the_handler_until_the_last_exits():
    guard = TerminationGuard()
    before = signal.getsignal(signal.SIGTERM)
    with guard:
        with guard:
            pass
        assert signal.getsignal(signal.SIGTERM) == guard._raise
    assert signal.getsignal(signal.SIGTERM) is before


def test_terminated_is_handled_like_ctrl_c():
    assert issubclass(Terminated, KeyboardInterrupt)


def test_signals_during_teardown_are_raised_after_it():
    finished = []
    with pytest.raises(Terminated), TerminationGuard.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append("teardown ran to the end")
    assert finished == ["teardown ran to the end"]


def test_a_second_signal_during_teardown_interrupts_it():
    with pytest.raises(Terminated, match="twice"), TerminationGuard.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5)
        pytest.fail("the second signal did not interrupt")


def test_termination_guard_nested_under_a_foreign_handler_still_raises_and_restores() -> None:
    guard = TerminationGuard()
    original = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []

    def foreign(signum: int, frame: object) -> None:
        seen.append(signum)

    try:
        with guard:  # e.g. a session-scoped lab
            signal.signal(signal.SIGTERM, foreign)  # e.g. a test's own handler
            with guard, pytest.raises(Terminated):  # e.g. `lab run` inside that test
                signal.raise_signal(signal.SIGTERM)
            assert signal.getsignal(signal.SIGTERM) is foreign
            signal.raise_signal(signal.SIGTERM)
            assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) == original
    finally:
        signal.signal(signal.SIGTERM, original)


class FakeListing:
    """A Docker host as `lab ps` reads it: the low-level API's container and network listings."""

    def __init__(self, containers: list[dict], networks: list[dict]) -> None:
        self.api = self
        self._containers = containers
        self._networks = networks

    def containers(self, all: bool = False, filters: dict | None = None) -> list[dict]:
        assert filters == {"label": ["lab.managed=true", "lab.run-id"]}
        return self._containers

    def networks(self, filters: dict | None = None) -> list[dict]:
        return self._networks

    def close(self) -> None:
        pass


def listing() -> FakeListing:
    up = {**labels("r-up", pid=dead_pid(), detached=True), STARTED_BY: "lab up", CREATED: "1000"}
    run = {**labels("r-run"), STARTED_BY: "lab run", CREATED: "1900"}
    toxiproxy = {**up, ROLE: "toxiproxy", PORT_NAMES: "8474=api,8666=p1_http"}
    provider = {**up, ROLE: "provider", PROVIDER_ID: "p1"}
    return FakeListing(
        containers=[
            {
                "Names": ["/lab-r-up-toxiproxy"],
                "Labels": toxiproxy,
                "State": "running",
                "Created": 1001,
                "Ports": [
                    {"IP": "127.0.0.1", "PrivatePort": 8666, "PublicPort": 41001, "Type": "tcp"},
                    {"IP": "127.0.0.1", "PrivatePort": 8474, "PublicPort": 41000, "Type": "tcp"},
                ],
            },
            {
                "Names": ["/lab-r-up-p1"],
                "Labels": provider,
                "State": "exited",  # killed by a fault: nothing published
                "Created": 1002,
                "Ports": [{"PrivatePort": 8545, "Type": "tcp"}],
            },
            {"Names": ["/unrelated"], "Labels": {"com.example": "x"}, "State": "running", "Ports": []},
        ],
        networks=[
            {"Name": "lab-r-up", "Labels": up},
            {"Name": "lab-r-run", "Labels": run},  # a lab whose containers are gone
        ],
    )


def test_lab_ps_lists_each_lab_with_its_owner_age_and_ports():
    labs = list_labs(listing(), now=2000.0)
    assert [lab["run_id"] for lab in labs] == ["r-up", "r-run"]  # oldest first
    up, run = labs
    assert up["started_by"] == "lab up" and up["owner"] == "detached" and up["age_s"] == 1000.0
    assert [c["service"] for c in up["containers"]] == ["toxiproxy", "p1"]
    assert up["networks"] == ["lab-r-up"]
    assert up["ports"] == [
        {"host": "127.0.0.1:41000", "service": "toxiproxy", "port": 8474, "name": "api"},
        {"host": "127.0.0.1:41001", "service": "toxiproxy", "port": 8666, "name": "p1_http"},
    ]
    assert run["owner"] == "running" and run["owner_pid"] == os.getpid() and run["containers"] == []


def test_lab_ps_prints_a_table_or_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(topology_cli, "_docker_client", lambda command: listing())
    text = CliRunner().invoke(topology_cli.ps_command, [])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split() == ["RUN", "ID", "STARTED", "BY", "AGE", "OWNER"]
    assert lines[1].startswith("r-up ")
    assert "detached (lab up)" in lines[1]
    assert "1/2 containers running; network lab-r-up" in text.output
    assert "127.0.0.1:41001 -> toxiproxy:8666 (p1_http)" in text.output
    assert f"running (pid {os.getpid()})" in text.output
    as_json = CliRunner().invoke(topology_cli.ps_command, ["--json"])
    assert [lab["run_id"] for lab in json.loads(as_json.output)] == ["r-up", "r-run"]


def test_lab_ps_on_an_empty_host(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(topology_cli, "_docker_client", lambda command: FakeListing([], []))
    result = CliRunner().invoke(topology_cli.ps_command, [])
    assert result.output == "no labs on this Docker host\n"
