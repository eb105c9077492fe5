"""The lab's own client (lab.faults.ToxiproxyClient, over toxiproxy-python) against the server under test:
what it adds to the library (toxic update, checked answers, its own host and port) works on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from lab.faults import Toxic, ToxiproxyClient, ToxiproxyError

from .support import Upstream, connect, round_trip

pytestmark = pytest.mark.integration


def test_add_update_and_remove_a_toxic_on_a_live_connection(
    toxiproxy_url: str, make_proxy: Any, echo_upstream: Upstream
) -> None:
    from toxiproxy.api import APIConsumer

    shared = (APIConsumer.host, APIConsumer.port)
    client = ToxiproxyClient.from_url(toxiproxy_url, timeout=10)
    proxy = make_proxy(echo_upstream.address)
    name = proxy["name"]
    held = client.add_toxic(name, Toxic(type="latency", latency=600))
    assert held["attributes"] == {"latency": 600, "jitter": 0}
    with connect(proxy) as sock:
        assert round_trip(sock) >= 0.59
        client.update_toxic(name, Toxic(type="latency", latency=0))
        assert round_trip(sock) < 0.5, "updated on a live connection"
    client.remove_toxic(name, "latency_downstream")
    assert client.toxics(name) == []
    with pytest.raises(ToxiproxyError, match="NotFound"):
        client.remove_toxic(name, "latency_downstream")
    client.set_enabled(name, False)
    assert client.proxies()[name].enabled is False
    client.set_enabled(name, True)
    assert (APIConsumer.host, APIConsumer.port) == shared  # the library's class was left alone
