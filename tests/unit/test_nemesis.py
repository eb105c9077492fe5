"""The nemesis with a simulated clock and a fake fault target: order, chains, repeats, flaps, random
targets, and lifting everything on the way out."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.faults.actions import Action
from lab.faults.nemesis import Clock, ManualClock, Nemesis
from lab.record import EventLog, iter_events
from lab.scenario import Scenario, parse_scenario, plan_timeline

EPOCH = 1_700_000_000.0
PROVIDERS = "topology:\n  providers: [{id: alpha}, {id: beta}, {id: gamma}]\n"


def scenario(faults: str, duration: str = "100s", seed: int = 0) -> Scenario:
    return parse_scenario(
        f"name: t\nseed: {seed}\n{PROVIDERS}load: {{duration: {duration}}}\nfaults: {faults}\n"
    )


@dataclass
class FakeTarget:
    """Records (offset, "apply"/"lift", fault_id, target); can be told to fail."""

    clock: Clock
    log: list[tuple[float, str, str, str]] = field(default_factory=list)
    fail_apply: set[str] = field(default_factory=set)
    fail_lift: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    max_down: int = 0

    def apply(self, action: Action, target: str, *, name: str | None = None) -> Any:
        fault_id = str(name)
        if fault_id in self.fail_apply:
            raise RuntimeError(f"cannot {action.type}")
        self.log.append((self.clock.now(), "apply", fault_id, target))
        if action.takes_down:
            self.down.add(target)
            self.max_down = max(self.max_down, len(self.down))
        fake = self

        class Handle:
            def lift(self) -> None:
                if fault_id in fake.fail_lift:
                    raise RuntimeError("lift failed")
                fake.log.append((fake.clock.now(), "lift", fault_id, target))
                fake.down.discard(target)

        return None if action.instant else Handle()


def run(s: Scenario, **plan_kwargs: float) -> tuple[FakeTarget, list[dict[str, Any]], Nemesis]:
    clock = ManualClock()
    target = FakeTarget(clock)
    events: list[dict[str, Any]] = []

    def wall() -> float:  # wall time moves with the simulated clock
        return EPOCH + clock.now()

    nemesis = Nemesis(plan_timeline(s, **plan_kwargs), target, events.append, clock=clock, wall_clock=wall)
    with nemesis:
        nemesis.run()
    return target, events, nemesis


def test_applies_and_lifts_in_time_order() -> None:
    s = scenario(
        "[{id: b, start: 20s, duration: 10s, target: beta, action: {type: cut}},"
        " {id: a, start: 10s, duration: 30s, target: alpha, action: {type: latency, latency: 1s}}]"
    )
    target, events, _ = run(s)
    assert target.log == [
        (10, "apply", "a#0", "alpha"),
        (20, "apply", "b#0", "beta"),
        (30, "lift", "b#0", "beta"),
        (40, "lift", "a#0", "alpha"),
    ]
    assert [(e["event"], e["fault_id"]) for e in events] == [
        ("start", "a#0"),
        ("start", "b#0"),
        ("end", "b#0"),
        ("end", "a#0"),
    ]
    start = events[0]
    assert start["action"] == "latency" and start["target"] == "alpha" and start["name"] == "a"
    assert start["params"]["latency"] == 1.0 and start["params"]["planned_start"] == 10
    assert start["offset_s"] == 10 and start["ts"] == EPOCH + 10
    assert events[-1]["ts"] == EPOCH + 40


def test_after_chain_lifts_the_first_before_applying_the_next() -> None:
    s = scenario(
        "[{id: a, start: 5s, duration: 5s, target: alpha, action: {type: kill}},"
        " {id: b, after: a, duration: 5s, target: alpha, action: {type: kill}}]"
    )
    target, _, _ = run(s)
    assert [(t, op, fid) for t, op, fid, _ in target.log] == [
        (5, "apply", "a#0"),
        (10, "lift", "a#0"),
        (10, "apply", "b#0"),
        (15, "lift", "b#0"),
    ]


def test_repeats_and_instant_actions() -> None:
    s = scenario(
        "[{id: r, start: 0s, duration: 2s, repeat: {every: 10s, count: 3}, target: beta,"
        " action: {type: pause}},"
        " {id: x, start: 15s, target: gateway, action: {type: restart}}]"
    )
    target, events, nemesis = run(s)
    assert [(t, op) for t, op, fid, _ in target.log if fid.startswith("r#")] == [
        (0, "apply"),
        (2, "lift"),
        (10, "apply"),
        (12, "lift"),
        (20, "apply"),
        (22, "lift"),
    ]
    restart = [e for e in events if e["name"] == "x"]
    assert [e["event"] for e in restart] == ["start", "end"]
    assert nemesis.summary.applied == 4 and nemesis.summary.lifted == 3


def test_flapping_schedule() -> None:
    s = scenario(
        "[{id: f, start: 10s, duration: 30s, target: alpha, action: {type: flap, interval: 10s, down: 3s}}]"
    )
    target, events, _ = run(s)
    assert [(t, op) for t, op, _, _ in target.log] == [
        (10, "apply"),
        (13, "lift"),
        (20, "apply"),
        (23, "lift"),
        (30, "apply"),
        (33, "lift"),
    ]
    assert {e["action"] for e in events} == {"flap"}
    assert {e["params"]["applied"] for e in events} == {"cut"}


@pytest.mark.parametrize("seed", range(5))
def test_random_targets_never_take_down_more_than_allowed(seed: int) -> None:
    s = scenario(
        "[{id: held, start: 0s, duration: 50s, target: gamma, action: {type: cut}},"
        " {id: rk, start: 0s, duration: 4s, repeat: {every: 5s}, target: random, min_live: 2,"
        " action: {type: kill}}]",
        seed=seed,
    )
    target, _, nemesis = run(s)
    # 3 providers and min_live 2: no random kill while gamma is held down (0-50 s), one at a time after.
    assert target.max_down == 1
    assert nemesis.summary.skipped == 10
    kills = [(t, fid) for t, op, fid, _ in target.log if op == "apply" and fid.startswith("rk#")]
    assert [t for t, _ in kills] == [50, 55, 60, 65, 70, 75, 80, 85, 90, 95]


def test_open_ended_faults_are_lifted_when_the_run_ends() -> None:
    s = scenario(
        "[{id: a, start: 10s, target: alpha, action: {type: cut}},"
        " {id: b, start: 20s, duration: 500s, target: beta, action: {type: kill}}]",
        duration="60s",
    )
    target, events, nemesis = run(s)
    assert [op for _, op, _, _ in target.log] == ["apply", "apply", "lift", "lift"]
    assert [fid for _, op, fid, _ in target.log if op == "lift"] == ["b#0", "a#0"]  # newest first
    assert [e.get("reason") for e in events if e["event"] == "end"] == ["run ended", "run ended"]
    assert nemesis.active() == []


def test_a_failed_application_is_recorded_and_the_rest_goes_on() -> None:
    s = scenario(
        "[{id: a, start: 1s, duration: 5s, target: alpha, action: {type: kill}},"
        " {id: b, start: 2s, duration: 5s, target: beta, action: {type: kill}}]"
    )
    clock = ManualClock()
    target = FakeTarget(clock, fail_apply={"a#0"})
    events: list[dict[str, Any]] = []
    with Nemesis(plan_timeline(s), target, events.append, clock=clock) as nemesis:
        nemesis.run()
    assert [(e["event"], e["fault_id"]) for e in events] == [
        ("failed", "a#0"),
        ("start", "b#0"),
        ("end", "b#0"),
    ]
    assert "RuntimeError: cannot kill" in events[0]["error"]
    assert nemesis.summary.failed == 1 and nemesis.summary.errors


def test_a_failed_lift_is_recorded_and_the_others_are_still_lifted() -> None:
    s = scenario(
        "[{id: a, start: 1s, target: alpha, action: {type: cut}}, {id: b, start: 2s, target: beta,"
        " action: {type: cut}}]"
    )
    clock = ManualClock()
    target = FakeTarget(clock, fail_lift={"b#0"})
    events: list[dict[str, Any]] = []
    with Nemesis(plan_timeline(s), target, events.append, clock=clock) as nemesis:
        nemesis.run()
    ends = {e["fault_id"]: e for e in events if e["event"] == "end"}
    assert "lift failed" in ends["b#0"]["error"] and "error" not in ends["a#0"]
    assert "lift" in [op for _, op, fid, _ in target.log if fid == "a#0"]
    assert nemesis.summary.lift_failures == 1


def test_everything_active_is_lifted_when_the_run_raises() -> None:
    s = scenario(
        "[{id: a, start: 0s, target: alpha, action: {type: cut}}, {id: b, start: 0s, target: beta,"
        " action: {type: pause}}]"
    )
    clock = ManualClock()
    target = FakeTarget(clock)
    events: list[dict[str, Any]] = []
    with (
        pytest.raises(KeyboardInterrupt),
        Nemesis(plan_timeline(s), target, events.append, clock=clock) as nemesis,
    ):
        nemesis.run()
        assert len(nemesis.active()) == 2
        raise KeyboardInterrupt  # Ctrl-C in the middle of the run
    assert target.down == set()
    assert [e["event"] for e in events].count("end") == 2


class SteppedClock:
    """Simulated time that lets the test stop the nemesis when the timeline reaches `stop_at`."""

    def __init__(self, stop_at: float) -> None:
        self.offset = 0.0
        self.stop_at = stop_at
        self.reached = threading.Event()

    def now(self) -> float:
        return self.offset

    def wait_until(self, offset: float, stop: threading.Event) -> bool:
        if offset >= self.stop_at:
            self.reached.set()
            return stop.wait(10)
        self.offset = offset
        return stop.is_set()


def test_stop_mid_run_from_another_thread_lifts_what_is_active() -> None:
    s = scenario(
        "[{id: a, start: 5s, duration: 30s, target: alpha, action: {type: cut}},"
        " {id: b, start: 50s, duration: 5s, target: beta, action: {type: cut}}]"
    )
    clock = SteppedClock(stop_at=20)
    target = FakeTarget(clock)  # type: ignore[arg-type]
    nemesis = Nemesis(plan_timeline(s), target, lambda e: None, clock=clock).start()
    assert clock.reached.wait(5), "the nemesis reached its next step"
    assert [f.planned.fault_id for f in nemesis.active()] == ["a#0"]
    summary = nemesis.stop()
    assert nemesis.done
    assert [(op, fid) for _, op, fid, _ in target.log] == [("apply", "a#0"), ("lift", "a#0")]
    assert summary.applied == 1 and summary.lifted == 1
    nemesis.stop()  # twice is harmless
    assert summary.lifted == 1


def test_events_go_to_faults_jsonl(tmp_path: Path) -> None:
    s = scenario("[{id: a, start: 1s, duration: 1s, target: alpha, action: {type: latency, latency: 50ms}}]")
    clock = ManualClock()
    with (
        EventLog(tmp_path, "faults") as log,
        Nemesis(plan_timeline(s), FakeTarget(clock), log.append, clock=clock) as n,
    ):
        n.run()
    events = list(iter_events(tmp_path, "faults"))
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["ts"] <= events[1]["ts"]
    assert set(events[0]) >= {"event", "fault_id", "name", "action", "target", "ts", "params"}


# --- through the lab's fault API -------------------------------------------------------------------------


class FakeInjector:
    """Records the primitive each action calls (the real FaultInjector's `apply` lets the action apply
    itself, so this is what a planned fault turns into)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def apply(self, action: Action, target: str, *, name: str | None = None) -> Any:
        return action.apply(self, target, name=name)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> str:
            self.calls.append((name, args, kwargs))
            return f"handle-{name}"

        return call


