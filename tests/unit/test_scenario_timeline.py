"""Planning a fault timeline: after-chains, repeats, flaps, probabilities, random targets, load shapes."""

from __future__ import annotations

import pytest

from lab.load.shape import users_at
from lab.scenario import PlanError, Scenario, ScenarioError, parse_scenario, plan_timeline

PROVIDERS = "topology:\n  providers: [{id: alpha}, {id: beta}, {id: gamma}, {id: delta}]\n"


def scenario(faults: str, *, duration: str = "100s", seed: int = 0) -> Scenario:
    return parse_scenario(
        f"name: t\nseed: {seed}\n{PROVIDERS}load: {{duration: {duration}}}\nfaults: {faults}\n"
    )


def spans(s: Scenario, **kwargs: float) -> list[tuple[str, str, float, float | None]]:
    return [(f.fault_id, f.target, f.start, f.end) for f in plan_timeline(s, **kwargs).faults]


def test_absolute_start_duration_and_end() -> None:
    s = scenario(
        "[{id: a, start: 10s, duration: 5s, target: alpha, action: {type: cut}},"
        " {id: b, start: 20s, end: 30s, target: beta, action: {type: pause}},"
        " {id: c, start: 40s, target: gamma, action: {type: kill}}]"
    )
    assert spans(s) == [("a#0", "alpha", 10, 15), ("b#0", "beta", 20, 30), ("c#0", "gamma", 40, None)]


def test_after_chains_start_at_the_end_plus_delay() -> None:
    s = scenario(
        "[{id: c, after: b, delay: 1s, duration: 2s, target: gamma, action: {type: cut}},"
        " {id: a, start: 5s, duration: 5s, target: alpha, action: {type: cut}},"
        " {id: b, after: a, duration: 3s, target: beta, action: {type: cut}}]"
    )
    assert spans(s) == [("a#0", "alpha", 5, 10), ("b#0", "beta", 10, 13), ("c#0", "gamma", 14, 16)]


def test_after_a_repeated_entry_waits_for_its_last_occurrence() -> None:
    s = scenario(
        "[{id: a, start: 0s, duration: 2s, repeat: {every: 10s, count: 3}, target: alpha,"
        " action: {type: cut}},"
        " {id: b, after: a, duration: 1s, target: beta, action: {type: cut}}]"
    )
    assert spans(s)[-1] == ("b#0", "beta", 22, 23)


def test_repeat_count_until_and_open_ended() -> None:
    counted = scenario(
        "[{start: 5s, duration: 1s, repeat: {every: 10s, count: 3}, target: alpha, action: {type: cut}}]"
    )
    assert [f.start for f in plan_timeline(counted).faults] == [5, 15, 25]
    until = scenario(
        "[{start: 5s, duration: 1s, repeat: {every: 10s, until: 30s}, target: alpha, action: {type: cut}}]"
    )
    assert [f.start for f in plan_timeline(until).faults] == [5, 15, 25]
    open_ended = scenario(
        "[{start: 5s, duration: 1s, repeat: {every: 30s}, target: alpha, action: {type: cut}}]"
    )
    assert [f.start for f in plan_timeline(open_ended).faults] == [5, 35, 65, 95]
    assert [f.start for f in plan_timeline(open_ended, duration=50).faults] == [5, 35]


def test_instant_actions_end_where_they_start() -> None:
    s = scenario("[{start: 5s, repeat: {every: 20s, count: 2}, target: gateway, action: {type: restart}}]")
    assert spans(s) == [("restart-0#0", "gateway", 5, 5), ("restart-0#1", "gateway", 25, 25)]


def test_flap_windows_follow_interval_and_down_within_the_total() -> None:
    s = scenario(
        "[{id: f, start: 10s, duration: 25s, target: alpha, action: {type: flap, interval: 10s, down: 4s}}]"
    )
    plan = plan_timeline(s)
    assert [(f.start, f.end) for f in plan.faults] == [(10, 14), (20, 24), (30, 34)]
    assert {f.kind for f in plan.faults} == {"flap"}
    assert {f.action.type for f in plan.faults} == {"cut"}
    assert plan.faults[0].params["flap"] == {"interval": 10.0, "down": 4.0, "mode": "cut"}


def test_flap_without_duration_runs_until_the_end_and_can_kill() -> None:
    s = scenario("[{start: 0s, target: alpha, action: {type: flap, interval: 30s, down: 5s, mode: kill}}]")
    plan = plan_timeline(s, duration=70)
    assert [(f.start, f.end, f.action.type) for f in plan.faults] == [
        (0, 5, "kill"),
        (30, 35, "kill"),
        (60, 65, "kill"),
    ]


def test_target_all_expands_per_provider() -> None:
    s = scenario("[{id: x, start: 1s, duration: 1s, target: all, action: {type: latency, latency: 100ms}}]")
    assert [f.target for f in plan_timeline(s).faults] == ["alpha", "beta", "gamma", "delta"]
    assert len({f.fault_id for f in plan_timeline(s).faults}) == 4


def test_a_fault_starting_after_the_end_of_the_run_is_an_error() -> None:
    s = scenario("[{start: 50s, duration: 5s, target: alpha, action: {type: cut}}]")
    with pytest.raises(PlanError) as info:
        plan_timeline(s, duration=40)
    assert (info.value.path, info.value.message) == (
        "faults[0].start",
        "starts at 50s, not before the run ends at 40s",
    )
    with pytest.raises(
        ScenarioError,
        match=r"t.yml: faults\[1\].after: starts at 1m40s, not before the run ends at 1m40s \(line 7\)",
    ):
        parse_scenario(
            f"name: t\n{PROVIDERS}load: {{duration: 100s}}\nfaults:\n"
            "  - {id: a, start: 90s, duration: 10s, target: alpha, action: {type: cut}}\n"
            "  - {after: a, target: beta, action: {type: cut}}\n",
            source="t.yml",
        )


