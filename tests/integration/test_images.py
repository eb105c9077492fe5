"""The lab's images, built for real (LAB_IMAGE_MODE, else auto: the bootstrap path with no registry), and
started: each runs as a non-root user, the Python images carry the lab and the locustfiles, and the
toxiproxy image answers its REST API on a port published on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from lab.eventually import wait_for_value
from lab.images import IMAGE_NAMES, LABEL_HASH, ImageSet, ensure_images

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(1800)]

RUN_ID = f"test-images-{uuid.uuid4().hex[:8]}"
LABELS = {"lab.managed": "true", "lab.run-id": RUN_ID}


@pytest.fixture(scope="module")
def built() -> tuple[ImageSet, list[str]]:
    lines: list[str] = []
    return ensure_images(progress=lines.append), lines


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    for container in client.containers.list(all=True, filters={"label": f"lab.run-id={RUN_ID}"}):
        container.remove(force=True)
    client.close()


def run_once(client: docker.DockerClient, image: str, entrypoint: list[str], *args: str) -> str:
    output = client.containers.run(
        image, entrypoint=entrypoint, command=list(args), labels=LABELS, remove=True
    )
    return output.decode()


def test_each_image_carries_the_lab_labels_and_latest_points_at_it(
    built: tuple[ImageSet, list[str]], client: docker.DockerClient
) -> None:
    image_set, _ = built
    for name in IMAGE_NAMES:
        ref = getattr(image_set, name)
        image = client.images.get(ref)
        assert image.labels["lab.managed"] == "true"
        assert image.labels["lab.image"] == name
        assert image.labels[LABEL_HASH].startswith(ref.split(":")[1])
        assert client.images.get(f"lab-{name}:latest").id == image.id


def test_a_second_call_rebuilds_nothing_that_did_not_change(built: tuple[ImageSet, list[str]]) -> None:
    first, _ = built
    lines: list[str] = []
    second = ensure_images(first.mode, progress=lines.append)
    assert second.mode == first.mode
    # Other people may edit the source between the two calls: only unchanged images must be reused.
    unchanged = [name for name in IMAGE_NAMES if getattr(second, name) == getattr(first, name)]
    for name in unchanged:
        assert f"{name}: up to date ({getattr(first, name)})" in lines
        assert not any(line.startswith(f"{name}: docker build") for line in lines)
    if len(unchanged) == len(IMAGE_NAMES):
        assert not any("cargo build" in line or "wheels: building" in line for line in lines), lines


@pytest.mark.parametrize("name", ["provider", "gateway", "locust"])
def test_python_images_carry_the_lab_cli_and_run_as_non_root(
    built: tuple[ImageSet, list[str]], client: docker.DockerClient, name: str
) -> None:
    image = getattr(built[0], name)
    help_text = run_once(client, image, ["lab"], "--help")
    assert "provider" in help_text
    assert "gateway" in help_text
    uid, version = run_once(
        client, image, ["python3"], "-c", "import os, sys; print(os.getuid(), '%d.%d' % sys.version_info[:2])"
    ).split()
    assert uid != "0"
    assert version == "3.11"


def test_the_locust_image_loads_the_projects_locustfile(
    built: tuple[ImageSet, list[str]], client: docker.DockerClient
) -> None:
    listing = run_once(client, built[0].locust, ["locust"], "--list").splitlines()
    users = listing[listing.index("Available Users:") + 1 :]
    assert users and users[0].startswith("    "), listing  # at least one User class loaded


def _get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy
    with opener.open(url, timeout=2) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_toxiproxy_image_answers_version_on_a_loopback_port_as_non_root(
    built: tuple[ImageSet, list[str]], client: docker.DockerClient
) -> None:
    image = client.images.get(built[0].toxiproxy)
    assert image.attrs["Config"]["User"].split(":")[0] not in ("", "0", "root")
    container = client.containers.run(
        image.id, detach=True, labels=LABELS, ports={"8474/tcp": ("127.0.0.1", None)}
    )
    try:
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"]["8474/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1"
        version = wait_for_value(
            lambda: _get_json(f"http://127.0.0.1:{binding['HostPort']}/version"),
            timeout=15,
            message="toxiproxy answers GET /version",
        )
        assert isinstance(version, dict)
        assert version["version"]
    finally:
        container.remove(force=True)


def test_the_image_set_is_plain_data(built: tuple[ImageSet, list[str]]) -> None:
    as_dict = dataclasses.asdict(built[0])
    assert set(as_dict) == {*IMAGE_NAMES, "mode"}
    assert as_dict["mode"] in ("official", "bootstrap")
