"""Each toxic's effect on bytes and timing through a proxy to a local upstream.

Timing bounds are generous upwards (a busy 2-core machine) and tight enough downwards that every test
fails when the toxic is not applied: an untoxic round trip on loopback takes about a millisecond.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ProxyFactory
from .support import (
    Api,
    Upstream,
    connect,
    nothing_arrives,
    read_until_closed,
    recv_exactly,
    round_trip,
    send_and_close,
)

pytestmark = pytest.mark.integration

SLACK = 2.0  # seconds of scheduling delay tolerated on top of any expected duration
FAST = 0.5  # a round trip without a delaying toxic is far below this, even on a loaded machine


def add_toxic(api: Api, proxy: dict[str, Any], type_: str, stream: str = "downstream", **fields: Any) -> str:
    body = {"type": type_, "stream": stream, **fields}
    response = api.post(f"/proxies/{proxy['name']}/toxics", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def remove_toxic(api: Api, proxy: dict[str, Any], name: str) -> None:
    assert api.delete(f"/proxies/{proxy['name']}/toxics/{name}").status_code == 204


@pytest.fixture
def greeting_proxy(make_proxy: ProxyFactory) -> Iterator[dict[str, Any]]:
    """A proxy to an upstream that sends b"hello" and closes at once."""
    upstream = Upstream(send_and_close(b"hello"))
    yield make_proxy(upstream.address)
    upstream.close()


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_delays_each_round_trip(api: Api, echo_proxy: dict[str, Any], stream: str) -> None:
    add_toxic(api, echo_proxy, "latency", stream, attributes={"latency": 300})
    with connect(echo_proxy) as sock:
        for _ in range(2):
            assert 0.29 <= round_trip(sock) <= 0.3 + SLACK


def test_latency_jitter_spreads_delays(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "latency", attributes={"latency": 200, "jitter": 100})
    with connect(echo_proxy) as sock:
        delays = [round_trip(sock) for _ in range(6)]
    assert all(0.095 <= d <= 0.3 + SLACK for d in delays), delays
    assert max(delays) - min(delays) > 0.01, f"jitter varies the delay: {delays}"


def test_toxic_changes_apply_to_open_connections(api: Api, echo_proxy: dict[str, Any]) -> None:
    with connect(echo_proxy) as sock:
        assert round_trip(sock) < FAST
        name = add_toxic(api, echo_proxy, "latency", attributes={"latency": 600})
        assert round_trip(sock) >= 0.59, "added to a live connection"
        api.patch(f"/proxies/{echo_proxy['name']}/toxics/{name}", json={"attributes": {"latency": 900}})
        assert round_trip(sock) >= 0.89, "updated on a live connection"
        remove_toxic(api, echo_proxy, name)
        assert round_trip(sock) < FAST, "removed from a live connection"


def test_toxics_chain_in_order_and_removal_keeps_the_others(api: Api, echo_proxy: dict[str, Any]) -> None:
    first = add_toxic(api, echo_proxy, "latency", name="first", attributes={"latency": 150})
    add_toxic(api, echo_proxy, "latency", name="second", attributes={"latency": 300})
    add_toxic(api, echo_proxy, "noop", "upstream", name="up")
    listed = api.get(f"/proxies/{echo_proxy['name']}/toxics").json()
    assert [t["name"] for t in listed] == ["up", "first", "second"], "upstream chain, then downstream"
    with connect(echo_proxy) as sock:
        assert round_trip(sock) >= 0.44, "both latencies apply"
        remove_toxic(api, echo_proxy, first)
        assert round_trip(sock) >= 0.29, "the remaining toxic still applies"


def test_rewiring_under_traffic_keeps_every_byte_in_order(api: Api, echo_proxy: dict[str, Any]) -> None:
    """Connections exchange numbered messages while toxics are added, updated and removed."""
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            with connect(echo_proxy) as sock:
                for message in range(40):
                    payload = f"<{number}:{message}>".encode() * 50
                    round_trip(sock, payload)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    toxics = f"/proxies/{echo_proxy['name']}/toxics"
    for _ in range(10):
        add_toxic(api, echo_proxy, "latency", name="lat", attributes={"latency": 5, "jitter": 5})
        slices = {"average_size": 7, "size_variation": 3, "delay": 50}
        add_toxic(api, echo_proxy, "slicer", "upstream", name="cut", attributes=slices)
        add_toxic(api, echo_proxy, "bandwidth", name="bw", attributes={"rate": 1000})
        api.patch(f"{toxics}/lat", json={"attributes": {"latency": 1}})
        for name in ("cut", "lat", "bw"):
            remove_toxic(api, echo_proxy, name)
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert not errors, errors


def test_removing_a_toxic_does_not_lose_data_in_flight(api: Api, echo_proxy: dict[str, Any]) -> None:
    name = add_toxic(api, echo_proxy, "latency", attributes={"latency": 3000})
    with connect(echo_proxy) as sock:
        started = time.perf_counter()
        sock.sendall(b"in flight")
        assert nothing_arrives(sock, within=0.3), "the chunk is held by the latency toxic"
        remove_toxic(api, echo_proxy, name)
        assert recv_exactly(sock, 9) == b"in flight"
        assert time.perf_counter() - started < 2.5, "the delayed chunk is released when the toxic goes"
        assert round_trip(sock) < FAST


def test_bandwidth_paces_output(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "bandwidth", attributes={"rate": 50})  # KB/s: 50 000 bytes take 1 s
    payload = bytes(range(256)) * 196 + bytes(24)  # 50 200 bytes
    with connect(echo_proxy) as sock:
        started = time.perf_counter()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        elapsed = time.perf_counter() - started
    assert 0.85 <= elapsed <= 1.0 + SLACK, elapsed


def test_bandwidth_zero_stalls_until_removed(api: Api, echo_proxy: dict[str, Any]) -> None:
    name = add_toxic(api, echo_proxy, "bandwidth", attributes={"rate": 0})
    with connect(echo_proxy) as sock:
        sock.sendall(b"held")
        assert nothing_arrives(sock, within=0.5), "rate 0 lets nothing through"
        remove_toxic(api, echo_proxy, name)
        assert recv_exactly(sock, 4) == b"held", "held data is delivered once the toxic is removed"


def test_timeout_drops_data_and_closes_after_the_timeout(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "timeout", attributes={"timeout": 500})
    with connect(echo_proxy) as sock:
        started = time.perf_counter()
        sock.sendall(b"dropped")
        data, how = read_until_closed(sock)
        elapsed = time.perf_counter() - started
    assert data == b"", "no data passes a timeout toxic"
    assert how == "eof"
    assert 0.45 <= elapsed <= 0.5 + SLACK, elapsed


def test_timeout_zero_never_closes_and_removing_it_closes(api: Api, echo_proxy: dict[str, Any]) -> None:
    name = add_toxic(api, echo_proxy, "timeout", attributes={"timeout": 0})
    with connect(echo_proxy) as sock:
        sock.sendall(b"dropped")
        assert nothing_arrives(sock, within=0.5)
        remove_toxic(api, echo_proxy, name)
        data, _how = read_until_closed(sock)
    assert data == b""


def test_limit_data_closes_after_n_bytes(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "limit_data", attributes={"bytes": 100})
    with connect(echo_proxy) as sock:
        sock.sendall(bytes(range(250)))
        data, how = read_until_closed(sock)
    assert data == bytes(range(100))
    assert how == "eof"


def test_slicer_splits_writes(api: Api, echo_proxy: dict[str, Any]) -> None:
    # size_variation must be above 0 and below average_size: Toxiproxy's slicer panics otherwise.
    slices = {"average_size": 10, "size_variation": 2, "delay": 20_000}
    add_toxic(api, echo_proxy, "slicer", attributes=slices)
    payload = bytes(range(100))
    with connect(echo_proxy) as sock:
        started = time.perf_counter()
        sock.sendall(payload)
        pieces = []
        while sum(map(len, pieces)) < len(payload):
            piece = sock.recv(1024)
            assert piece, "closed early"
            pieces.append(piece)
        elapsed = time.perf_counter() - started
    assert b"".join(pieces) == payload
    assert len(pieces) >= 4, f"arrived in {len(pieces)} reads: {list(map(len, pieces))}"
    assert max(map(len, pieces)) < len(payload)
    assert elapsed >= 0.15, "ten slices 20 ms apart"


def test_slow_close_delays_the_close(api: Api, greeting_proxy: dict[str, Any]) -> None:
    add_toxic(api, greeting_proxy, "slow_close", attributes={"delay": 600})
    started = time.perf_counter()
    with connect(greeting_proxy) as sock:
        data, how = read_until_closed(sock)
        elapsed = time.perf_counter() - started
    assert (data, how) == (b"hello", "eof")
    assert 0.55 <= elapsed <= 0.6 + SLACK, elapsed


def test_without_slow_close_the_close_is_prompt(greeting_proxy: dict[str, Any]) -> None:
    started = time.perf_counter()
    with connect(greeting_proxy) as sock:
        assert read_until_closed(sock) == (b"hello", "eof")
    assert time.perf_counter() - started < FAST


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_reset_peer_resets_the_connection(api: Api, echo_proxy: dict[str, Any], stream: str) -> None:
    add_toxic(api, echo_proxy, "reset_peer", stream, attributes={"timeout": 300})
    with connect(echo_proxy) as sock:
        started = time.perf_counter()
        sock.sendall(b"x")
        data, how = read_until_closed(sock)
        elapsed = time.perf_counter() - started
    assert how == "reset", f"expected ECONNRESET, got {how} after {data!r}"
    assert data == b""
    assert 0.28 <= elapsed <= 0.3 + SLACK, elapsed


def test_disabled_proxy_refuses_and_closes_connections(api: Api, echo_proxy: dict[str, Any]) -> None:
    path = f"/proxies/{echo_proxy['name']}"
    with connect(echo_proxy) as sock:
        assert round_trip(sock) < FAST
        assert api.patch(path, json={"enabled": False}).status_code == 200
        _data, how = read_until_closed(sock)
        assert how in {"eof", "reset"}
    with pytest.raises(ConnectionRefusedError):
        connect(echo_proxy).close()
    assert api.patch(path, json={"enabled": True}).json()["listen"] == echo_proxy["listen"]
    with connect(echo_proxy) as sock:
        assert round_trip(sock) < FAST


def test_toxicity_zero_never_applies(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "latency", toxicity=0.0, attributes={"latency": 1000})
    for _ in range(5):  # rolled per connection: every connection must be spared
        with connect(echo_proxy) as sock:
            assert round_trip(sock) < FAST


def test_noop_passes_bytes_unchanged(api: Api, echo_proxy: dict[str, Any]) -> None:
    add_toxic(api, echo_proxy, "noop")
    add_toxic(api, echo_proxy, "noop", "upstream")
    payload = bytes(range(256)) * 400
    with connect(echo_proxy) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_upstream_unreachable_closes_the_client(make_proxy: ProxyFactory) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    proxy = make_proxy(dead)
    with connect(proxy) as sock:
        data, how = read_until_closed(sock)
    assert data == b""
    assert how in {"eof", "reset"}
