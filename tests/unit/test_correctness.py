"""The checker's analysis side (lab.analysis.correctness) on synthetic records with planted answers:
stale reads, wrong answers, orphaned branches against the run's reorgs, head regressions, the SLOs and
the report's first anomalies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab.analysis.loading import load_run
from lab.analysis.report import write_report
from lab.analysis.subscriptions import analyse_subscriptions
from lab.analysis.summary import Analysis, analyse
from lab.analysis.synthetic import CheckerPlan, Fault, HeadsPlan, StaleWindow, SyntheticRun, write_run
from lab.provider.chain import Chain

SLOS = {"wrong_answers": 0, "head_regressions": 0, "max_stale_blocks": 2, "stale_read_rate": 0.01}


def analysed(tmp_path: Path, plan: SyntheticRun) -> Analysis:
    return analyse(load_run(write_run(plan, tmp_path / "run")))


def verdicts(analysis: Analysis) -> dict[str, str]:
    return {c.name: c.status for c in analysis.slo.checks}


def test_a_clean_checked_run_passes_every_correctness_slo(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, SyntheticRun(duration_s=30, rps=200, checker=CheckerPlan(), slos=SLOS))
    c = analysis.summary["correctness"]
    assert c["checked"] == 6000 and c["wrong_answers"] == 0 and c["stale"] == 0
    assert c["max_stale_blocks"] == 0 and c["head_regressions"] == 0
    assert c["first_anomalies"] == {}
    assert all(v == "pass" for v in verdicts(analysis).values())


def test_planted_stale_wrong_and_orphaned_answers_are_found_and_fail(tmp_path: Path) -> None:
    checker = CheckerPlan(
        clients=10,
        stale=[StaleWindow(10, 12, 20)],
        wrong_at_s=[5.0, 25.0],
        orphaned_at_s=[15.0],
        orphaned_branch=1,
    )
    slos = SLOS | {"stale_read_rate": 0.05}
    analysis = analysed(tmp_path, SyntheticRun(duration_s=30, rps=200, checker=checker, slos=slos))
    c = analysis.summary["correctness"]
    heads_in_window = c["stale"]
    assert 150 < heads_in_window < 250  # half of 400 answers in 2 s are eth_blockNumber
    assert c["max_stale_blocks"] == 20
    assert c["wrong"] == 2 and c["orphaned"] == 1 and c["wrong_answers"] == 3
    assert c["client_head_regressions"] == heads_in_window  # each client saw a newer head first
    first = c["first_anomalies"]
    assert (
        first["wrong"]["t"] == 5.0
        and first["wrong"]["expected"] == "0x5208"
        and first["wrong"]["got"] == "0x0"
    )
    assert first["orphaned"]["t"] == 15.0 and first["orphaned"]["provider"]
    assert first["stale"]["t"] >= 10.0 and first["head_regression"]["count"] == heads_in_window
    assert verdicts(analysis) | {"traffic_recorded": "pass"} == {
        "traffic_recorded": "pass",
        "run_complete": "pass",
        "wrong_answers": "fail",
        "head_regressions": "fail",
        "max_stale_blocks": "fail",
        "stale_read_rate": "pass",  # about 200 of 6000, under 5 %
    }
    paths = write_report(analysis, tmp_path / "report")
    html = paths["report.html"].read_text()
    assert "Answers checked against the chain" in html and "orphaned branch" in html and "0x5208" in html
    assert "### Answers checked" in paths["summary.md"].read_text()


def test_a_branch_made_canonical_by_a_reorg_is_right_and_the_old_one_is_orphaned_after_it(
    tmp_path: Path,
) -> None:
    reorg = Fault(
        "reorg", 10.0, 10.0, target="provider-a", action="reorg", params={"fork_block": 1_005, "depth": 3}
    )
    # Answers on branch 1_005 (blocks ≥ 1_005) before the reorg, within its grace, and after it.
    checker = CheckerPlan(orphaned_at_s=[5.0, 9.0, 15.0], orphaned_branch=1_005)
    analysis = analysed(
        tmp_path, SyntheticRun(duration_s=30, rps=50, checker=checker, faults=[reorg], slos=SLOS)
    )
    c = analysis.summary["correctness"]
    assert c["orphaned"] == 1 and c["first_anomalies"]["orphaned"]["t"] == 5.0  # before it: not yet canonical
    assert c["reorgs"] == [{"at_s": 10.0, "target": "provider-a", "fork_block": 1_005}]


def test_a_run_without_the_checker_has_no_data_and_fails(tmp_path: Path) -> None:
    analysis = analysed(tmp_path, SyntheticRun(duration_s=10, rps=50, slos=SLOS))
    assert analysis.summary["correctness"]["wrong_answers"] is None
    assert {
        k: v for k, v in verdicts(analysis).items() if k not in ("traffic_recorded", "run_complete")
    } == dict.fromkeys(SLOS, "no_data")
    assert not analysis.slo.passed


def test_subscriber_regressions_are_told_from_reorgs_and_duplicates(tmp_path: Path) -> None:
    heads = HeadsPlan(subscribers=1, duplicates=[(0, 1_010)], late=[(0, 1_020, 3.5)])
    analysis = analysed(tmp_path, SyntheticRun(duration_s=30, rps=10, heads=heads))
    sub = analysis.summary["subscription"]
    assert sub["duplicates"] == 1 and sub["reorgs"] == 0
    assert sub["regressions"] == 1  # the late head arrived after newer ones; the duplicate came right after
    assert analysis.summary["correctness"]["head_regressions"] == 1


def test_a_reorgs_new_branch_is_not_a_regression_but_an_old_head_again_is() -> None:
    chain = Chain(1, 1_700_000_000, 1.0)
    old = [(n, chain.block_hash(n)) for n in range(100, 106)]
    chain.reorg(104)
    new = [(n, chain.block_hash(n)) for n in (104, 105, 106)]
    delivered = old + new + [old[5]]  # the new branch from the fork, then the orphaned 105 again
    heads = pd.DataFrame(
        {
            "t": [float(i) for i in range(len(delivered))],
            "subscriber": pd.Categorical(["s"] * len(delivered)),
            "subscription": pd.Categorical(["newHeads"] * len(delivered)),
            "block_number": [n for n, _ in delivered],
            "block_hash": [h for _, h in delivered],
            "block_timestamp": [1_700_000_000 + n for n, _ in delivered],
        }
    )
    sub = analyse_subscriptions(heads, 1_700_000_000.0, 20.0)
    assert sub["reorgs"] == 2 and sub["duplicates"] == 1
    assert sub["regressions"] == 1  # only the orphaned head delivered again


def test_subscriber_heads_left_on_the_orphaned_branch_or_foreign_are_wrong_answers() -> None:
    from lab.analysis.correctness import analyse_correctness
    from lab.analysis.loading import FaultWindow

    old = Chain(1, 1_700_000_000, 1.0)
    numbers = list(range(100, 110))
    hashes = [old.block_hash(n) for n in numbers]
    hashes[-1] = Chain(5, 1_700_000_000, 1.0).block_hash(109)  # another chain's head
    heads = pd.DataFrame(
        {
            "t": [float(i) for i in range(len(numbers))],
            "subscriber": pd.Categorical(["s"] * len(numbers)),
            "subscription": pd.Categorical(["newHeads"] * len(numbers)),
            "block_number": numbers,
            "block_hash": hashes,
            "block_timestamp": [1_700_000_000 + n for n in numbers],
        }
    )
    reorg = FaultWindow("r#0", "r", "reorg", "p1", {"fork_block": 104}, 2.0, 2.0, True)
    requests = pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in ("check", "client", "provider", "method", "check_detail")}
        | {
            c: pd.Series([], dtype=float)
            for c in ("t", "answer_block", "answer_branch", "stale_blocks", "latency_ms")
        }
    )
    c = analyse_correctness(requests, [reorg], None, heads, 1)
    # Heads 104.. of the old branch arriving from t = 4 s (2 s of grace after the reorg) are orphaned.
    assert c["subscriber_heads"]["orphaned"] == 5 and c["subscriber_heads"]["wrong"] == 1
    assert c["subscriber_heads"]["first_orphaned"]["block_number"] == 104
    assert c["wrong_answers"] == 6


def test_a_reorg_a_subscriber_was_never_shown_is_a_missed_reorg_and_a_wrong_answer(tmp_path: Path) -> None:
    chain = Chain(1, 1_700_000_000, 1.0)
    old = [chain.block(n, False) for n in range(100, 106)]
    chain.reorg(104)
    new = chain.block(106, False)  # a gateway that drops the reorg's heads delivers 106 on top of them
    delivered = [*old, new]
    heads = pd.DataFrame(
        {
            "t": [float(i) for i in range(len(delivered))],
            "subscriber": pd.Categorical(["s"] * len(delivered)),
            "subscription": pd.Categorical(["newHeads"] * len(delivered)),
            "block_number": [int(b["number"], 16) for b in delivered],
            "block_hash": [b["hash"] for b in delivered],
            "parent_hash": [b["parentHash"] for b in delivered],
            "block_timestamp": [int(b["timestamp"], 16) for b in delivered],
        }
    )
    sub = analyse_subscriptions(heads, 1_700_000_000.0, 10.0)
    assert sub["missed_reorgs"] == 1 and sub["reorgs"] == 0 and sub["regressions"] == 0
