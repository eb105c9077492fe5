"""The web UI's Faults tab: its fault API against a fake Toxiproxy/provider, and its Flask routes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from lab.record import iter_events
from lab.webui import install_faults_tab
from lab.webui.faults import FaultAPI, FaultRequestError, providers_from_env


class FakeLab(BaseHTTPRequestHandler):
    """Answers like Toxiproxy and a provider's control API; remembers every call."""

    calls: ClassVar[list[tuple[str, str, Any]]] = []
    behavior: ClassVar[Any] = {"type": "healthy"}

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = orjson.loads(self.rfile.read(length)) if length else None
        FakeLab.calls.append((self.command, self.path, body))
        if self.path.endswith("/_lab/behavior"):
            if self.command == "PUT":
                FakeLab.behavior = body
            payload: Any = FakeLab.behavior
        else:
            payload = {"name": "x", **(body or {})}
        data = orjson.dumps(payload) if self.command != "DELETE" else b""
        self.send_response(204 if self.command == "DELETE" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_lab() -> Iterator[str]:
    FakeLab.calls, FakeLab.behavior = [], {"type": "healthy"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLab)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def make_api(url: str, tmp_path: Path) -> FaultAPI:
    env = {
        "LAB_TOXIPROXY_URL": url,
        "LAB_PROVIDERS": f"alpha=alpha_http,alpha_ws,{url};beta=beta_http,,",
        "LAB_RUN_DIR": str(tmp_path),
    }
    return FaultAPI.from_env(env)


def test_providers_from_either_form() -> None:
    plain = providers_from_env(
        {"LAB_PROVIDERS": "a=a_http,a_ws,http://c:1;b=b_http", "LAB_CONTAINERS": "a=lab-a"}
    )
    assert [(p.id, p.proxies, p.control_url, p.container) for p in plain] == [
        ("a", {"http": "a_http", "ws": "a_ws"}, "http://c:1", "lab-a"),
        ("b", {"http": "b_http"}, None, None),
    ]
    as_json = providers_from_env(
        {"LAB_PROVIDERS": '[{"id": "a", "proxies": {"http": "p"}, "container": "c"}]'}
    )
    assert as_json[0].proxies == {"http": "p"} and as_json[0].container == "c"


def test_toxic_cut_and_behaviour_are_applied_lifted_and_recorded(fake_lab: str, tmp_path: Path) -> None:
    api = make_api(fake_lab, tmp_path)
    toxic = api.apply("alpha", "latency", {"latency": "300ms", "stream": "downstream"})
    posts = [(path, body) for method, path, body in FakeLab.calls if method == "POST"]
    assert [path for path, _ in posts] == ["/proxies/alpha_http/toxics", "/proxies/alpha_ws/toxics"]
    assert posts[0][1]["type"] == "latency" and posts[0][1]["attributes"] == {"latency": 300, "jitter": 0}
    assert posts[0][1]["name"] == "webui-1"  # each fault its own toxic: two latencies may coexist
    cut = api.apply("alpha", "cut", {"transport": "http"})
    assert FakeLab.calls[-1] == ("POST", "/proxies/alpha_http", {"enabled": False})
    behaviour = api.apply("alpha", "behavior", {"behavior": {"type": "always_fail"}})
    assert FakeLab.behavior["type"] == "always_fail"  # validated as a scenario's, defaults filled in
    assert [f["fault_id"] for f in api.state()["active"]] == [toxic, cut, behaviour]

    assert api.lift_all() == []
    assert FakeLab.behavior == {"type": "healthy"}
    assert ("POST", "/proxies/alpha_http", {"enabled": True}) in FakeLab.calls
    assert [m for m, p, _ in FakeLab.calls if p.startswith("/proxies/alpha_ws/toxics/")] == ["DELETE"]
    events = list(iter_events(tmp_path, "faults"))
    assert [(e["event"], e["action"]) for e in events] == [
        ("start", "latency"), ("start", "cut"), ("start", "behavior"),
        ("end", "behavior"), ("end", "cut"), ("end", "latency"),
    ]  # fmt: skip
    assert {e["source"] for e in events} == {"webui"}


@pytest.mark.parametrize(
    ("target", "action", "params", "message"),
    [
        ("zeta", "cut", {}, "no provider or proxy named 'zeta'"),
        ("beta", "cut", {"transport": "ws"}, "beta has no ws proxy"),
        ("alpha", "latency", {"latency": "slow"}, r"action.latency: expected a duration like '500ms'"),
        ("alpha", "latency", {"latency": -0.3}, r"action.latency: expected a duration .* \(not negative\)"),
        (
            "alpha",
            "latency",
            {"latency": "99999999999999999999h"},
            r"action.latency: .* 9223372036854775807 ms",
        ),
        ("alpha", "latency", {"latency": 1, "stream": "sideways"}, "action.stream: expected 'upstream' or"),
        ("alpha", "latency", {"latency": 1, "colour": "red"}, "action.colour: unknown field 'colour'"),
        ("alpha", "slicer", {"average_size": 4, "size_variation": 4}, "action.size_variation: .* panics"),
        ("alpha", "kill", {}, "no container known for 'alpha'"),
        ("alpha", "behavior", {"behavior": {"no": "type"}}, "action.behavior"),
        ("gateway", "cut", {}, "cut applies to providers, not the gateway"),
        ("alpha", "explode", {}, "unknown action 'explode'; expected one of: bandwidth"),
        ("alpha", "flap", {"interval": 2, "down": 1}, "unknown action 'flap'"),  # a schedule: timelines only
    ],
)
def test_bad_requests_are_refused(
    fake_lab: str, tmp_path: Path, target: str, action: str, params: dict, message: str
) -> None:
    api = make_api(fake_lab, tmp_path)
    with pytest.raises(FaultRequestError, match=message):
        api.apply(target, action, params)
    assert api.state()["active"] == []


class FakeWebUI:
    def __init__(self) -> None:
        from flask import Flask

        self.app = Flask("test")
        self.template_args: dict[str, Any] = {}

    @staticmethod
    def auth_required_if_enabled(view: Any) -> Any:
        return view


def test_routes_serve_the_page_and_the_api(fake_lab: str, tmp_path: Path) -> None:
    web_ui = FakeWebUI()
    install_faults_tab(web_ui, api=make_api(fake_lab, tmp_path))

    @web_ui.app.route("/stats/requests")
    def stats() -> Any:  # Locust's own route, which the tab extends
        return {"stats": []}

    client = web_ui.app.test_client()
    page = client.get("/lab/faults")
    assert page.status_code == 200 and b"<h1>Faults</h1>" in page.data
    applied = client.post("/lab/faults/api/apply", json={"target": "alpha", "action": "cut", "params": {}})
    assert applied.status_code == 200 and applied.get_json()["fault_id"] == "webui-1"
    refused = client.post("/lab/faults/api/apply", json={"target": "nope", "action": "cut"})
    assert refused.status_code == 400 and "no provider or proxy named 'nope'" in refused.get_json()["error"]
    negative = client.post(
        "/lab/faults/api/apply", json={"target": "alpha", "action": "latency", "params": {"latency": "-5ms"}}
    )
    assert negative.status_code == 400 and negative.get_json()["error"].startswith("action.latency: expected")
    actions = {a["type"]: a for a in client.get("/lab/faults/api/actions").get_json()}
    assert {"latency", "cut", "kill", "behavior", "toxic"} <= set(actions) and "flap" not in actions
    assert actions["kill"]["targets"] == ["gateway", "provider"] and actions["cut"]["takes_down"]
    assert "latency" in actions["latency"]["schema"]["properties"]
    table = client.get("/stats/requests").get_json()["extended_stats"]
    assert table[0]["key"] == "lab-faults" and table[0]["data"][0]["fault"] == "webui-1"
    assert web_ui.template_args["extended_tabs"] == [{"title": "Faults", "key": "lab-faults"}]
    assert client.post("/lab/faults/api/lift", json={"fault_id": "webui-1"}).get_json()["ok"]
    assert client.post("/lab/faults/api/lift", json={"fault_id": "webui-1"}).status_code == 400
    assert client.get("/lab/faults/api/state").get_json()["active"] == []


# --- containers: kill/restart through the compose lab's control service (lab.control) ----------------------


def test_the_gateway_container_from_the_environment_can_be_killed_and_started(
    fake_lab: str, tmp_path: Path
) -> None:
    from lab.control.service import ControlService
    from tests.unit.fake_docker import FakeContainer, FakeDocker, compose_labels, serve_control

    gateway = FakeContainer("lab_gateway_1", compose_labels("lab", "gateway"))
    decoy = FakeContainer("gateway", {})  # a container of that name outside the project: never touched
    with serve_control(ControlService(FakeDocker([decoy, gateway]), "lab", frozenset({"gateway"}))) as url:
        env = {
            "LAB_TOXIPROXY_URL": fake_lab,
            "LAB_PROVIDERS": "alpha=alpha_http,,",
            "LAB_CONTAINERS": "gateway=gateway",
            "LAB_CONTROL_URL": url,
        }
        api = FaultAPI.from_env(env, run_dir=tmp_path)
        assert api.state()["gateway_container"] is True
        fault_id = api.apply("gateway", "kill", {})
        api.lift(fault_id)
    assert [action for action, _ in gateway.actions] == ["kill", "start"]
    assert decoy.actions == []
    assert [(e["event"], e["target"], e["source"]) for e in iter_events(tmp_path, "faults")] == [
        ("start", "gateway", "webui"), ("end", "gateway", "webui"),
    ]  # fmt: skip


def test_without_a_control_service_container_faults_are_refused_with_the_reason(
    fake_lab: str, tmp_path: Path
) -> None:
    env = {"LAB_TOXIPROXY_URL": fake_lab, "LAB_PROVIDERS": "alpha=alpha_http,,", "LAB_CONTAINERS": "alpha=p1"}
    api = FaultAPI.from_env(env, run_dir=tmp_path)
    assert api.state()["providers"][0]["container"] is False
    with pytest.raises(FaultRequestError, match="LAB_CONTROL_URL"):
        api.apply("alpha", "kill", {})


def test_the_compose_labs_faults_tab_names_real_proxies_services_and_a_writable_run_dir() -> None:
    import yaml

    from lab.control import services_from_env

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    env = compose["services"]["locust-master"]["environment"]
    proxies = {p["name"] for p in orjson.loads((root / "lab/images/compose/toxiproxy.json").read_bytes())}
    providers = providers_from_env(env)
    assert [p.id for p in providers] == ["p1", "p2", "p3"]
    assert {name for p in providers for name in p.proxies.values()} == proxies
    # every target's service is one the control service may act on, and the master knows where it is
    control = compose["services"]["control"]
    services = {name for item in control["command"][1::2] for name in item.split(",")}
    assert control["command"][::2] == ["--service"] * len(control["command"][::2])
    assert set(services_from_env(env)) == {"p1", "p2", "p3", "gateway"}
    assert set(services_from_env(env).values()) == services
    assert services < set(compose["services"]) and not services & {
        "control",
        "locust-master",
        "locust-worker",
    }
    assert env["LAB_CONTROL_URL"] == f"http://control:{control['environment']['LAB_CONTROL_PORT']}"
    assert env["LAB_TOXIPROXY_URL"] == "http://toxiproxy:8474"
    # the run dir lies in the volume mounted at the image user's home, which the user owns
    for service in ("locust-master", "locust-worker"):
        assert "lab-reports:/home/lab" in compose["services"][service]["volumes"]
        assert compose["services"][service]["environment"]["LAB_RUN_DIR"].startswith("/home/lab/")
