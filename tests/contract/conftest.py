"""Fixtures of the contract suite: the server under test, an API client, proxies cleaned up after use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from .support import PROXY_HOST, Api, Upstream, echo, local_server

ProxyFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def toxiproxy_url() -> Iterator[str]:
    """TOXIPROXY_URL if set (the official image, a container), else the lab's server built and started."""
    url = os.environ.get("TOXIPROXY_URL")
    if url:
        yield url.rstrip("/")
        return
    with local_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def api(toxiproxy_url: str) -> Iterator[Api]:
    with requests.Session() as session:
        yield Api(toxiproxy_url, session)


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[Upstream]:
    upstream = Upstream(echo)
    yield upstream
    upstream.close()


@pytest.fixture
def make_proxy(api: Api) -> Iterator[ProxyFactory]:
    """Creates proxies with unique names (listening on an ephemeral port) and deletes them afterwards."""
    created: list[str] = []

    def make(upstream: str, *, name: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"name": name or f"contract-{uuid.uuid4().hex[:10]}", "upstream": upstream}
        body.setdefault("listen", f"{PROXY_HOST}:0")
        body.update(fields)
        response = api.post("/proxies", json=body)
        assert response.status_code == 201, response.text
        created.append(body["name"])
        return response.json()

    yield make
    for name in created:
        api.delete(f"/proxies/{name}")


@pytest.fixture
def echo_proxy(make_proxy: ProxyFactory, echo_upstream: Upstream) -> dict[str, Any]:
    return make_proxy(echo_upstream.address)
