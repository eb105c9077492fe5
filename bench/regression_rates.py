"""False-alarm and detection rates of `lab compare` on synthetic runs with run-to-run noise.

Each trial writes fresh synthetic runs (lab.analysis.synthetic: `repeats` gives each run its own median
latency, ±8 % between runs, base error rate and burst length) and compares them:
- repeats: 5 baseline runs against 5 current runs;
- nightly: a history of 10 nights against one night.
A/A trials change nothing (a "regression" verdict is a false alarm); planted trials change one thing
(success −1 pp, p95 +25 %, the fault's recovery +5 s, a new subscription gap) and count as detected when
that metric's verdict is "regression". For contrast, the old per-request test (Mann-Whitney over every
request's latency, p < 0.05, shift > 5 %) on the first run of each A/A side.

    .venv/bin/python bench/regression_rates.py [TRIALS=40]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lab.analysis import twosample
from lab.analysis.baseline import figures, run_summary
from lab.analysis.compare import CompareSettings, Side, compare
from lab.analysis.loading import load_run
from lab.analysis.synthetic import (
    ErrorBurst,
    Fault,
    HeadsPlan,
    LatencyShift,
    SyntheticRun,
    repeats,
    write_run,
)

PLAN = SyntheticRun(
    duration_s=60, rps=30, faults=[Fault("f", 20, 30)], bursts=[ErrorBurst(20, 22)], heads=HeadsPlan()
)
PLANTED: dict[str, dict[str, Any]] = {
    "success_rate": {"base_error_rate": 0.01},
    "p95_ms": {"shifts": [LatencyShift(factor=1.25)]},
    "recovery_s[f]": {"bursts": [ErrorBurst(20, 27)]},
    "max_gap": {"heads": HeadsPlan(missing=[(0, 1030, 1032)])},
}
MODES = {"repeats (5 vs 5)": (5, 5), "nightly (10 nights vs 1)": (10, 1)}


def side(directory: Path, plan: SyntheticRun, runs: int, seed: int) -> Side:
    paths = [write_run(p, directory / f"r{i}") for i, p in enumerate(repeats(plan, runs, seed))]
    return Side(directory, "synthetic", [figures(run_summary(p), p) for p in paths])


def per_request_alarm(a: Path, b: Path) -> bool:
    x, y = (load_run(p).requests for p in (a, b))
    lx, ly = (r["latency_ms"].to_numpy()[r["ok"].to_numpy()] for r in (x, y))
    rank, shift = twosample.mann_whitney(lx, ly), twosample.hodges_lehmann(lx, ly)
    return (
        rank.p_value < 0.05
        and abs(shift.estimate) > 0.05 * float(np.median(lx))
        and shift.low * shift.high > 0
    )


def main(trials: int) -> None:
    settings = CompareSettings()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old_alarms = 0
        for mode, (k, n) in MODES.items():
            false_alarms = 0
            detected = dict.fromkeys(PLANTED, 0)
            for trial in range(trials):
                base = side(root / f"{k}-{trial}-a", PLAN, k, seed=10_000 + trial)
                same = side(root / f"{k}-{trial}-b", PLAN, n, seed=20_000 + trial)
                false_alarms += compare(base, same, settings)["verdict"] == "regression"
                if k == 5:
                    old_alarms += per_request_alarm(
                        root / f"{k}-{trial}-a" / "r0", root / f"{k}-{trial}-b" / "r0"
                    )
                for metric, change in PLANTED.items():
                    planted = side(
                        root / f"{k}-{trial}-{metric}", replace(PLAN, **change), n, seed=30_000 + trial
                    )
                    verdicts = {m["name"]: m["verdict"] for m in compare(base, planted, settings)["metrics"]}
                    detected[metric] += verdicts[metric] == "regression"
            print(f"{mode}: A/A false alarms {false_alarms}/{trials} ({false_alarms / trials:.1%})")
            for metric, count in detected.items():
                print(f"  detected {metric:14s} {count}/{trials} ({count / trials:.1%})")
        print(f"per-request Mann-Whitney on the same A/A pairs: {old_alarms}/{trials} false alarms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