def test_a_repeat_count_that_does_not_fit_the_run_is_an_error() -> None:
    with pytest.raises(ScenarioError, match=r"faults\[0\].repeat.count: occurrence 3 would start at 1m45s"):
        scenario(
            "[{start: 5s, duration: 1s, repeat: {every: 50s, count: 3}, target: alpha, action: {type: cut}}]"
        )
    with pytest.raises(ScenarioError, match=r"faults\[0\].repeat.until: ends before the entry's first start"):
        scenario(
            "[{start: 50s, duration: 1s, repeat: {every: 5s, until: 20s}, target: alpha,"
            " action: {type: cut}}]"
        )
    open_ended = scenario(
        "[{start: 5s, duration: 1s, repeat: {every: 30s}, target: alpha, action: {type: cut}}]"
    )
    assert [f.start for f in plan_timeline(open_ended, duration=50).faults] == [5, 35], (
        "repeats until the end"
    )


def test_probability_is_seeded_and_reproducible() -> None:
    text = (
        "[{id: k, start: 0s, duration: 1s, repeat: {every: 2s, count: 40}, probability: 0.5, target: alpha,"
        " action: {type: cut}}]"
    )
    first, again = plan_timeline(scenario(text, seed=1)), plan_timeline(scenario(text, seed=1))
    other = plan_timeline(scenario(text, seed=2))
    assert first == again
    assert 10 < len(first.faults) < 30
    assert len(first.faults) + len(first.skipped) == 40
    assert [f.start for f in first.faults] != [f.start for f in other.faults]


RANDOM_KILLS = (
    "[{id: down, start: 0s, duration: 100s, target: alpha, action: {type: kill}},"
    " {id: beta-down, start: 30s, duration: 30s, target: beta, action: {type: pause}},"
    " {id: rk, start: 0s, duration: 8s, repeat: {every: 10s}, target: random, min_live: 2,"
    " action: {type: kill}}]"
)


def _max_down(plan_faults: tuple, duration: float) -> int:
    moments = sorted({f.start for f in plan_faults})
    return max(
        sum(1 for f in plan_faults if f.action.takes_down and f.start <= t < (f.end or duration))
        for t in moments
    )


@pytest.mark.parametrize("seed", range(8))
def test_random_targets_keep_min_live_providers_up(seed: int) -> None:
    plan = plan_timeline(scenario(RANDOM_KILLS, seed=seed))
    # alpha is down all along and beta from 30 s to 60 s (fixed faults): with min_live 2 of 4, a random
    # kill may add one more outage before 30 s and after 60 s, and none in between.
    assert _max_down(plan.faults, 100) == 2
    randoms = [f for f in plan.faults if f.name == "rk"]
    assert all(f.target != "alpha" for f in randoms)
    assert [f.start for f in randoms] == [0, 10, 20, 60, 70, 80, 90]
    assert [s.start for s in plan.skipped] == [30, 40, 50]
    assert all("keeping 2 up" in s.reason for s in plan.skipped)


def test_random_targets_choose_among_the_candidates() -> None:
    s = scenario(
        "[{start: 0s, duration: 1s, repeat: {every: 2s, count: 30}, target: random, among: [beta, gamma],"
        " action: {type: latency, latency: 10ms}}]"
    )
    assert {f.target for f in plan_timeline(s).faults} == {"beta", "gamma"}


def test_random_choice_depends_on_the_seed() -> None:
    text = "[{start: 0s, duration: 1s, repeat: {every: 2s, count: 20}, target: random, action: {type: kill}}]"
    targets = {tuple(f.target for f in plan_timeline(scenario(text, seed=seed)).faults) for seed in range(4)}
    assert len(targets) > 1


def test_plan_describe_lists_faults_and_skips() -> None:
    lines = plan_timeline(scenario(RANDOM_KILLS, seed=3)).describe()
    assert any("down#0" in line and "alpha" in line for line in lines)
    assert any("skipped" in line for line in lines)


# --- load shapes --------------------------------------------------------------------------------------------


def load(shape: str, users: int = 10) -> Scenario:
    return parse_scenario(
        f"name: t\n{PROVIDERS}load: {{users: {users}, spawn_rate: 5, duration: 100s, shape: {shape}}}\n"
    )


def test_steady_shape() -> None:
    spec = load("{type: steady}").load
    assert users_at(spec, 0) == (10, 5) and users_at(spec, 99.9) == (10, 5)
    assert users_at(spec, 100) is None


def test_ramp_shape() -> None:
    spec = load("{type: ramp, start_users: 2, over: 40s}").load
    assert [users_at(spec, t)[0] for t in (0, 20, 40, 80)] == [2, 6, 10, 10]


def test_spike_shape() -> None:
    spec = load("{type: spike, at: 30s, hold: 10s, peak_users: 50}").load
    assert users_at(spec, 10) == (10, 5)
    assert users_at(spec, 35) == (50, 50)
    assert users_at(spec, 45) == (10, 50)


def test_step_shape() -> None:
    spec = load("{type: step, step_users: 3, every: 20s}").load
    assert [users_at(spec, t)[0] for t in (0, 19, 20, 45, 90)] == [3, 3, 6, 9, 10]


def test_shape_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="start_users must not exceed users"):
        load("{type: ramp, start_users: 20}")
