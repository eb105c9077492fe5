"""Labels, the selection of what a sweep removes (with a fake Docker client), and SIGTERM handling."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from lab.cleanup import (
    DETACHED,
    MANAGED,
    OWNER_HOST,
    OWNER_PID,
    RUN_ID,
    Terminated,
    TerminationGuard,
    is_orphan,
    lab_labels,
    label_filters,
    owned_by_live_process,
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


class FakeDocker:
    def __init__(self, containers=(), networks=(), volumes=()) -> None:
        self.containers = FakeCollection(list(containers))
        self.networks = FakeCollection(list(networks))
        self.volumes = FakeCollection(list(volumes))


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


def test_keep_live_leaves_only_labs_of_running_processes():
    log: list[str] = []
    gone = dead_pid()
    client = FakeDocker(
        containers=[
            FakeResource("crashed", labels("r1", pid=gone), log),
            FakeResource("test-session", labels("r2"), log),  # this process: alive
            FakeResource("lab-up", labels("r3", detached=True), log),
            FakeResource("elsewhere", labels("r4", host="another-machine"), log),
        ],
        networks=[
            FakeNetwork("lab-r2", labels("r2"), log),
            FakeNetwork("lab-r3", labels("r3", detached=True), log),
        ],
    )
    remove_lab_resources(client, keep_live=True)
    assert log == ["crashed", "lab-up", "elsewhere", "lab-r3"]


def test_owned_by_live_process():
    assert owned_by_live_process(labels("r"))
    assert not owned_by_live_process(labels("r", pid=dead_pid()))
    assert not owned_by_live_process(labels("r", detached=True))
    assert not owned_by_live_process(labels("r", host="another-machine"))
    assert not owned_by_live_process({**labels("r"), OWNER_PID: "garbage"})


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
