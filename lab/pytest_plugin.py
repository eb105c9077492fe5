"""The lab's pytest plugin (entry point `lab`): a session-wide lab in containers and per-test isolation,
in the spirit of Lasso's LassoIntegrationCase, plus waits on conditions and on gateway events.

Fixtures:
  lab_spec        (session) the TopologySpec; override it in a conftest.py for another topology
  lab_images      (session) the images (`lab.images.ensure_images()`, built or reused once)
  lab_topology    (session) the running `Lab` (3 providers behind Toxiproxy, the gateway); first sweeps
                  away what crashed earlier runs left (their owner process is gone)
  lab_isolated    (function) the same lab, healed before the test: faults lifted, toxics removed,
                  containers running, behaviours and statistics reset, breakers closed
  gateway_events  (function) a `GatewayEventStream` subscribed before the test body runs
  wait_for_event  (function) `wait_for_event(predicate, timeout=10.0)` on that stream

Options: `--lab-gateway SPEC` (a shipped gateway profile such as `lasso`, or a GatewaySpec file).
`eventually`, `wait_for_value` and `refute_eventually` are re-exported from `lab.eventually`.

This module loads in every pytest run: Docker, Testcontainers and requests are imported only inside
the fixtures. Fixture names avoid Locust's plugin (`session`, `fastsession`, `host`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from lab.eventually import async_wait_for_value, eventually, refute_eventually, wait_for_value

if TYPE_CHECKING:
    from lab.topology import Lab, TopologySpec
    from lab.topology.event_stream import Event, GatewayEventStream

__all__ = ["async_wait_for_value", "eventually", "refute_eventually", "wait_for_value"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "fault-injection lab")
    group.addoption(
        "--lab-gateway",
        default=None,
        metavar="SPEC",
        help="gateway of the session lab: a shipped adapter (see `lab gateways`) or an adapter file",
    )


@pytest.fixture(scope="session")
def lab_spec(pytestconfig: pytest.Config) -> TopologySpec:
    from lab.topology import TopologySpec, load_gateway_spec

    spec = TopologySpec.with_providers(3)
    gateway = pytestconfig.getoption("--lab-gateway")
    if gateway:
        spec = spec.model_copy(update={"gateway": load_gateway_spec(gateway)})
    return spec


def _docker_client() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.skip(f"Docker is not reachable: {exc}")
    return client


@pytest.fixture(scope="session")
def lab_images() -> Any:
    """The lab's images (an ImageSet), built or found once per session."""
    _docker_client().close()
    from lab.images import ensure_images

    return ensure_images()


@pytest.fixture(scope="session")
def lab_topology(lab_spec: TopologySpec, lab_images: Any) -> Iterator[Lab]:
    from lab.topology import Lab
    from lab.topology.cleanup import remove_lab_resources

    client = _docker_client()
    try:
        swept = remove_lab_resources(client, only_orphans=True)
    finally:
        client.close()
    if swept.removed:
        print(f"\nlab: removed what crashed runs left: {swept.to_dict()}")
    with Lab(lab_spec, images=lab_images, started_by="test session") as lab:
        yield lab


@pytest.fixture
def lab_isolated(lab_topology: Lab) -> Lab:
    lab_topology.heal()
    return lab_topology


@pytest.fixture
def gateway_events(lab_isolated: Lab) -> Iterator[GatewayEventStream]:
    with lab_isolated.events() as stream:
        yield stream


@pytest.fixture
def wait_for_event(gateway_events: GatewayEventStream) -> Callable[..., Event]:
    def wait(predicate: Callable[[Event], bool], timeout: float = 10.0, **kwargs: Any) -> Event:
        return gateway_events.wait_for(predicate, timeout, **kwargs)

    return wait