def test_every_action_applies_itself_through_the_injector() -> None:
    s = scenario(
        "[{id: lat, start: 0s, duration: 1s, target: alpha,"
        " action: {type: latency, latency: 250ms, jitter: 10ms, transport: ws}},"
        " {start: 1s, duration: 1s, target: alpha, action: {type: toxic, toxic: noop}},"
        " {start: 2s, duration: 1s, target: alpha, action: {type: cut, transport: http}},"
        " {start: 3s, duration: 1s, target: gateway, action: {type: kill}},"
        " {start: 4s, duration: 1s, target: beta, action: {type: stop, timeout: 3s}},"
        " {start: 5s, duration: 1s, target: beta, action: {type: pause}},"
        " {start: 6s, target: beta, action: {type: restart}},"
        " {start: 7s, duration: 1s, target: gamma, action: {type: partition}},"
        " {start: 8s, duration: 1s, target: gateway, action: {type: memory, limit_mb: 64}},"
        " {start: 9s, duration: 1s, target: gamma, action: {type: behavior, behavior: always_fail}},"
        " {start: 10s, duration: 1s, target: gamma, action: {type: breaker_open}}]"
    )
    injector = FakeInjector()
    clock = ManualClock()
    events: list[dict[str, Any]] = []
    with Nemesis(plan_timeline(s), injector, events.append, clock=clock) as nemesis:
        nemesis.run()
    names = [name for name, _, _ in injector.calls]
    assert names == [
        "toxic",
        "toxic",
        "cut",
        "kill",
        "stop",
        "pause",
        "restart",
        "disconnect",
        "squeeze_memory",
        "behavior",
        "open_breaker",
    ]
    (_, (provider, toxic), kwargs) = injector.calls[0]
    assert provider == "alpha" and kwargs["transport"] == "ws" and kwargs["name"] == "lat#0"
    assert (toxic.type, toxic.attributes, toxic.toxic_name) == (
        "latency",
        {"latency": 250, "jitter": 10},
        "lat_0",
    )
    assert injector.calls[1][1][1].type == "noop"
    assert injector.calls[2][2]["transport"] == "http"
    assert injector.calls[4][2]["timeout_s"] == 3
    assert injector.calls[8][1] == ("gateway", "64m")
    assert injector.calls[9][1][1]["type"] == "always_fail"
    assert nemesis.summary.applied == 11 and nemesis.summary.failed == 0
    restart = [e for e in events if e["params"]["applied"] == "restart"]
    assert [e["event"] for e in restart] == ["start", "end"]  # instant: nothing left to lift


