"""Analysis of synthetic run records with planted answers: recovery, failover, gaps, breakers, stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.analysis.loading import load_run
from lab.analysis.summary import Analysis, analyse
from lab.analysis.synthetic import (
    ErrorBurst,
    Fault,
    HeadsPlan,
    ProviderOutage,
    SyntheticRun,
    breaker_events,
    write_run,
)


def run_analysis(tmp_path: Path, plan: SyntheticRun, name: str = "run") -> Analysis:
    return analyse(load_run(write_run(plan, tmp_path / name)))


def test_recovery_inside_the_fault_is_the_end_of_the_last_bad_window(tmp_path: Path) -> None:
    # Every request fails in [30, 37); the 10 s windows starting at 30..36 are below 99 %, 37 is clean.
    plan = SyntheticRun(duration_s=120, faults=[Fault("kill-a", 30, 60)], bursts=[ErrorBurst(30, 37)])
    fault = run_analysis(tmp_path, plan).summary["faults"][0]
    assert fault["recovery_status"] == "recovered"
    assert fault["recovery_s"] == 7.0
    assert fault["recovery_after_end_s"] == 0.0
    assert fault["recovered_during_fault"] is True
    assert fault["time_to_first_error_s"] == 0.0
    assert fault["errors"] == 700  # 100 req/s × 7 s
    assert fault["excess_errors"] == 700  # the baseline had no errors
    assert fault["baseline"]["success_rate"] == 1.0
    assert fault["during"]["success_rate"] == pytest.approx(1 - 700 / 3000)


def test_recovery_after_the_fault_ended_is_measured_from_its_start_and_its_end(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=120, faults=[Fault("partition", 30, 40)], bursts=[ErrorBurst(32.5, 45)])
    fault = run_analysis(tmp_path, plan).summary["faults"][0]
    assert fault["time_to_first_error_s"] == 2.5
    assert fault["recovery_s"] == 15.0
    assert fault["recovery_after_end_s"] == 5.0
    assert fault["recovered_during_fault"] is False


def test_a_sparse_failure_rate_below_the_target_does_not_delay_recovery(tmp_path: Path) -> None:
    # 0.1 % of requests fail everywhere (about 1 in each 1,000-request window): all above the 99 % target.
    plan = SyntheticRun(duration_s=90, base_error_rate=0.001, faults=[Fault("f", 30, 60)], seed=3)
    fault = run_analysis(tmp_path, plan).summary["faults"][0]
    assert fault["recovery_s"] == 0.0


def test_errors_until_the_run_end_mean_not_recovered_and_the_slo_fails(tmp_path: Path) -> None:
    plan = SyntheticRun(
        duration_s=60, faults=[Fault("f", 20, 40)], bursts=[ErrorBurst(20, 60)], slos={"recovery_s": 30}
    )
    analysis = run_analysis(tmp_path, plan)
    fault = analysis.summary["faults"][0]
    assert fault["recovery_status"] == "not_recovered"
    assert fault["recovery_s"] is None
    check = next(c for c in analysis.slo.checks if c.name == "recovery_s")
    assert check.status == "fail" and "f" in check.detail


def test_recovery_target_is_the_scenario_success_rate_slo(tmp_path: Path) -> None:
    # Half the requests fail in [30, 40): a 40 % target is met throughout, the default 99 % is not.
    burst = ErrorBurst(30, 40, error_rate=0.5)
    lenient = SyntheticRun(
        duration_s=90, faults=[Fault("f", 30, 60)], bursts=[burst], slos={"success_rate": 0.4}
    )
    strict = SyntheticRun(duration_s=90, faults=[Fault("f", 30, 60)], bursts=[burst])
    assert run_analysis(tmp_path, lenient, "lenient").summary["faults"][0]["recovery_s"] == 0.0
    assert run_analysis(tmp_path, strict, "strict").summary["faults"][0]["recovery_s"] == 10.0


def test_a_fault_without_an_end_lasts_until_the_run_end(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=60, faults=[Fault("stuck", 20, None)])
    analysis = run_analysis(tmp_path, plan)
    fault = analysis.summary["faults"][0]
    assert fault["ended"] is False and fault["end_s"] == 60.0
    assert any("no end event" in w for w in analysis.summary["warnings"])


def test_a_killed_run_without_an_end_time_ends_at_its_last_record(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=30, rps=10, write_ended=False, faults=[Fault("stuck", 10, None)])
    analysis = run_analysis(tmp_path, plan)
    assert analysis.summary["duration_s"] == pytest.approx(29.9)
    assert analysis.summary["faults"][0]["end_s"] == pytest.approx(29.9)


def test_overlapping_faults_are_judged_together(tmp_path: Path) -> None:
    # B starts while A is active: A's recovery must wait for B's errors, and B has no clean baseline.
    plan = SyntheticRun(
        duration_s=120,
        faults=[Fault("a", 20, 40), Fault("b", 30, 50), Fault("c", 90, 100)],
        bursts=[ErrorBurst(20, 25), ErrorBurst(45, 50)],
    )
    a, b, c = run_analysis(tmp_path, plan).summary["faults"]
    assert a["horizon_s"] == 90.0 and b["horizon_s"] == 90.0
    assert a["recovery_s"] == 30.0  # errors until 50
    assert b["recovery_s"] == 20.0
    assert b["baseline"]["requests"] == 0
    assert c["baseline"]["from_s"] == 60.0  # 30 s before, clear of b's end at 50


def test_a_recovery_shortly_before_a_back_to_back_fault_still_counts(tmp_path: Path) -> None:
    # Errors in [30, 38), the next fault at 45: no whole 10 s window fits after 38, the cut ones do.
    plan = SyntheticRun(
        duration_s=90, faults=[Fault("a", 20, 40), Fault("b", 45, 60)], bursts=[ErrorBurst(30, 38)]
    )
    a = run_analysis(tmp_path, plan).summary["faults"][0]
    assert a["horizon_s"] == 45.0
    assert a["recovery_status"] == "recovered"
    assert a["recovery_s"] == 18.0 and a["recovery_after_end_s"] == 0.0


def test_errors_just_before_the_horizon_are_judged(tmp_path: Path) -> None:
    # The last 2 s before the next fault fail: the last (cut, 5 s) window holds them, so not recovered.
    plan = SyntheticRun(
        duration_s=90, faults=[Fault("a", 20, 40), Fault("b", 45, 60)], bursts=[ErrorBurst(43, 45)]
    )
    a = run_analysis(tmp_path, plan).summary["faults"][0]
    assert a["recovery_status"] == "not_recovered"
    assert a["time_to_first_error_s"] == 23.0


def test_a_fault_that_could_not_be_applied_is_listed_and_never_analysed(tmp_path: Path) -> None:
    plan = SyntheticRun(
        duration_s=90,
        faults=[
            Fault("applied", 20, 30),
            Fault("broken", 50, 70, failed="ToxiproxyError: 404 no such proxy"),
        ],
        bursts=[ErrorBurst(55, 60)],  # errors in the failed fault's planned window: not its doing
    )
    analysis = run_analysis(tmp_path, plan)
    summary = analysis.summary
    assert [f["name"] for f in summary["faults"]] == ["applied"]
    assert summary["faults"][0]["horizon_s"] == 90.0  # a failed fault does not cut the horizon
    assert summary["failed_faults"] == [
        {"fault_id": "f2", "name": "broken", "action": "toxic", "target": "provider-a", "at_s": 50.0,
         "error": "ToxiproxyError: 404 no such proxy"}
    ]  # fmt: skip
    assert any("could not be applied" in w and "broken" in w for w in summary["warnings"])
    check = next(c for c in analysis.slo.checks if c.name == "faults_applied")
    assert check.status == "incomplete" and "f2" in check.detail and check.actual == 1.0
    assert analysis.slo.verdict == "incomplete" and summary["verdict"] == "incomplete"
    assert [r["cause"] for r in summary["completeness"]["reasons"]] == ["fault_not_applied"]
    assert analysis.slo.passed is False


def test_a_failed_lift_and_an_end_reason_are_kept(tmp_path: Path) -> None:
    path = write_run(
        SyntheticRun(duration_s=60, faults=[Fault("a", 10, 20), Fault("b", 30, 40)]), tmp_path / "r"
    )
    lines = (path / "faults.jsonl").read_text().splitlines()
    ends = [i for i, line in enumerate(lines) if '"end"' in line]
    lines[ends[0]] = lines[ends[0]][:-1] + ', "error": "ToxiproxyError: timeout"}'
    lines[ends[1]] = lines[ends[1]][:-1] + ', "reason": "run ended"}'
    (path / "faults.jsonl").write_text("\n".join(lines) + "\n")
    summary = analyse(load_run(path)).summary
    a, b = summary["faults"]
    assert a["lift_error"] == "ToxiproxyError: timeout" and a["end_reason"] is None
    assert b["end_reason"] == "run ended" and b["lift_error"] is None
    assert any("could not be lifted" in w for w in summary["warnings"])
    assert next(c for c in summary["slo"]["checks"] if c["name"] == "faults_applied")["status"] == "pass"


def test_provider_outage_gives_the_planted_drain_and_return_times(tmp_path: Path) -> None:
    plan = SyntheticRun(
        duration_s=120,
        rps=300,
        faults=[Fault("kill-a", 30, 60, target="provider-a")],
        outages=[ProviderOutage("provider-a", 32, 65, attempts=2)],
    )
    summary = run_analysis(tmp_path, plan).summary
    failover = summary["faults"][0]["failover"]
    assert failover["provider"] == "provider-a"
    assert failover["baseline_share"] == pytest.approx(1 / 3, abs=0.03)
    assert failover["drained_s"] == 2.0
    assert failover["returned_s"] == 5.0
    assert failover["baseline_attempts_mean"] == 1.0
    assert failover["during_attempts_mean"] > 1.2
    assert summary["failover"]["attempts"]["distribution"]["2"] > 0
    assert sum(summary["providers"].values()) == pytest.approx(1.0)
    assert summary["providers"]["provider-a"] < summary["providers"]["provider-b"]


def test_a_fault_target_naming_a_provider_inside_a_longer_name_is_matched(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=60, faults=[Fault("latency", 20, 40, target="lab-run1-provider-b-proxy")])
    assert run_analysis(tmp_path, plan).summary["faults"][0]["failover"]["provider"] == "provider-b"


def test_a_fault_on_something_else_has_no_failover_section(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=60, faults=[Fault("cpu", 20, 40, target="gateway")])
    assert run_analysis(tmp_path, plan).summary["faults"][0]["failover"] is None


def test_head_gaps_duplicates_order_and_delay(tmp_path: Path) -> None:
    heads = HeadsPlan(
        subscribers=3,
        delay_s=0.25,
        missing=[(1, 1010, 1014), (1, 1030, 1030)],
        duplicates=[(0, 1020)],
        late=[(2, 1040, 2.5)],
    )
    sub = run_analysis(tmp_path, SyntheticRun(duration_s=60, rps=10, heads=heads)).summary["subscription"]
    per = {s["subscriber"]: s for s in sub["per_subscriber"]}
    assert per["sub-1"]["missing"] == 6 and per["sub-1"]["max_gap"] == 5
    assert [(g["from_block"], g["to_block"]) for g in per["sub-1"]["gaps"]] == [(1010, 1014), (1030, 1030)]
    assert per["sub-1"]["gaps"][0]["ended_at_s"] == pytest.approx(15.25)
    assert per["sub-1"]["longest_silence_s"] == pytest.approx(6.0)
    assert per["sub-0"]["duplicates"] == 1 and per["sub-0"]["missing"] == 0
    assert per["sub-2"]["out_of_order"] == 1 and per["sub-2"]["duplicates"] == 0
    assert per["sub-2"]["head_delay_s"]["max"] == pytest.approx(2.75, abs=1e-3)
    assert sub["heads"] == 3 * 60 - 6 + 1
    assert (sub["missing"], sub["duplicates"], sub["max_gap"]) == (6, 1, 5)
    assert sub["head_delay_s"]["p50"] == pytest.approx(0.25, abs=1e-3)


def test_breaker_activity_counts_transitions_and_time_open(tmp_path: Path) -> None:
    events = [
        *breaker_events("provider-a", 10, 25, 26),
        *breaker_events("provider-a", 40, 45, 46),
        {
            "type": "breaker",
            "provider": "provider-b",
            "transport": "ws",
            "from": "open",
            "to": "half_open",
            "ts": 5,
        },
        {
            "type": "breaker",
            "provider": "provider-c",
            "transport": "http",
            "from": "closed",
            "to": "open",
            "ts": 50,
        },
        {"type": "failover", "ts": 11},
        {"type": "something_new", "ts": 12, "whatever": [1]},
    ]
    breakers = run_analysis(tmp_path, SyntheticRun(duration_s=60, gateway_events=events)).summary["breakers"]
    by_provider = {b["provider"]: b for b in breakers["breakers"]}
    assert by_provider["provider-a"]["opens"] == 2
    assert by_provider["provider-a"]["closes"] == 2
    assert by_provider["provider-a"]["time_open_s"] == pytest.approx(15 + 5)
    assert by_provider["provider-b"]["time_open_s"] == pytest.approx(5)  # open since the run started
    assert by_provider["provider-c"]["time_open_s"] == pytest.approx(10)  # still open at the end
    assert by_provider["provider-c"]["final_state"] == "open"
    assert breakers["opens"] == 3
    assert breakers["event_types"] == {"breaker": 8, "failover": 1, "something_new": 1}


def test_no_gateway_events_file_means_breaker_activity_is_unknown(tmp_path: Path) -> None:
    summary = run_analysis(tmp_path, SyntheticRun(duration_s=10, rps=10)).summary
    assert summary["breakers"]["opens"] is None


def test_latency_figures_are_exact_linear_quantiles_of_successful_requests(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=60, rps=200, base_error_rate=0.05, seed=7)
    path = write_run(plan, tmp_path / "run")
    run = load_run(path)
    summary = analyse(run).summary
    ok = run.requests["ok"].to_numpy()
    latency = run.requests["latency_ms"].to_numpy()[ok]
    assert summary["latency_ms"]["p95"] == pytest.approx(float(np.quantile(latency, 0.95)), rel=1e-12)
    assert summary["latency_ms"]["max"] == pytest.approx(float(latency.max()))
    assert summary["requests"] == 12_000 and summary["errors"] == (~ok).sum()
    assert summary["error_classes"] == {"rpc_error": summary["errors"]}
    assert sum(m["requests"] for m in summary["methods"]) == 12_000
    assert summary["throughput_rps"] == pytest.approx(200.0)


def test_percentile_bands_agree_with_exact_quantiles_within_a_percent(tmp_path: Path) -> None:
    analysis = run_analysis(tmp_path, SyntheticRun(duration_s=20, rps=2_000, seed=2))
    requests, timeline = analysis.run.requests, analysis.timeline
    first_bin = requests[(requests["t"] < timeline.width).to_numpy()]
    exact = np.quantile(first_bin["latency_ms"].to_numpy(), 0.95, method="inverted_cdf")
    assert timeline.bands["p95"][0] == pytest.approx(exact, rel=0.01)
    assert timeline.requests.sum() == len(requests)


def test_requests_from_several_writers_are_merged_in_time_order(tmp_path: Path) -> None:
    run = load_run(
        write_run(SyntheticRun(duration_s=10, rps=100, workers=3, part_seconds=1.0), tmp_path / "r")
    )
    t = run.requests["t"].to_numpy()
    assert len(list((tmp_path / "r" / "requests").glob("part-*.parquet"))) == 30
    assert np.all(np.diff(t) > 0) and t.size == 1000
