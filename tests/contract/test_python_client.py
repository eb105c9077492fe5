"""toxiproxy-python 0.1.1, the lab's client library, against the server under test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from .support import PROXY_HOST, Api, Upstream, connect, round_trip

pytestmark = pytest.mark.integration


@pytest.fixture
def client(toxiproxy_url: str) -> Iterator[object]:
    """A toxiproxy-python server object pointed at the server under test (its address is global)."""
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    saved = (APIConsumer.host, APIConsumer.port)
    url = urlsplit(toxiproxy_url)
    server = Toxiproxy()
    server.update_api_consumer(url.hostname, url.port or 80)
    yield server
    server.update_api_consumer(*saved)


def test_create_proxy_add_toxic_destroy(client: object, api: Api, echo_upstream: Upstream) -> None:
    from toxiproxy import Toxiproxy
    from toxiproxy.exceptions import ProxyExists

    assert isinstance(client, Toxiproxy)
    name = f"contract-py-{uuid.uuid4().hex[:8]}"
    try:
        assert client.running()
        assert json.loads(client.version())["version"]
        # listen must be given as HOST:PORT (the library's default, 127.0.0.1:0, is unusable via Docker).
        proxy = client.create(upstream=echo_upstream.address, name=name, listen=f"{PROXY_HOST}:0")
        assert proxy.enabled is True
        assert not proxy.listen.endswith(":0")
        assert name in client.proxies()
        with pytest.raises(ProxyExists):
            client.create(upstream=echo_upstream.address, name=name, listen=f"{PROXY_HOST}:0")

        proxy.add_toxic(type="latency", attributes={"latency": 600})
        toxics = proxy.toxics()
        assert list(toxics) == ["latency_downstream"]
        assert toxics["latency_downstream"].attributes == {"latency": 600, "jitter": 0}
        with connect({"listen": proxy.listen}) as sock:
            assert round_trip(sock) >= 0.59
            assert proxy.destroy_toxic("latency_downstream")
            assert round_trip(sock) < 0.5
        assert proxy.toxics() == {}

        proxy.add_toxic(type="reset_peer", stream="upstream", toxicity=0.5, attributes={"timeout": 100})
        assert proxy.get_toxic("reset_peer_upstream").toxicity == 0.5
        with proxy.down():
            assert api.get(f"/proxies/{name}").json()["enabled"] is False
        assert api.get(f"/proxies/{name}").json()["enabled"] is True
        assert client.reset()
        assert proxy.toxics() == {}

        assert proxy.destroy()
        assert client.get_proxy(name) is None
    finally:
        api.delete(f"/proxies/{name}")
