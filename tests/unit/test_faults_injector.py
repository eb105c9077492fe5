"""The fault API with fake Toxiproxy, Docker and control clients: what each fault does, what it records,
and that lifting undoes it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lab.faults import FaultInjector, FaultJournal, Toxic, ToxiproxyError, UnknownTarget
from lab.faults.actions import (
    BandwidthAction,
    LatencyAction,
    LimitDataAction,
    TimeoutAction,
)
from lab.faults.process import ContainerTarget


class FakeToxiproxy:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on

    def add_toxic(self, proxy: str, toxic: Any) -> dict[str, Any]:
        if proxy == self.fail_on:
            raise ToxiproxyError(f"add toxic to {proxy!r}: HTTP 500")
        self.calls.append(("add", proxy, toxic.toxic_name, toxic.attributes))
        return toxic.to_api()

    def update_toxic(self, proxy: str, toxic: Any) -> dict[str, Any]:
        self.calls.append(("update", proxy, toxic.toxic_name, toxic.attributes, toxic.toxicity))
        return toxic.to_api()

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.calls.append(("remove", proxy, name))

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self.calls.append(("enabled", proxy, enabled))


class FakeContainer:
    def __init__(self, status: str = "running", memory: int = 0, swap: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[Any, ...]] = []
        self.attrs = {"HostConfig": {"Memory": memory, "MemorySwap": swap}}

    def reload(self) -> None:
        pass

    def kill(self, signal: str) -> None:
        self.calls.append(("kill", signal))
        self.status = "exited"

    def stop(self, timeout: int) -> None:
        self.calls.append(("stop", timeout))
        self.status = "exited"

    def start(self) -> None:
        self.calls.append(("start",))
        self.status = "running"

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.status = "paused"

    def unpause(self) -> None:
        self.calls.append(("unpause",))
        self.status = "running"

    def restart(self, timeout: int) -> None:
        self.calls.append(("restart", timeout))

    def update(self, **kwargs: Any) -> None:
        self.calls.append(("update", kwargs))


class FakeNetwork:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def disconnect(self, container: Any) -> None:
        self.calls.append(("disconnect", container))

    def connect(self, container: Any, aliases: list[str]) -> None:
        self.calls.append(("connect", container, aliases))


class FakeControl:
    def __init__(self) -> None:
        self.behaviors = {"http://p1": {"type": "healthy"}}
        self.calls: list[tuple[Any, ...]] = []

    def get_behavior(self, url: str) -> dict[str, Any]:
        return self.behaviors[url]

    def set_behavior(self, url: str, behavior: dict[str, Any]) -> None:
        self.calls.append(("set_behavior", url, behavior))
        self.behaviors[url] = behavior

    def open_breaker(self, gateway: str, chain: str, provider: str) -> None:
        self.calls.append(("open", gateway, chain, provider))

    def reset_breaker(self, gateway: str, chain: str, provider: str) -> None:
        self.calls.append(("reset", gateway, chain, provider))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def world() -> dict[str, Any]:
    network = FakeNetwork()
    containers = {name: FakeContainer() for name in ("p1", "p2", "gateway")}
    events: list[dict[str, Any]] = []
    journal = FaultJournal(clock=Clock())
    journal.subscribe(events.append)
    injector = FaultInjector(
        toxiproxy=FakeToxiproxy(),  # type: ignore[arg-type]
        proxies={"p1": {"http": "p1_http", "ws": "p1_ws"}, "p2": {"http": "p2_http", "ws": "p2_ws"}},
        containers={n: ContainerTarget(n, c, network, [n]) for n, c in containers.items()},
        control=FakeControl(),  # type: ignore[arg-type]
        control_urls={"p1": "http://p1", "p2": "http://p2"},
        gateway_url="http://gw",
        chain="ethereum",
        memory_total=lambda: 8 << 30,
        journal=journal,
    )
    return {"injector": injector, "containers": containers, "network": network, "events": events}


def test_latency_on_both_transports_by_default_and_lift_removes_it(world):
    faults: FaultInjector = world["injector"]
    fault = faults.apply(LatencyAction(latency="200ms", jitter="20ms"), "p1")
    assert faults.toxiproxy.calls == [
        ("add", "p1_http", "latency_downstream", {"latency": 200, "jitter": 20}),
        ("add", "p1_ws", "latency_downstream", {"latency": 200, "jitter": 20}),
    ]
    fault.lift()
    assert faults.toxiproxy.calls[2:] == [
        ("remove", "p1_http", "latency_downstream"),
        ("remove", "p1_ws", "latency_downstream"),
    ]


def test_a_fault_records_start_and_end_events_as_the_run_record_has_them(world):
    faults: FaultInjector = world["injector"]
    action = TimeoutAction(timeout="500ms", stream="upstream", transport="http")
    fault = faults.apply(action, "p2", name="p2 silent")
    fault.lift()
    start, end = world["events"]
    assert start == {
        "event": "start",
        "fault_id": "f1",
        "name": "p2 silent",
        "action": "timeout",
        "target": "p2",
        "ts": 1001.0,  # issued; in effect once Toxiproxy answered (the test clock ticks 1 s per reading)
        "issued_ts": 1001.0,
        "effective_ts": 1002.0,
        "params": {
            "type": "timeout",
            "stream": "upstream",
            "toxicity": 1.0,
            "timeout": 500,
            "toxic": "p2_silent",
            "proxies": ["p2_http"],
        },
    }
    assert end["event"] == "end" and end["fault_id"] == "f1" and end["ts"] == 1004.0
    assert (end["issued_ts"], end["effective_ts"]) == (1003.0, 1004.0)


def test_lift_is_done_once(world):
    faults: FaultInjector = world["injector"]
    fault = faults.cut("p1", transport="ws")
    fault.lift()
    fault.lift()
    assert faults.toxiproxy.calls == [("enabled", "p1_ws", False), ("enabled", "p1_ws", True)]
    assert [e["event"] for e in world["events"]] == ["start", "end"]
    assert not fault.active


def test_a_toxic_is_added_to_all_proxies_or_none(world):
    faults: FaultInjector = world["injector"]
    faults.toxiproxy.fail_on = "p1_ws"
    with pytest.raises(ToxiproxyError):
        faults.apply(BandwidthAction(rate=10), "p1")
    assert faults.toxiproxy.calls == [
        ("add", "p1_http", "bandwidth_downstream", {"rate": 10}),
        ("remove", "p1_http", "bandwidth_downstream"),
    ]
    assert faults.journal.faults == []


def test_a_proxy_name_is_a_target_too(world):
    faults: FaultInjector = world["injector"]
    faults.apply(LimitDataAction(bytes=100), "p2_ws")
    assert faults.toxiproxy.calls == [("add", "p2_ws", "limit_data_downstream", {"bytes": 100})]


def test_update_ends_the_old_fault_and_starts_a_new_one_without_removing_the_toxic(world):
    faults: FaultInjector = world["injector"]
    first = faults.apply({"type": "latency", "latency": 0.2, "transport": "http"}, "p1")
    second = faults.update_toxic(first, latency=50, toxicity=0.5)
    assert faults.toxiproxy.calls[-1] == (
        "update",
        "p1_http",
        "latency_downstream",
        {"latency": 50, "jitter": 0},
        0.5,
    )
    assert not first.active and second.active
    assert second.params["latency"] == 50 and second.name == first.name
    assert [e["event"] for e in world["events"]] == ["start", "end", "start"]
    second.lift()
    assert faults.toxiproxy.calls[-1] == ("remove", "p1_http", "latency_downstream")
    assert sum(1 for call in faults.toxiproxy.calls if call[0] == "remove") == 1


def test_update_validates_the_new_values(world):
    faults: FaultInjector = world["injector"]
    fault = faults.apply(LatencyAction(latency="200ms"), "p1")
    with pytest.raises(ValidationError):
        faults.update_toxic(fault, latency=-1)
    assert fault.active


def test_unknown_targets_are_named_in_the_error(world):
    faults: FaultInjector = world["injector"]
    with pytest.raises(UnknownTarget, match=r"no provider or proxy named 'p9'.*p1"):
        faults.apply(LatencyAction(latency=1), "p9")
    with pytest.raises(UnknownTarget, match="no container named 'p9'"):
        faults.kill("p9")


def test_kill_and_lift_starts_the_container_again(world):
    faults: FaultInjector = world["injector"]
    with faults.kill("p1"):
        assert world["containers"]["p1"].status == "exited"
    assert world["containers"]["p1"].calls == [("kill", "SIGKILL"), ("start",)]


def test_pause_lifts_with_unpause_and_stop_with_start(world):
    faults: FaultInjector = world["injector"]
    faults.pause("p1").lift()
    faults.stop("p2", timeout_s=3).lift()
    assert world["containers"]["p1"].calls == [("pause",), ("unpause",)]
    assert world["containers"]["p2"].calls == [("stop", 3), ("start",)]


def test_restart_is_an_instant_fault(world):
    faults: FaultInjector = world["injector"]
    fault = faults.restart("gateway", timeout_s=1)
    assert not fault.active
    assert [e["event"] for e in world["events"]] == ["start", "end"]
    assert world["containers"]["gateway"].calls == [("stop", 1), ("start",)]


def test_a_restart_is_recorded_from_before_the_stop_to_after_the_start(world):
    """Its impact (the container down) falls inside its window: the window opens when the restart was
    issued and closes once the container runs again (the test clock ticks 1 s per reading)."""
    world["injector"].restart("gateway", timeout_s=1)
    start, end = world["events"]
    # issued (1001) → stopped (1002) → started again, recorded (1003)
    assert (start["issued_ts"], start["effective_ts"], start["ts"]) == (1001.0, 1002.0, 1001.0)
    assert (end["issued_ts"], end["effective_ts"], end["ts"]) == (1002.0, 1003.0, 1003.0)


def test_every_fault_has_issued_and_effective_times_at_start_and_end(world):
    faults: FaultInjector = world["injector"]
    faults.apply(LatencyAction(latency="100ms"), "p1").lift()
    faults.kill("p2").lift()
    for start, end in zip(world["events"][::2], world["events"][1::2], strict=True):
        assert (start["event"], end["event"]) == ("start", "end")
        assert start["issued_ts"] < start["effective_ts"] <= end["issued_ts"] < end["effective_ts"]
        assert start["ts"] == start["issued_ts"] and end["ts"] == end["effective_ts"]


def test_disconnect_reconnects_with_the_same_aliases(world):
    faults: FaultInjector = world["injector"]
    faults.disconnect("p2").lift()
    container = world["containers"]["p2"]
    assert world["network"].calls == [("disconnect", container), ("connect", container, ["p2"])]


def test_memory_squeeze_and_release_to_the_machines_memory_when_there_was_no_limit(world):
    faults: FaultInjector = world["injector"]
    faults.squeeze_memory("p1", "64m").lift()
    assert world["containers"]["p1"].calls == [
        ("update", {"mem_limit": 64 << 20, "memswap_limit": 64 << 20}),
        ("update", {"mem_limit": 8 << 30, "memswap_limit": 16 << 30}),  # raised together first
        ("update", {"memswap_limit": -1}),  # then swap unlimited again, as before
    ]


def test_memory_release_restores_an_earlier_limit():
    container = FakeContainer(memory=256 << 20, swap=512 << 20)
    from lab.faults.process import squeeze_memory

    release = squeeze_memory(ContainerTarget("p1", container, FakeNetwork()), 32 << 20, unlimited=1)
    release()
    assert container.calls[-1] == ("update", {"mem_limit": 256 << 20, "memswap_limit": 512 << 20})


def test_behaviour_switch_restores_the_previous_behaviour(world):
    faults: FaultInjector = world["injector"]
    fault = faults.behavior("p1", {"type": "always_fail"})
    assert fault.params == {"behavior": {"type": "always_fail"}, "before": {"type": "healthy"}}
    fault.lift()
    assert faults.control.calls == [
        ("set_behavior", "http://p1", {"type": "always_fail"}),
        ("set_behavior", "http://p1", {"type": "healthy"}),
    ]


def test_open_breaker_lifts_with_a_reset(world):
    faults: FaultInjector = world["injector"]
    faults.open_breaker("p2").lift()
    assert faults.control.calls == [
        ("open", "http://gw", "ethereum", "p2"),
        ("reset", "http://gw", "ethereum", "p2"),
    ]


def test_lift_all_undoes_newest_first_and_reports_failures(world):
    faults: FaultInjector = world["injector"]
    faults.pause("p1")
    faults.toxic("p2", Toxic(type="latency", latency=5, name="slow"))
    broken = faults.kill("gateway")
    broken._inverse = lambda: (_ for _ in ()).throw(RuntimeError("docker went away"))
    errors = faults.lift_all()
    assert errors == ["f3 kill gateway: RuntimeError: docker went away"]
    assert [f.fault_id for f in faults.journal.active()] == ["f3"]
    assert world["containers"]["p1"].calls[-1] == ("unpause",)
    assert ("remove", "p2_ws", "slow") in faults.toxiproxy.calls


def test_unsubscribed_listeners_hear_nothing_more(world):
    faults: FaultInjector = world["injector"]
    heard: list[str] = []
    unsubscribe = faults.journal.subscribe(lambda e: heard.append(e["event"]))
    faults.cut("p1").lift()
    unsubscribe()
    faults.cut("p2")
    assert heard == ["start", "end"]


def test_a_mapping_is_validated_as_a_scenarios_action(world):
    faults: FaultInjector = world["injector"]
    with pytest.raises(ValidationError, match="latency"):
        faults.apply({"type": "latency", "latency": "-5ms"}, "p1")
    fault = faults.apply({"type": "kill", "signal": "SIGTERM"}, "p2", name="p2 down")
    assert (fault.action, fault.name, fault.params) == ("kill", "p2 down", {"signal": "SIGTERM"})
    assert world["containers"]["p2"].calls == [("kill", "SIGTERM")]


def test_a_transport_the_provider_lacks_is_named(world):
    faults: FaultInjector = world["injector"]
    faults._proxies["p3"] = {"http": "p3_http"}
    with pytest.raises(UnknownTarget, match="p3 has no ws proxy"):
        faults.cut("p3", transport="ws")
