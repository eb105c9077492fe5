"""Benchmark `lab report` on a synthetic record of 10 million requests and 100,000 heads.

The record is shaped like a real hour-long run: 4 Locust workers each closing one parquet part per
second (14,400 request parts), 28 WebSocket subscribers, faults with error bursts, a provider outage and
breaker events, and the checker's columns (lab.checker: 200 clients, head answers, a stale window,
wrong and orphaned answers, a reorg). `lab report` runs as a child process; its wall time and peak RSS
(from wait4's rusage) are printed against the targets (60 s, 4 GB). Exit code 1 when a target is missed.

    .venv/bin/python bench/analysis.py [--dir /tmp/lab-bench-analysis] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.analysis.synthetic import (
    CheckerPlan,
    ErrorBurst,
    Fault,
    HeadsPlan,
    LatencyShift,
    ProviderOutage,
    StaleWindow,
    SyntheticRun,
    breaker_events,
    write_run,
)

TARGET_SECONDS = 60.0
TARGET_BYTES = 4 * 1024**3
DURATION_S = 3600.0
REQUESTS = 10_000_000
SUBSCRIBERS = 28  # × 3,600 one-second blocks ≈ 100,000 heads


def plan() -> SyntheticRun:
    return SyntheticRun(
        duration_s=DURATION_S,
        rps=REQUESTS / DURATION_S,
        workers=4,
        part_seconds=1.0,
        faults=[
            Fault("latency-b", 600, 900, target="provider-b", params={"latency_ms": 200}),
            Fault("kill-a", 1500, 1800, target="provider-a", action="kill"),
            Fault("partition-c", 2700, 2760, target="provider-c", action="partition"),
            Fault("reorg", 3000, 3000, action="reorg", params={"fork_block": 3_998, "depth": 3}),
        ],
        checker=CheckerPlan(
            clients=200,
            stale=[StaleWindow(1200, 1230, 10)],
            wrong_at_s=[100.0, 2000.0],
            orphaned_at_s=[2500.0, 3100.0],
            orphaned_branch=3_998,
        ),
        shifts=[LatencyShift(600, 900, factor=1.0, add_ms=60)],
        bursts=[ErrorBurst(1500, 1504, 1.0), ErrorBurst(2700, 2712, 0.3, "timeout")],
        outages=[ProviderOutage("provider-a", 1502, 1830), ProviderOutage("provider-c", 2705, 2790)],
        heads=HeadsPlan(subscribers=SUBSCRIBERS, missing=[(3, 2000, 2009)], duplicates=[(5, 1500)]),
        gateway_events=[
            *breaker_events("provider-a", 1501, 1561, 1830),
            *breaker_events("provider-c", 2702, 2762, 2790),
        ],
        scenario="bench-10m",
        slos={
            "success_rate": 0.99,
            "p95_ms": 500,
            "p99_ms": 1000,
            "max_gap": 0,
            "recovery_s": 30,
            "wrong_answers": 0,
            "head_regressions": 0,
            "max_stale_blocks": 1,
            "stale_read_rate": 0.001,
        },
    )


def build(directory: Path, rebuild: bool) -> Path:
    marker = directory / ".complete"
    if marker.exists() and not rebuild:
        print(f"reusing {directory}")
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    write_run(plan(), directory)
    marker.touch()
    parts = len(list((directory / "requests").glob("part-*.parquet")))
    print(f"built {directory} in {time.perf_counter() - started:.1f} s ({parts} request parts)")
    return directory


def time_report(directory: Path) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS bytes, exit code) of `lab report DIRECTORY` in a child process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "lab", "report", str(directory)], stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss * 1024, child.returncode  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/lab-bench-analysis"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the record even if one exists")
    args = parser.parse_args()
    directory = build(args.dir, args.rebuild)
    seconds, cpu, peak, code = time_report(directory)
    ok = seconds < TARGET_SECONDS and peak < TARGET_BYTES and code in (0, 1)
    print(
        f"lab report: {seconds:.1f} s wall (target < {TARGET_SECONDS:.0f} s), {cpu:.1f} s CPU (user + system)"
    )
    print(f"lab report: {peak / 1024**2:.0f} MiB peak RSS (target < {TARGET_BYTES / 1024**3:.0f} GiB)")
    print(f"lab report: exit code {code} (the verdict: 0 pass, 1 SLO missed; anything else is a crash)")
    print(
        f"cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; record: {REQUESTS:,} requests, "
        f"~{SUBSCRIBERS * int(DURATION_S):,} heads"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
