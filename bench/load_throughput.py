"""How much JSON-RPC load one Locust process of the lab generates, and what recording every request costs.

Runs Locust headless (locustfiles/http_user.py, users back to back, no wait) against one mock provider
process for a fixed time, with and without LAB_RUN_DIR, and prints requests/s for each. Pin the
provider and Locust to separate cores (`--cpus 0,1`) for figures that do not fight each other.

    .venv/bin/python bench/load_throughput.py [--seconds 15] [--users 20] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.provider import start_provider_process
from lab.record import read_arrow

ROOT = Path(__file__).resolve().parents[1]


def run_locust(url: str, seconds: int, users: int, run_dir: Path | None, cpu: str | None) -> float:
    """Requests per second over the run (from the record when recording, else from Locust's CSV)."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "LAB_RPC_PATH": "/", "LAB_LOAD_RATE_PER_USER": "0", "LAB_LOAD_TIMEOUT": "5s"}
        env.pop("LAB_RUN_DIR", None)
        if run_dir is not None:
            env["LAB_RUN_DIR"] = str(run_dir)
        command = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "http_user.py"), "--headless",
            "-H", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary",
            "--csv", f"{scratch}/stats", "--exit-code-on-error", "0",
        ]  # fmt: skip
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=seconds + 60)
        if run_dir is not None:
            ts = read_arrow(run_dir, "requests").column("ts").cast("int64").to_numpy() / 1e6
            return len(ts) / (ts.max() - ts.min())
        with open(f"{scratch}/stats_stats.csv", newline="") as fh:
            total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
        return float(total["Request Count"]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--cpus", default=None, help="provider,locust cores, e.g. 0,1")
    args = parser.parse_args()
    provider_cpu, locust_cpu = args.cpus.split(",") if args.cpus else (None, None)
    with start_provider_process("bench", cpu=None if provider_cpu is None else int(provider_cpu)) as provider:
        url = f"http://127.0.0.1:{provider.port}"
        plain = run_locust(url, args.seconds, args.users, None, locust_cpu)
        with tempfile.TemporaryDirectory() as run_dir:
            recorded = run_locust(url, args.seconds, args.users, Path(run_dir), locust_cpu)
    print(f"users {args.users}, {args.seconds} s, one Locust process against one mock provider")
    print(f"  without recording: {plain:8.0f} req/s")
    print(f"  recording all:     {recorded:8.0f} req/s  ({recorded / plain - 1:+.0%})")


if __name__ == "__main__":
    main()
