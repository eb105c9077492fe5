"""Sessions of the web UI: each swarm start → stop is a run directory of its own, complete for a report."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from lab.faults.journal import fault_event
from lab.record import TableWriter, iter_events, read_table
from lab.webui.faults import FaultAPI
from lab.webui.session import Sessions
from tests.unit.test_load_webui import FakeLab


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_toxiproxy() -> Iterator[str]:
    FakeLab.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLab)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def write_requests(inbox: Path, worker: str, rows: list[tuple[float, bool, float]], seq: int = 1) -> None:
    """A worker's closed part in the inbox: (ts, ok, latency ms) rows."""
    writer = TableWriter(inbox, "requests", writer_id=worker, autoflush=False)
    writer._seq = seq - 1
    for ts, ok, latency in rows:
        writer.append({"ts": ts, "method": "eth_blockNumber", "ok": ok, "latency_ms": latency,
                       "error_class": None if ok else "connection", "transport": "http"})  # fmt: skip
    writer.close()


def event(kind: str, fault_id: str, ts: float, action: str = "latency") -> dict:
    return fault_event(kind, fault_id=fault_id, name=fault_id, action=action, target="p1", ts=ts, params={})


def test_each_start_to_stop_is_a_run_with_its_own_record(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "reports" / "compose", Clock()
    sessions = Sessions(inbox, clock=clock, settings={"methods": {"eth_blockNumber": 1.0}})
    sessions.note_form({"user_count": "20", "spawn_rate": "5", "host": "http://gateway:4000"})
    first = sessions.start({"users": 20, "spawn_rate": None, "host": "http://gateway:4000"})
    t0 = clock.now
    write_requests(inbox, "w1", [(t0 + 0.2, True, 10.0), (t0 + 0.7, True, 30.0), (t0 + 1.5, False, 5.0)])
    sessions.record(event("start", "webui-1", t0 + 1.0))
    assert sessions.file_parts() == 1 and not list((inbox / "requests").glob("part-*"))
    sessions.record(event("end", "webui-1", t0 + 3.0))
    live = first.live(t0 + 4)
    assert live["rows"] == [[0, 2, 0, 20.0, 29.0], [1, 1, 1, None, None]]
    assert live["faults"] == [
        {
            "fault_id": "webui-1",
            "action": "latency",
            "target": "p1",
            "start": 1.0,
            "end": 3.0,
            "failed": False,
        },
    ]
    write_requests(inbox, "w1", [(t0 + 4.0, True, 12.0)], seq=2)  # the last part, closed after the stop
    clock.now += 5
    sessions.stop()
    sessions.file_parts()

    clock.now += 60
    second = sessions.start({"users": 3})
    write_requests(inbox, "w1", [(clock.now + 0.5, True, 8.0)], seq=3)
    sessions.record(event("start", "webui-2", clock.now + 1))
    clock.now += 2
    sessions.stop()

    assert first.path != second.path and first.path.parent == second.path.parent == inbox.parent
    manifest = orjson.loads((first.path / "manifest.json").read_bytes())
    assert manifest["started"] == t0 and manifest["ended"] == t0 + 5 and manifest["outcome"] == "stopped"
    assert manifest["load"]["users"] == 20 and manifest["load"]["spawn_rate"] == 5.0  # the form's
    assert manifest["load"]["form"]["host"] == "http://gateway:4000"
    assert manifest["load"]["settings"] == {"methods": {"eth_blockNumber": 1.0}}
    assert len(read_table(first.path, "requests")) == 4 and len(read_table(second.path, "requests")) == 1
    assert [e["fault_id"] for e in iter_events(first.path, "faults")] == ["webui-1", "webui-1"]
    assert [e["fault_id"] for e in iter_events(second.path, "faults")] == ["webui-2"]


def test_a_part_of_the_same_name_is_never_replaced(tmp_path: Path) -> None:
    inbox = tmp_path / "compose"
    sessions = Sessions(inbox, clock=Clock())
    session = sessions.start()
    write_requests(inbox, "w1", [(1_800_000_000.5, True, 1.0)])
    sessions.file_parts()
    write_requests(inbox, "w1", [(1_800_000_001.5, True, 1.0)])  # a restarted worker reuses its writer id
    sessions.file_parts()
    assert len(list((session.path / "requests").glob("part-*.parquet"))) == 2
    assert len(read_table(session.path, "requests")) == 2


def test_a_session_left_running_by_a_dead_master_is_closed_by_the_next(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "compose", Clock()
    before = Sessions(inbox, clock=clock)
    session = before.start()
    t0 = clock.now
    before.record(event("start", "webui-1", t0 + 1, action="cut"))
    write_requests(inbox, "w1", [(t0 + 7.5, True, 1.0)])  # recorded, not yet filed when the master died

    after = Sessions(inbox, clock=Clock(t0 + 100))
    left = after.recover()
    assert [e["fault_id"] for e in left] == ["webui-1"]
    manifest = orjson.loads((session.path / "manifest.json").read_bytes())
    assert manifest["outcome"] == "interrupted" and manifest["ended"] == pytest.approx(t0 + 7.5)
    end = list(iter_events(session.path, "faults"))[-1]
    assert end["event"] == "end" and end["ts"] == manifest["ended"] and "master stopped" in end["reason"]
    assert len(read_table(session.path, "requests")) == 1
    assert after.latest is not None and not after.latest.running


def test_parts_recorded_before_any_session_belong_to_none(tmp_path: Path) -> None:
    inbox = tmp_path / "compose"
    write_requests(inbox, "old", [(1_700_000_000.0, True, 1.0)])
    sessions = Sessions(inbox, clock=Clock())
    assert sessions.recover() == []
    session = sessions.start()
    sessions.file_parts()
    assert len(read_table(session.path, "requests")) == 0
    assert len(list((inbox / "requests").glob("part-*"))) == 1


def test_the_fault_api_records_into_sessions_only_and_failures_as_failed(tmp_path: Path) -> None:
    from lab.webui import build_report
    from lab.webui.faults import FaultRequestError

    clock = Clock()
    sessions = Sessions(tmp_path / "compose", clock=clock)
    env = {"LAB_TOXIPROXY_URL": "http://127.0.0.1:9", "LAB_PROVIDERS": "p1=p1_http,p1_ws,"}
    api = FaultAPI.from_env(env, sessions=sessions)
    with pytest.raises(FaultRequestError, match="start a swarm first"):
        api.apply("p1", "cut", {})
    session = sessions.start()
    write_requests(tmp_path / "compose", "w1", [(clock.now + 0.5, True, 3.0), (clock.now + 1.5, True, 4.0)])
    with pytest.raises(Exception, match=r"ConnectionError|Connection refused|Max retries"):
        api.apply("p1", "cut", {})  # Toxiproxy unreachable: attempted and failed
    clock.now += 2
    sessions.stop()
    (failed,) = iter_events(session.path, "faults")
    assert (failed["event"], failed["fault_id"], failed["action"]) == ("failed", "webui-failed-1", "cut")
    assert "error" in failed and failed["source"] == "webui"

    answer = build_report(sessions)  # what the Report button does: `lab report` in a process of its own
    assert answer["url"] == f"/lab/faults/sessions/{session.run_id}/report.html"
    summary = orjson.loads((session.path / "summary.json").read_bytes())
    assert not [w for w in summary["warnings"] if "killed run" in w or "no end time" in w]
    assert summary["faults"] == [] and summary["failed_faults"][0]["fault_id"] == "webui-failed-1"


SCENARIO = """\
name: tiny
description: one latency fault on the primary, from the start
topology:
  providers: [{id: primary}, {id: secondary}]
load: {users: 1, duration: 60s}
faults:
  - {id: slow, start: 0s, duration: 50s, target: primary, action: {type: latency, latency: 100ms}}
"""


def test_a_played_scenario_runs_beside_the_session_and_is_recorded_like_a_runs(
    fake_toxiproxy: str, tmp_path: Path
) -> None:
    from lab.eventually import wait_for_value
    from lab.webui.faults import FaultRequestError
    from lab.webui.play import Player

    scenarios = tmp_path / "toxics"
    scenarios.mkdir()
    (scenarios / "tiny.yml").write_text(SCENARIO)
    (scenarios / "wide.yml").write_text(SCENARIO.replace("target: primary", "target: secondary"))
    (scenarios / "broken.yml").write_text("name: broken\n")
    sessions = Sessions(tmp_path / "compose", clock=Clock())
    api = FaultAPI.from_env(
        {"LAB_TOXIPROXY_URL": fake_toxiproxy, "LAB_PROVIDERS": "alpha=alpha_http,alpha_ws,"},
        sessions=sessions,
    )
    api.player = Player(api, sessions, scenarios)
    listed = {s["file"]: s for s in api.player.scenarios()}
    assert listed["tiny.yml"]["faults"] == 1 and "error" in listed["broken.yml"]
    with pytest.raises(FaultRequestError, match="start a swarm first"):
        api.player.play("tiny.yml")
    session = sessions.start()
    with pytest.raises(FaultRequestError, match="its faults target secondary; this lab has 1 providers"):
        api.player.play("wide.yml")
    with pytest.raises(FaultRequestError, match=r"no shipped scenario '\.\./tiny\.yml'"):
        api.player.play("../tiny.yml")

    assert api.player.play("tiny.yml") == {"play_id": "play1", "faults": 1, "duration": 60.0}
    active = wait_for_value(lambda: api.state()["active"], bool, timeout=10)
    assert [(f["fault_id"], f["target"], f["played"]) for f in active] == [("play1-slow#0", "alpha", True)]
    (toxic,) = api.state()["cards"]["alpha"]["toxics"]
    assert toxic.startswith("latency (") and "latency 100," in toxic and "toxic " not in toxic
    with pytest.raises(FaultRequestError, match="belongs to a played scenario"):
        api.lift("play1-slow#0")
    assert api.lift_all() == []
    sessions.stop()
    events = list(iter_events(session.path, "faults"))
    assert [(e["event"], e["fault_id"], e["source"]) for e in events] == [
        ("start", "play1-slow#0", "webui-play"), ("end", "play1-slow#0", "webui-play"),
    ]  # fmt: skip
    played = orjson.loads((session.path / "manifest.json").read_bytes())["played"]
    assert (
        played[0]["providers"] == {"primary": "alpha"} and played[0]["plan"][0]["fault_id"] == "play1-slow#0"
    )


class Event:
    def __init__(self) -> None:
        self.listeners: list = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def fire(self, **kwargs: Any) -> None:
        for listener in self.listeners:
            listener(**kwargs)


class FakeEnvironment:
    def __init__(self) -> None:
        self.events = type("Events", (), {})()
        for name in ("test_start", "test_stop", "quitting"):
            setattr(self.events, name, Event())
        self.runner = type("Runner", (), {"target_user_count": 4, "spawn_rate": 2.0})()
        self.host = "http://gateway:4000"


def test_the_routes_follow_locusts_start_and_stop(fake_toxiproxy: str, tmp_path: Path) -> None:
    from flask import Flask

    from lab.webui import install_faults_tab

    web_ui = type("WebUI", (), {})()
    web_ui.app, web_ui.template_args, web_ui.environment = Flask("test"), {}, FakeEnvironment()
    web_ui.auth_required_if_enabled = lambda view: view
    os_env = {"LAB_TOXIPROXY_URL": fake_toxiproxy, "LAB_PROVIDERS": "p1=p1_http,p1_ws,"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in os_env.items():
            patch.setenv(name, value)
        api = install_faults_tab(web_ui, run_dir=tmp_path / "reports" / "compose")

    @web_ui.app.route("/")
    def index() -> Any:  # Locust's page
        return "<html><body>locust</body></html>"

    @web_ui.app.route("/swarm", methods=["POST"])
    def swarm() -> Any:  # Locust's start form
        web_ui.environment.events.test_start.fire(environment=web_ui.environment)
        return {"success": True}

    client = web_ui.app.test_client()
    assert b'id="lab-faults-link" href="/lab/faults"' in client.get("/").data
    assert client.get("/lab/faults/static/dygraph.min.js").data.startswith(b"/*! @license")
    refused = client.post("/lab/faults/api/apply", json={"target": "p1", "action": "cut"})
    assert refused.status_code == 400 and "start a swarm first" in refused.get_json()["error"]

    client.post("/swarm", data={"user_count": "4", "spawn_rate": "2", "host": "http://gateway:4000"})
    assert api.sessions is not None and api.sessions.current is not None
    run_id = api.sessions.current.run_id
    assert client.post("/lab/faults/api/apply", json={"target": "p1", "action": "cut"}).get_json()["ok"]
    live = client.get("/lab/faults/api/live").get_json()
    assert live["run_id"] == run_id and live["running"] and live["faults"][0]["action"] == "cut"
    web_ui.environment.events.test_stop.fire(environment=web_ui.environment)  # the swarm stopped
    assert ("POST", "/proxies/p1_http", {"enabled": True}) in FakeLab.calls  # lifted at the stop
    manifest = client.get(f"/lab/faults/sessions/{run_id}/manifest.json").get_json()
    assert manifest["outcome"] == "stopped" and manifest["load"]["users"] == 4
    assert manifest["load"]["form"] == {"user_count": "4", "spawn_rate": "2", "host": "http://gateway:4000"}
    end = list(iter_events(tmp_path / "reports" / run_id, "faults"))[-1]
    assert end["event"] == "end" and end["reason"] == "the session ended (the swarm stopped)"
    assert client.get("/lab/faults/sessions/nope/manifest.json").status_code == 404
    assert client.get(f"/lab/faults/sessions/{run_id}/../../etc/passwd").status_code == 404
    web_ui.environment.events.quitting.fire(environment=web_ui.environment)


def test_old_seconds_keep_their_percentiles_not_their_latencies(tmp_path: Path) -> None:
    import numpy as np

    from lab.webui.session import SETTLE_S

    sessions = Sessions(tmp_path / "compose", clock=Clock())
    session = sessions.start()
    t0 = float(session.manifest["started"])
    session.add_requests(np.array([t0 + 0.1, t0 + 0.2]), np.array([10.0, 30.0]), np.array([True, True]))
    session.add_requests(np.array([t0 + SETTLE_S + 1.5]), np.array([5.0]), np.array([False]))
    first = session.bins[0]
    assert first.latencies == [] and first.settled == (20.0, 29.0)
    assert session.live(t0 + 100)["rows"][0] == [0, 2, 0, 20.0, 29.0]