def test_fault_events_carry_issued_and_effective_times() -> None:
    """A restart handle that records its own times (as lab.faults.Fault does: issued, stopped, running
    again) gives the start and end events their times; `ts` spans the widest window."""
    s = scenario(
        "[{id: slow, start: 5s, duration: 5s, target: alpha, action: {type: latency, latency: 100ms}},"
        " {id: x, start: 20s, target: gateway, action: {type: restart}}]"
    )
    clock = ManualClock()
    target = FakeTarget(clock)
    events: list[dict[str, Any]] = []

    class Restarted:
        started_at, lift_issued_at, ended_at = EPOCH + 21.0, EPOCH + 21.0, EPOCH + 24.0

        def lift(self) -> None:
            pass

    def apply(action: Action, where: str, *, name: str | None = None) -> Any:
        handle = FakeTarget.apply(target, action, where, name=name)
        return Restarted() if action.type == "restart" else handle

    target.apply = apply  # type: ignore[method-assign]
    nemesis = Nemesis(
        plan_timeline(s), target, events.append, clock=clock, wall_clock=lambda: EPOCH + clock.now()
    )
    with nemesis:
        nemesis.run()
    by = {(e["name"], e["event"]): e for e in events}
    slow_start, slow_end = by[("slow", "start")], by[("slow", "end")]
    assert slow_start["issued_ts"] == slow_start["ts"] == EPOCH + 5 <= slow_start["effective_ts"]
    assert slow_end["issued_ts"] <= slow_end["effective_ts"] == slow_end["ts"] == EPOCH + 10
    start, end = by[("x", "start")], by[("x", "end")]
    assert (start["ts"], start["issued_ts"], start["effective_ts"]) == (EPOCH + 20, EPOCH + 20, EPOCH + 21)
    assert (end["ts"], end["issued_ts"], end["effective_ts"]) == (EPOCH + 24, EPOCH + 21, EPOCH + 24)
