"""How much JSON-RPC load one Locust process of the lab generates, how closely the open model keeps its
schedule, and what recording every request costs; the closed model's figures beside.

Runs Locust headless (the lab's locustfile, one process) against one mock provider process, each on its
own core when `--cpus` says so, and prints:
  - open model at `--lag-rate` (default 1,000 req/s): achieved vs target rate, schedule lag (actual minus
    intended send time) p50/p99, service and response time p50/p99;
  - the largest rate one process holds while recording every request (achieved within 1 % of the
    target, nothing `not_sent`), trying the `--rates` in turn, with the `--light-methods` mix: the mock
    provider on one core serves about 2,300 req/s of the lab's default mix and would be the limit, not
    Locust (its busy share is printed beside every figure); then the default mix at that rate;
  - the cost of recording: the CPU the recorder (Locust's request listener writing the run record's
    parts) takes per request, measured in this process over realistic request events, as a share of the
    Locust process's CPU per request at the rate it held; beside it the closed model's requests/s with and
    without recording (a cross-check, noisy on a shared machine);
  - the closed model (users back to back, `--users`): requests/s with and without recording, and at the
    open model's rate as `--users` users each paced to their share.
Every run also shows how busy each process was in its steady state (CPU time over the middle of the
run): a process near 100 % is what limits the rate, and a mock provider near 100 % means the figure is
the provider's limit, not Locust's.
Goals (issue 11): ≥ 2,500 req/s per process within 1 % of the target; lag p99 ≤ 5 ms at 1,000 req/s;
recording ≤ 15 % of the throughput. A shared or busy machine shows in every figure: note its load.

    .venv/bin/python bench/load_throughput.py [--seconds 10] [--cpus 0,1] [--rates 2000,2500,3000]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from lab.load import LOCUSTFILE
from lab.load.recorder import Recorder
from lab.provider import start_provider_process
from lab.record import read_arrow

# The steady state: from this long after Locust's launch (imports, start-up) to one second before its
# schedule ends.
WARM_UP_S = 4.0


@dataclass
class Figures:
    target: float | None  # req/s (None: closed, back to back)
    achieved: float  # req/s actually sent over the run
    not_sent: int
    lag_ms: tuple[float, float] | None  # p50, p99 of actual minus intended send
    service_ms: tuple[float, float] | None
    response_ms: tuple[float, float] | None
    locust_busy: float  # share of a core the Locust process used in the steady state
    provider_busy: float  # and the mock provider

    def cpu_per_request_us(self) -> float:
        return self.locust_busy / self.achieved * 1e6 if self.achieved else float("nan")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_busy(pids: tuple[int, int], seconds: float) -> tuple[float, float]:
    """Shares of a core each of `pids` used over the steady state of a run `seconds` long that was just
    launched (a sampling window, not a wait for an event)."""
    launched = time.monotonic()
    start, end = launched + WARM_UP_S, launched + WARM_UP_S + max(1.0, seconds - WARM_UP_S)
    time.sleep(start - time.monotonic())
    first = [cpu_seconds(pid) for pid in pids]
    time.sleep(end - time.monotonic())
    second = [cpu_seconds(pid) for pid in pids]
    span = end - start
    return (second[0] - first[0]) / span, (second[1] - first[1]) / span


def run_locust(
    url: str,
    load: dict[str, Any],
    seconds: float,
    record: bool,
    cpu: str | None,
    provider_pid: int,
    methods: str | None = None,
) -> Figures:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        env = {
            **os.environ,
            "LAB_RPC_PATH": "/",
            "LAB_LOAD": orjson.dumps(
                {"duration": seconds, "timeout": "5s", "subscribers": {"new_heads": 0}, **load}
            ).decode(),
        }
        for name in ("LAB_RUN_DIR", "LAB_LOAD_METHODS", "LAB_CHECK_CHAIN"):
            env.pop(name, None)
        if methods:
            env["LAB_LOAD_METHODS"] = methods
        if record:
            env["LAB_RUN_DIR"] = str(run_dir)
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", url,
            "--only-summary", "--csv", f"{scratch}/stats", "--exit-code-on-error", "0", "--loglevel", "ERROR",
        ]  # fmt: skip
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]
        with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as locust:
            try:
                locust_busy, provider_busy = steady_busy((locust.pid, provider_pid), seconds)
                _, stderr = locust.communicate(timeout=seconds + 120)
            except BaseException:
                locust.kill()
                raise
        if locust.returncode:
            raise SystemExit(f"locust exited with {locust.returncode}: {stderr.decode()[-2000:]}")
        if load.get("model", "open") == "open":
            target = load.get("rate")
        else:  # closed: paced users aim at users × rate_per_user; back to back aims at nothing
            target = load["users"] * load["rate_per_user"] if load.get("rate_per_user") else None
        if not record:
            with open(f"{scratch}/stats_stats.csv", newline="") as fh:
                total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
            sent = int(total["Request Count"])
            return Figures(target, sent / seconds, 0, None, None, None, locust_busy, provider_busy)
        table = read_arrow(run_dir, "requests")
        ts = table.column("ts").cast("int64").to_numpy() / 1e6
        intended = table.column("intended_ts").cast("int64").to_numpy() / 1e6
        error = np.asarray(table.column("error_class").to_pylist(), dtype=object)
        refused = error == "not_sent"
        sent = ~refused
        span = seconds if load.get("model", "open") == "open" else float(ts.max() - ts.min())

        def p50_p99(values: np.ndarray) -> tuple[float, float]:
            finite = values[np.isfinite(values)]
            p50, p99 = np.quantile(finite, [0.5, 0.99]) if finite.size else (np.nan, np.nan)
            return float(p50), float(p99)

        return Figures(
            target,
            int(sent.sum()) / span,
            int(refused.sum()),
            p50_p99((ts[sent] - intended[sent]) * 1000),
            p50_p99(table.column("latency_ms").to_numpy(zero_copy_only=False).astype(float)[sent]),
            p50_p99(table.column("response_ms").to_numpy(zero_copy_only=False).astype(float)[sent]),
            locust_busy,
            provider_busy,
        )


def recording_cost_us(requests: int = 50_000) -> float:
    """CPU µs per request the recorder takes: Locust's request listener turning request events (as the
    open model's sender fires them) into rows, and the parts it closes every second, in this process."""
    rng = random.Random(0)
    methods = ["eth_blockNumber", "eth_call", "eth_getBalance", "eth_getBlockByNumber", "eth_getLogs"]
    events = []
    start = time.time()
    for i in range(requests):
        method = rng.choice(methods)
        entry = {"method": method, "ok": True, "error_class": None, "rpc_code": None, "provider": "p1",
                 "attempts": 1, "answer_block": 19_000_000 + i // 500, "answer_branch": 0, "stale_blocks": 0,
                 "check": "ok", "check_detail": None}  # fmt: skip
        context = {"transport": "http", "batch_id": None, "client": f"bench-1/c{i % 10}",
                   "intended_ts": start + i / 2500, "entries": [entry], "http_status": 200}  # fmt: skip
        events.append((method, context, start + i / 2500 + 0.0004))
    with tempfile.TemporaryDirectory() as scratch:
        recorder = Recorder(scratch)  # its own flush thread: its CPU counts in this process's time
        began = time.process_time()
        for method, context, sent_at in events:
            recorder.on_request(
                request_type="POST", name=method, response_time=1.2, response_length=120, exception=None,
                context=context, start_time=sent_at, url="http://gateway/", response=None,
            )  # fmt: skip
        recorder.close()
        spent = time.process_time() - began
        assert len(read_arrow(Path(scratch), "requests")) == requests
    return spent / requests * 1e6


