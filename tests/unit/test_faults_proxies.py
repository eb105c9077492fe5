"""ToxiproxyClient against a small in-process fake of Toxiproxy's REST API (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lab.faults import Toxic, ToxiproxyClient, ToxiproxyError


class FakeToxiproxy:
    """Enough of Toxiproxy 2.x to exercise the client; `fail_next` forces the next answer's status."""

    def __init__(self) -> None:
        self.proxies: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _send(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else None
                fake.requests.append((method, self.path, body))
                if fake.fail_next is not None:
                    status, fake.fail_next = fake.fail_next, None
                    return self._send(status, {"error": "forced failure", "status": status})
                self._send(*fake.route(method, self.path, body))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        not_found = (404, {"error": "proxy not found", "status": 404})
        if path == "/version":
            return 200, {"version": "2.12.0"}
        if path == "/reset" and method == "POST":
            for proxy in self.proxies.values():
                proxy["enabled"], proxy["toxics"] = True, []
            return 204, None
        if path == "/proxies":
            if method == "GET":
                return 200, self.proxies
            if body["name"] in self.proxies:
                return 409, {"error": "proxy already exists", "status": 409}
            self.proxies[body["name"]] = {**body, "enabled": body.get("enabled", True), "toxics": []}
            return 201, self.proxies[body["name"]]
        match = re.fullmatch(r"/proxies/([^/]+)(/toxics)?(?:/([^/]+))?", path)
        if match is None or match.group(1) not in self.proxies:
            return not_found
        proxy, toxics, toxic_name = self.proxies[match.group(1)], match.group(2), match.group(3)
        if not toxics:
            proxy.update(body or {})
            return 200, proxy
        if toxic_name is None:
            if method == "GET":
                return 200, proxy["toxics"]
            if any(t["name"] == body["name"] for t in proxy["toxics"]):
                return 409, {"error": "toxic already exists", "status": 409}
            proxy["toxics"].append(body)
            return 200, body
        toxic = next((t for t in proxy["toxics"] if t["name"] == toxic_name), None)
        if toxic is None:
            return 404, {"error": "toxic not found", "status": 404}
        if method == "DELETE":
            proxy["toxics"].remove(toxic)
            return 204, None
        toxic["attributes"].update(body.get("attributes") or {})
        toxic["toxicity"] = body.get("toxicity", toxic["toxicity"])
        return 200, toxic


@pytest.fixture
def fake() -> Iterator[FakeToxiproxy]:
    server = FakeToxiproxy()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def client(fake: FakeToxiproxy) -> ToxiproxyClient:
    return ToxiproxyClient("127.0.0.1", fake.port, timeout=5)


def test_version(client: ToxiproxyClient):
    assert client.version() == "2.12.0"


def test_proxies_listen_on_all_interfaces_of_the_container(client: ToxiproxyClient, fake: FakeToxiproxy):
    state = client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    assert state.listen == "0.0.0.0:8666" and state.upstream == "p1:8545" and state.enabled
    assert fake.proxies["p1_http"]["listen"] == "0.0.0.0:8666"
    assert set(client.proxies()) == {"p1_http"}


def test_an_existing_proxy_is_an_error_naming_it(client: ToxiproxyClient):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    with pytest.raises(ToxiproxyError, match=r"create proxy 'p1_http'.*ProxyExists"):
        client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")


def test_add_toxic_returns_what_the_server_holds(client: ToxiproxyClient, fake: FakeToxiproxy):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    held = client.add_toxic("p1_http", Toxic(type="latency", latency=200, jitter=10))
    assert held["attributes"] == {"latency": 200, "jitter": 10}
    assert fake.requests[-1] == (
        "POST",
        "/proxies/p1_http/toxics",
        Toxic(type="latency", latency=200, jitter=10).to_api(),
    )
    assert [t["name"] for t in client.toxics("p1_http")] == ["latency_downstream"]


def test_update_changes_attributes_in_place(client: ToxiproxyClient, fake: FakeToxiproxy):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    client.add_toxic("p1_http", Toxic(type="latency", latency=200))
    client.update_toxic("p1_http", Toxic(type="latency", latency=50, toxicity=0.5))
    method, path, body = fake.requests[-1]
    assert (method, path) == ("POST", "/proxies/p1_http/toxics/latency_downstream")
    assert body == {"attributes": {"latency": 50, "jitter": 0}, "toxicity": 0.5}
    assert fake.proxies["p1_http"]["toxics"][0]["attributes"]["latency"] == 50


def test_remove_toxic_and_missing_toxics(client: ToxiproxyClient):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    client.add_toxic("p1_http", Toxic(type="timeout", timeout=5))
    client.remove_toxic("p1_http", "timeout_downstream")
    assert client.toxics("p1_http") == []
    with pytest.raises(ToxiproxyError, match=r"remove toxic 'timeout_downstream'.*NotFound"):
        client.remove_toxic("p1_http", "timeout_downstream")


def test_a_server_error_is_raised_not_swallowed(client: ToxiproxyClient, fake: FakeToxiproxy):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    fake.fail_next = 500
    with pytest.raises(ToxiproxyError, match=r"HTTP 500.*forced failure"):
        client.add_toxic("p1_http", Toxic(type="latency", latency=1))
    fake.fail_next = 500
    with pytest.raises(ToxiproxyError, match="create proxy 'p2_http'"):
        client.create_proxy("p2_http", listen_port=8667, upstream="p2:8545")
    fake.fail_next = 503
    with pytest.raises(ToxiproxyError, match="reset"):
        client.reset()


def test_disable_enable_and_reset(client: ToxiproxyClient, fake: FakeToxiproxy):
    client.create_proxy("p1_http", listen_port=8666, upstream="p1:8545")
    client.set_enabled("p1_http", False)
    assert client.proxies()["p1_http"].enabled is False
    client.add_toxic("p1_http", Toxic(type="latency", latency=1))
    client.reset()
    state = client.proxies()["p1_http"]
    assert state.enabled is True and state.toxics == ()


def test_two_clients_each_reach_their_own_server(fake: FakeToxiproxy):
    """toxiproxy-python's own objects reach one server per process; each client has its own consumer,
    and the library's shared APIConsumer is left as it was."""
    from toxiproxy.api import APIConsumer

    before = (APIConsumer.host, APIConsumer.port)
    other = FakeToxiproxy()
    other.thread.start()
    try:
        a = ToxiproxyClient("127.0.0.1", fake.port)
        b = ToxiproxyClient("127.0.0.1", other.port)
        a.create_proxy("a_http", listen_port=1, upstream="a:1")
        b.create_proxy("b_http", listen_port=2, upstream="b:2")
        assert set(a.proxies()) == {"a_http"} and set(b.proxies()) == {"b_http"}
        assert (APIConsumer.host, APIConsumer.port) == before
    finally:
        other.server.shutdown()
        other.server.server_close()


def test_an_unreachable_server_is_a_clear_error():
    client = ToxiproxyClient("127.0.0.1", 9, timeout=1)  # the discard port: nothing listens
    with pytest.raises(ToxiproxyError, match="unreachable"):
        client.version()


def test_from_url_reads_host_and_port():
    client = ToxiproxyClient.from_url("http://toxiproxy:8474", timeout=2)
    assert (client.host, client.port, client.timeout) == ("toxiproxy", 8474, 2)
    assert ToxiproxyClient.from_url("127.0.0.1:9000").url == "http://127.0.0.1:9000"
