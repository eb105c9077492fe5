"""Toxiproxy's REST API: endpoints, JSON shapes, status codes and error bodies (Toxiproxy 2.12.0)."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

from .conftest import ProxyFactory
from .support import PROXY_HOST, Api, Upstream, connect, free_port, listen_port, round_trip

pytestmark = pytest.mark.integration

TOXIC_DEFAULTS = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}


TOXIC_KEYS = ("attributes", "name", "type", "stream", "toxicity")


def toxic_fields(toxic: dict[str, Any]) -> dict[str, Any]:
    """The documented fields of a toxic (a server may add others, e.g. a newer Toxiproxy)."""
    assert set(TOXIC_KEYS) <= set(toxic), toxic
    return {key: toxic[key] for key in TOXIC_KEYS}


def unique(prefix: str = "contract") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_error(response: Any, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "status": status}


def test_version_is_json(api: Api) -> None:
    response = api.get("/version")
    assert response.status_code == 200
    version = response.json()["version"]
    assert isinstance(version, str)
    assert version.split(".")[0].isdigit(), version


def test_every_response_carries_a_request_id(api: Api) -> None:
    responses = [api.get("/version"), api.get("/proxies"), api.get(f"/proxies/{unique()}")]
    ids = [r.headers.get("X-Toxiproxy-Request-Id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids are unique"


def test_browsers_are_refused(api: Api) -> None:
    response = api.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
    assert response.status_code == 403


def test_create_proxy_shape_and_real_listen_port(api: Api, make_proxy: ProxyFactory) -> None:
    name = unique()
    proxy = make_proxy("127.0.0.1:9", name=name)
    assert {"name", "listen", "upstream", "enabled", "toxics"} <= set(proxy)
    assert (proxy["name"], proxy["upstream"], proxy["enabled"], proxy["toxics"]) == (
        name,
        "127.0.0.1:9",
        True,
        [],
    )
    assert listen_port(proxy) != 0, "port 0 is replaced by the port actually bound"
    assert api.get(f"/proxies/{name}").json() == proxy
    assert api.get("/proxies").json()[name] == proxy


def test_create_errors(api: Api, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy("127.0.0.1:9")
    assert_error(api.post("/proxies", json={"upstream": "127.0.0.1:9"}), 400, "missing required field: name")
    assert_error(api.post("/proxies", json={"name": unique()}), 400, "missing required field: upstream")
    duplicate = {"name": proxy["name"], "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:0"}
    assert_error(api.post("/proxies", json=duplicate), 409, "proxy already exists")
    bad = api.post("/proxies", data=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("bad request body"), bad.text
    wrong_type = api.post("/proxies", json={"name": 5, "upstream": "127.0.0.1:9"})
    assert wrong_type.status_code == 400


def test_create_on_a_taken_port_is_a_500_and_adds_nothing(api: Api, make_proxy: ProxyFactory) -> None:
    taken = make_proxy("127.0.0.1:9")
    name = unique()
    body = {"name": name, "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:{listen_port(taken)}"}
    response = api.post("/proxies", json=body)
    assert response.status_code == 500, response.text
    assert response.json()["status"] == 500
    assert response.json()["error"]
    assert api.get(f"/proxies/{name}").status_code == 404


def test_create_disabled_does_not_listen(make_proxy: ProxyFactory, echo_upstream: Upstream) -> None:
    listen = f"{PROXY_HOST}:{free_port()}"
    proxy = make_proxy(echo_upstream.address, listen=listen, enabled=False)
    assert (proxy["enabled"], proxy["listen"]) == (False, listen)
    with pytest.raises(ConnectionRefusedError):
        connect(proxy).close()


def test_unknown_proxy_is_404_everywhere(api: Api) -> None:
    name = unique()
    for response in (
        api.get(f"/proxies/{name}"),
        api.patch(f"/proxies/{name}", json={"enabled": False}),
        api.delete(f"/proxies/{name}"),
        api.get(f"/proxies/{name}/toxics"),
        api.post(f"/proxies/{name}/toxics", json={"type": "latency"}),
        api.get(f"/proxies/{name}/toxics/latency_downstream"),
    ):
        assert_error(response, 404, "proxy not found")


def test_patch_is_partial_and_post_updates_too(
    api: Api, make_proxy: ProxyFactory, echo_upstream: Upstream
) -> None:
    proxy = make_proxy(echo_upstream.address)
    path = f"/proxies/{proxy['name']}"
    disabled = api.patch(path, json={"enabled": False})
    assert disabled.status_code == 200
    assert disabled.json() == {**proxy, "enabled": False}
    enabled = api.post(path, json={"enabled": True})  # deprecated but still an update
    assert enabled.status_code == 200
    assert enabled.json() == proxy, "listen and upstream kept, same port bound again"
    moved = api.patch(path, json={"upstream": "127.0.0.1:9"}).json()
    assert (moved["upstream"], moved["listen"], moved["enabled"]) == ("127.0.0.1:9", proxy["listen"], True)
    assert api.patch(path, data=b"").status_code == 400


def test_delete_proxy(api: Api, echo_upstream: Upstream) -> None:
    name = unique()
    created = api.post(
        "/proxies", json={"name": name, "upstream": echo_upstream.address, "listen": f"{PROXY_HOST}:0"}
    )
    assert created.status_code == 201
    response = api.delete(f"/proxies/{name}")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"/proxies/{name}").status_code == 404
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((PROXY_HOST, listen_port(created.json())), timeout=5).close()


@pytest.mark.parametrize("toxic_type", sorted(TOXIC_DEFAULTS))
def test_toxic_defaults(api: Api, make_proxy: ProxyFactory, toxic_type: str) -> None:
    proxy = make_proxy("127.0.0.1:9")
    response = api.post(f"/proxies/{proxy['name']}/toxics", json={"type": toxic_type})
    assert response.status_code == 200, response.text  # 200, not 201
    assert toxic_fields(response.json()) == {
        "attributes": TOXIC_DEFAULTS[toxic_type],
        "name": f"{toxic_type}_downstream",
        "type": toxic_type,
        "stream": "downstream",
        "toxicity": 1.0,
    }


def test_toxic_crud(api: Api, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy("127.0.0.1:9")
    toxics = f"/proxies/{proxy['name']}/toxics"
    assert api.get(toxics).json() == []
    body = {
        "name": "slow",
        "type": "latency",
        "stream": "upstream",
        "toxicity": 0.5,
        "attributes": {"latency": 100},
    }
    created = api.post(toxics, json=body)
    assert created.status_code == 200, created.text
    expected = {**body, "attributes": {"latency": 100, "jitter": 0}}
    assert toxic_fields(created.json()) == expected
    assert toxic_fields(api.get(f"{toxics}/slow").json()) == expected
    assert [toxic_fields(t) for t in api.get(toxics).json()] == [expected]
    assert [toxic_fields(t) for t in api.get(f"/proxies/{proxy['name']}").json()["toxics"]] == [expected]

    merged = api.patch(f"{toxics}/slow", json={"attributes": {"jitter": 10}})
    assert merged.status_code == 200, merged.text
    assert toxic_fields(merged.json()) == {**expected, "attributes": {"latency": 100, "jitter": 10}}
    retoxic = api.post(f"{toxics}/slow", json={"toxicity": 0.25, "type": "timeout", "stream": "downstream"})
    assert toxic_fields(retoxic.json()) == {
        **expected,
        "attributes": {"latency": 100, "jitter": 10},
        "toxicity": 0.25,
    }, "toxicity replaced, type and stream fixed"

    assert_error(api.post(toxics, json=body), 409, "toxic already exists")
    deleted = api.delete(f"{toxics}/slow")
    assert deleted.status_code == 204
    assert_error(api.get(f"{toxics}/slow"), 404, "toxic not found")
    assert_error(api.delete(f"{toxics}/slow"), 404, "toxic not found")
    assert_error(api.patch(f"{toxics}/slow", json={"toxicity": 1}), 404, "toxic not found")


def test_toxic_errors(api: Api, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy("127.0.0.1:9")
    toxics = f"/proxies/{proxy['name']}/toxics"
    assert_error(api.post(toxics, json={"type": "meteor"}), 400, "invalid toxic type")
    assert_error(
        api.post(toxics, json={"type": "latency", "stream": "sideways"}),
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    wrong = api.post(toxics, json={"type": "latency", "attributes": {"latency": "slow"}})
    assert wrong.status_code == 400
    assert wrong.json()["error"].startswith("bad request body"), wrong.text
    assert api.get(toxics).json() == [], "failed creations add nothing"


def test_toxic_names_are_unique_across_streams(api: Api, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy("127.0.0.1:9")
    toxics = f"/proxies/{proxy['name']}/toxics"
    assert api.post(toxics, json={"name": "t", "type": "noop", "stream": "upstream"}).status_code == 200
    assert api.post(toxics, json={"name": "t", "type": "noop"}).status_code == 409
    both = [
        api.post(toxics, json={"type": "latency", "stream": stream}).json()["name"]
        for stream in ("upstream", "downstream")
    ]
    assert both == ["latency_upstream", "latency_downstream"]


def test_populate_creates_keeps_and_replaces(api: Api, echo_upstream: Upstream) -> None:
    first, second = unique(), unique()
    items = [
        {"name": first, "upstream": echo_upstream.address, "listen": f"{PROXY_HOST}:0"},
        {"name": second, "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:0", "enabled": False},
    ]
    try:
        response = api.post("/populate", json=items)
        assert response.status_code == 201, response.text
        proxies = {p["name"]: p for p in response.json()["proxies"]}
        assert set(response.json()) == {"proxies"}
        assert (proxies[first]["enabled"], proxies[second]["enabled"]) == (True, False)

        api.post(f"/proxies/{first}/toxics", json={"type": "latency"})
        same = [{**items[0], "listen": proxies[first]["listen"]}]
        assert api.post("/populate", json=same).status_code == 201
        kept = api.get(f"/proxies/{first}").json()
        assert [t["name"] for t in kept["toxics"]] == ["latency_downstream"], "unchanged proxy is kept"

        changed = [{**same[0], "upstream": "127.0.0.1:9"}]
        assert api.post("/populate", json=changed).status_code == 201
        replaced = api.get(f"/proxies/{first}").json()
        assert (replaced["upstream"], replaced["toxics"]) == ("127.0.0.1:9", []), "changed proxy is replaced"
        assert replaced["listen"] == proxies[first]["listen"]
    finally:
        for name in (first, second):
            api.delete(f"/proxies/{name}")


def test_populate_validates_everything_first(api: Api) -> None:
    first = unique()
    items = [
        {"name": first, "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:0"},
        {"upstream": "127.0.0.1:9"},
    ]
    response = api.post("/populate", json=items)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["status"]) == ("missing required field: name at proxy 2", 400)
    assert api.get(f"/proxies/{first}").status_code == 404, "nothing was created"
    assert api.post("/populate", json={"name": "x"}).status_code == 400, "the body must be an array"


def test_populate_reports_what_it_created_before_a_failure(api: Api, make_proxy: ProxyFactory) -> None:
    taken = make_proxy("127.0.0.1:9")
    ok, failing = unique(), unique()
    items = [
        {"name": ok, "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:0"},
        {"name": failing, "upstream": "127.0.0.1:9", "listen": f"{PROXY_HOST}:{listen_port(taken)}"},
    ]
    try:
        response = api.post("/populate", json=items)
        assert response.status_code == 500, response.text
        body = response.json()
        assert body["status"] == 500
        assert body["error"]
        assert [p["name"] for p in body["proxies"]] == [ok]
        assert api.get(f"/proxies/{failing}").status_code == 404
    finally:
        api.delete(f"/proxies/{ok}")


def test_reset_enables_proxies_and_removes_toxics(
    api: Api, make_proxy: ProxyFactory, echo_upstream: Upstream
) -> None:
    proxy = make_proxy(echo_upstream.address)
    path = f"/proxies/{proxy['name']}"
    api.post(f"{path}/toxics", json={"type": "latency", "attributes": {"latency": 1000}})
    api.post(f"{path}/toxics", json={"type": "bandwidth", "stream": "upstream"})
    assert api.patch(path, json={"enabled": False}).json()["enabled"] is False
    response = api.post("/reset")
    assert response.status_code == 204
    after = api.get(path).json()
    assert (after["enabled"], after["toxics"], after["listen"]) == (True, [], proxy["listen"])
    with connect(after) as sock:
        assert round_trip(sock) < 0.9, "latency removed"  # it was 1 s
