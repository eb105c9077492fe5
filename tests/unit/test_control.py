"""The compose lab's control service (lab.control): it acts only on its own compose project's containers of
the services it controls, only with the lab's actions; its client drives the fault primitives through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.control import ControlServiceError, containers_from_env, services_from_env
from lab.control.client import ControlServiceClient
from lab.control.service import ACTIONS, ControlService, Refused, controlled, own_project
from lab.faults import process
from tests.unit.fake_docker import FakeContainer, FakeDocker, FakeNetwork, compose_labels, serve_control

PROJECT = "mylab"
NETWORK = f"{PROJECT}_lab"


@pytest.fixture
def lab() -> dict[str, FakeContainer]:
    return {
        "p3": FakeContainer("mylab_p3_1", compose_labels(PROJECT, "p3"), NETWORK),
        "gateway": FakeContainer("mylab_gateway_1", compose_labels(PROJECT, "gateway"), NETWORK),
        "locust-master": FakeContainer("mylab_locust-master_1", compose_labels(PROJECT, "locust-master")),
        # what must stay out of reach: a container named like the service, another project's p3, a one-off
        "decoy": FakeContainer("p3", {"purpose": "decoy"}),
        "other": FakeContainer("other_p3_1", compose_labels("other", "p3"), "other_lab"),
        "oneoff": FakeContainer(
            "mylab_p3_run_1", compose_labels(PROJECT, "p3", **{"com.docker.compose.oneoff": "True"})
        ),
        "control": FakeContainer("abc123def456", compose_labels(PROJECT, "control")),
    }


@pytest.fixture
def docker(lab: dict[str, FakeContainer]) -> FakeDocker:
    networks = [
        FakeNetwork(NETWORK, compose_labels(PROJECT, "")),
        FakeNetwork("other_lab", compose_labels("other", "")),
    ]
    return FakeDocker(list(lab.values()), networks)


@pytest.fixture
def service(docker: FakeDocker) -> ControlService:
    return ControlService(docker, PROJECT, controlled(["p1,p2", "p3", "gateway"]))


def untouched(lab: dict[str, FakeContainer], *but: str) -> None:
    for key, container in lab.items():
        if key not in but:
            assert container.actions == [], key


def test_it_acts_on_its_own_projects_container_of_the_service_never_one_of_that_name(
    service: ControlService, lab: dict[str, FakeContainer]
) -> None:
    assert service.act("p3", "pause", {})["status"] == "paused"
    assert service.act("p3", "unpause", None)["status"] == "running"
    assert service.act("p3", "kill", {"signal": "SIGTERM"})["status"] == "exited"
    assert lab["p3"].actions == [("pause", {}), ("unpause", {}), ("kill", {"signal": "SIGTERM"})]
    untouched(lab, "p3")


@pytest.mark.parametrize(
    ("service_name", "status", "message"),
    [
        ("locust-master", 403, "not one this lab controls"),  # in the project, but not a fault target
        ("control", 403, "not one this lab controls"),  # nor itself
        ("decoy", 403, "not one this lab controls"),
        ("p1", 404, "no container of service 'p1' in compose project 'mylab'"),  # controlled, none running
    ],
)
def test_it_refuses_services_it_does_not_control_or_cannot_find(
    service: ControlService, lab: dict[str, FakeContainer], service_name: str, status: int, message: str
) -> None:
    with pytest.raises(Refused, match=message) as refused:
        service.act(service_name, "kill", {})
    assert refused.value.status == status
    untouched(lab)


@pytest.mark.parametrize("action", ["remove", "exec_run", "reload", "commit", "put_archive", "attrs", ""])
def test_it_refuses_actions_the_lab_does_not_offer(
    service: ControlService, lab: dict[str, FakeContainer], action: str
) -> None:
    with pytest.raises(Refused, match="unknown action") as refused:
        service.act("p3", action, {})
    assert refused.value.status == 400
    assert lab["p3"].status == "running"
    untouched(lab)


@pytest.mark.parametrize(
    ("action", "body", "message"),
    [
        ("kill", {"signal": "KILL; rm -rf /"}, "signal"),
        ("stop", {"timeout": -1}, "timeout"),
        ("restart", {"timeout": 10, "force": True}, "force"),  # unknown fields are refused, not ignored
        ("update", {"mem_limit": 1024}, "mem_limit"),  # below Docker's minimum
        ("connect", {"aliases": ["p3"]}, "network"),  # which network is required
        ("pause", [1, 2], "body"),
    ],
)
def test_it_refuses_bad_parameters(
    service: ControlService, lab: dict[str, FakeContainer], action: str, body: object, message: str
) -> None:
    with pytest.raises(Refused, match=message) as refused:
        service.act("p3", action, body)
    assert refused.value.status == 400
    untouched(lab)


def test_it_disconnects_and_connects_only_on_its_projects_network(
    service: ControlService, lab: dict[str, FakeContainer]
) -> None:
    with pytest.raises(Refused, match="not one of compose project") as refused:
        service.act("p3", "disconnect", {"network": "other_lab"})
    assert refused.value.status == 403
    with pytest.raises(Refused, match="no network 'bridge'") as refused:
        service.act("p3", "connect", {"network": "bridge"})
    assert refused.value.status == 404
    untouched(lab)
    service.act("p3", "disconnect", {"network": NETWORK})
    service.act("p3", "connect", {"network": NETWORK, "aliases": ["p3"]})
    assert lab["p3"].networks == {NETWORK: ["p3"]}


def test_dockers_refusal_is_a_conflict_with_its_words(service: ControlService) -> None:
    service.act("p3", "stop", {"timeout": 0})
    with pytest.raises(Refused, match="is not running") as refused:
        service.act("p3", "pause", {})
    assert refused.value.status == 409


def test_a_scaled_service_is_refused_rather_than_guessed(docker: FakeDocker) -> None:
    docker.all.append(FakeContainer("mylab_p3_2", compose_labels(PROJECT, "p3")))
    with pytest.raises(Refused, match="has 2 containers") as refused:
        ControlService(docker, PROJECT, frozenset({"p3"})).act("p3", "kill", {})
    assert refused.value.status == 409


def test_its_project_is_its_own_containers(docker: FakeDocker) -> None:
    assert own_project(docker, "abc123def456") == PROJECT  # the hostname: the container's short id
    with pytest.raises(LookupError, match="not started by compose"):
        own_project(docker, "p3")
    with pytest.raises(LookupError, match="no container 'nope'"):
        own_project(docker, "nope")


def test_the_offered_actions_are_exactly_what_the_fault_primitives_need() -> None:
    assert set(ACTIONS) == {
        "kill", "stop", "start", "pause", "unpause", "restart", "disconnect", "connect", "update",
    }  # fmt: skip


# --- the client, over HTTP, driving the fault primitives of lab.faults.process ------------------------------


@pytest.fixture
def control_url(service: ControlService) -> Iterator[str]:
    with serve_control(service) as url:
        yield url


def test_the_fault_primitives_act_through_the_service(
    control_url: str, lab: dict[str, FakeContainer]
) -> None:
    env = {"LAB_CONTROL_URL": control_url, "LAB_CONTAINERS": "p3=p3;gateway=gateway"}
    containers = containers_from_env(env)
    assert sorted(containers) == ["gateway", "p3"] and "p3" in containers and "p1" not in containers
    target = containers["p3"]
    assert (target.status(), target.network.name, target.aliases) == (
        "running",
        NETWORK,
        ["p3", "id-mylab_p3_"],
    )

    process.kill(target)()  # the inverse starts it again
    process.pause(target)()
    process.stop(target, timeout=1)()
    process.restart(target, timeout=2)
    process.disconnect(target)()
    release = process.squeeze_memory(target, "64m", unlimited=containers.memory_total())
    assert lab["p3"].memory == 64 * 1024**2
    release()
    assert [action for action, _ in lab["p3"].actions] == [
        "kill", "start", "pause", "unpause", "stop", "start", "stop", "start", "disconnect", "connect",
        "update", "update", "update",
    ]  # fmt: skip
    assert lab["p3"].actions[-4] == ("connect", {"network": NETWORK, "aliases": ["p3", "id-mylab_p3_"]})
    assert lab["p3"].memory == 8 * 1024**3  # no limit before: back to the machine's memory
    assert target.status() == "running"
    untouched(lab, "p3")


def test_refusals_reach_the_caller_in_the_services_words(
    control_url: str, lab: dict[str, FakeContainer]
) -> None:
    control = ControlServiceClient(control_url)
    with pytest.raises(ControlServiceError, match=r"not one this lab controls .* \(HTTP 403\)"):
        control.act("locust-master", "kill")
    with pytest.raises(ControlServiceError, match=r"unknown action 'remove'.*\(HTTP 400\)"):
        control.act("p3", "remove", force=True)
    with pytest.raises(ControlServiceError, match=r"HTTP 404"):
        control.request("POST", "/containers/p3/kill")
    assert control.request("GET", "/health")["project"] == PROJECT
    untouched(lab)


def test_no_control_service_means_no_container_targets() -> None:
    assert dict(containers_from_env({"LAB_CONTAINERS": "p1=p1"})) == {}
    assert services_from_env({"LAB_CONTAINERS": " p1 = p1 ;gateway=gw;bad;=x"}) == {
        "p1": "p1",
        "gateway": "gw",
    }
    with pytest.raises(ControlServiceError, match=r"control service at http://127\.0\.0\.1:9"):
        containers_from_env({"LAB_CONTROL_URL": "http://127.0.0.1:9", "LAB_CONTAINERS": "p1=p1"})["p1"]


def test_the_command_says_in_one_line_when_it_has_no_docker() -> None:
    result = CliRunner().invoke(
        main, ["control", "--service", "p1"], env={"DOCKER_HOST": "tcp://127.0.0.1:9"}
    )
    assert result.exit_code == 3, result.output
    assert result.output.count("\n") == 1 and "cannot reach Docker" in result.output