def pair(values: tuple[float, float] | None) -> str:
    return "—" if values is None else f"{values[0]:7.2f} / {values[1]:8.2f}"


def line(name: str, f: Figures) -> str:
    target = "back to back" if f.target is None else f"{f.target:8.0f}"
    ratio = "" if f.target is None else f" ({f.achieved / f.target - 1:+.2%})"
    return (
        f"  {name:<28} target {target:>12}  achieved {f.achieved:8.1f} req/s{ratio:<10}"
        f"  not_sent {f.not_sent:5d}  lag p50/p99 {pair(f.lag_ms)} ms  service {pair(f.service_ms)} ms"
        f"  response {pair(f.response_ms)} ms  busy: locust {f.locust_busy:4.0%}"
        f" ({f.cpu_per_request_us():4.0f} µs/request), provider {f.provider_busy:4.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lag-rate", type=float, default=1000.0)
    parser.add_argument("--rates", default="1000,2000,2500,3000,3500,4000")
    parser.add_argument("--users", type=int, default=20, help="closed model: users back to back")
    parser.add_argument("--light-methods", default="eth_blockNumber", help="the mix for the largest rate")
    parser.add_argument("--cpus", default=None, help="provider,locust cores, e.g. 0,1")
    args = parser.parse_args()
    provider_cpu, locust_cpu = args.cpus.split(",") if args.cpus else (None, None)
    rates = [float(r) for r in args.rates.split(",")]
    open_load = {"model": "open", "max_in_flight": 2000, "users": 10}
    print(f"one Locust process against one mock provider, {args.seconds:g} s per run, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")  # fmt: skip
    with start_provider_process("bench", cpu=None if provider_cpu is None else int(provider_cpu)) as provider:
        assert provider.pid is not None
        url = f"http://127.0.0.1:{provider.port}"

        def run(load: dict[str, Any], record: bool = True, methods: str | None = None) -> Figures:
            return run_locust(url, load, args.seconds, record, locust_cpu, provider.pid or 0, methods)

        print(
            "open model (the default), the default method mix: schedule and latency, recording every request"
        )
        at_rate = run({**open_load, "rate": args.lag_rate})
        print(line(f"open @ {args.lag_rate:g}", at_rate))
        held: Figures | None = None
        print(f"open model: the largest rate one process holds while recording (within 1 %, none not_sent), "
              f"methods {args.light_methods}")  # fmt: skip
        for rate in rates:
            f = run({**open_load, "rate": rate}, methods=args.light_methods)
            holds = f.not_sent == 0 and abs(f.achieved / rate - 1) <= 0.01
            print(line(f"open @ {rate:g}", f) + ("  holds" if holds else "  DOES NOT HOLD"))
            if not holds:
                break
            held = f
        if held is not None and held.target:
            default_mix = run({**open_load, "rate": held.target})
            holds = default_mix.not_sent == 0 and abs(default_mix.achieved / held.target - 1) <= 0.01
            print(line(f"open @ {held.target:g}, default mix", default_mix)
                  + ("  holds" if holds else "  DOES NOT HOLD"))  # fmt: skip
        print("closed model (`model: closed`): users back to back, and paced to the open model's rate")
        closed = {"model": "closed", "users": args.users, "spawn_rate": args.users, "rate_per_user": None}
        closed_plain = run(closed, record=False)
        closed_rec = run(closed)
        closed_paced = run({**closed, "rate_per_user": args.lag_rate / args.users})
        print(line(f"closed {args.users} users, no rec", closed_plain))
        print(line(f"closed {args.users} users, rec", closed_rec))
        print(line(f"closed paced {args.lag_rate:g}/s", closed_paced))
    recorder_us = recording_cost_us()
    print("summary")
    if held is None:
        print("  open: no rate tried was held")
    else:
        print(f"  open: largest rate held by one process while recording: {held.target:,.0f} req/s "
              f"(achieved {held.achieved:,.1f}, goal ≥ 2,500 within 1 %); there the Locust process used "
              f"{held.locust_busy:.0%} of a core, the mock provider {held.provider_busy:.0%}")  # fmt: skip
    print(f"  open @ {args.lag_rate:g}: achieved {at_rate.achieved:,.1f} req/s "
          f"({at_rate.achieved / args.lag_rate - 1:+.2%}, goal within 1 %), schedule lag p50 "
          f"{at_rate.lag_ms[0] if at_rate.lag_ms else float('nan'):.2f} ms, p99 "
          f"{at_rate.lag_ms[1] if at_rate.lag_ms else float('nan'):.2f} ms (goal ≤ 5 ms)")  # fmt: skip
    if held is not None:
        share = recorder_us / held.cpu_per_request_us()
        print(f"  recording: {recorder_us:.1f} µs CPU per request, {share:.1%} of the Locust process's "
              f"{held.cpu_per_request_us():.0f} µs per request at {held.target:,.0f} req/s "
              "(goal ≤ 15 %)")  # fmt: skip
    closed_cost = closed_rec.achieved / closed_plain.achieved - 1 if closed_plain.achieved else float("nan")
    print(f"  closed, {args.users} users back to back: {closed_plain.achieved:,.0f} req/s without recording, "
          f"{closed_rec.achieved:,.0f} with ({closed_cost:+.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
