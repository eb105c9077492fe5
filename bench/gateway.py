"""What the reference gateway adds: latency at a fixed request rate, and its throughput, side by side
with calling the mock provider directly.

Starts one `lab provider` and one `lab gateway` in front of it (each pinned to a core with taskset),
then, on 127.0.0.1 only and for a bounded time:
1. open loop: eth_blockNumber at a fixed rate (default 500 req/s), sent on schedule whatever the
   answers do, straight to the provider and through the gateway in alternating rounds (so that the
   load of other processes on this machine hits both alike); p50/p90/p99 of each over all rounds, and
   what the gateway adds: the difference of the pooled figures and the median of the differences of
   adjacent rounds (the verdict uses the latter, which a burst of background load cannot swing);
2. throughput: as many requests as a closed loop of keep-alive connections gets through, direct and
   through the gateway (wrk when installed, else an aiohttp client).

    .venv/bin/python bench/gateway.py [--rate 500] [--duration 10] [--round 2] [--connections 32]

Targets (issue 3): under 1 ms added at the median and under 5 ms at p99 at 500 req/s; at least
2,000 req/s through one gateway process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from lab.gateway.launch import start_gateway_process
from lab.provider.launch import start_provider_process

# The closed-loop drivers are the provider benchmark's (bench/ is on sys.path when this runs as a script).
from provider import cpu_seconds, run_aiohttp, run_wrk  # isort: skip

MAX_DURATION_S = 60.0
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_RPS = 2_000
BODY = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})


PERCENTILES = (50, 90, 99)


@dataclass
class OpenLoop:
    sent: int
    errors: int
    latencies_ms: list[float]
    max_send_lag_ms: float

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[p - 1]

    @classmethod
    def pooled(cls, runs: list[OpenLoop]) -> OpenLoop:
        return cls(
            sum(r.sent for r in runs),
            sum(r.errors for r in runs),
            [latency for r in runs for latency in r.latencies_ms],
            max(r.max_send_lag_ms for r in runs),
        )


def open_loop(url: str, rate: float, duration: float, cpu: int | None) -> OpenLoop:
    """Send at `rate` per second on a fixed schedule; each latency runs from the send to the answer."""
    import aiohttp

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def main() -> OpenLoop:
        latencies: list[float] = []
        errors = 0
        max_lag = 0.0
        connector = aiohttp.TCPConnector(limit=1024)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector) as client:

            async def one() -> None:
                nonlocal errors
                started = time.perf_counter()
                try:
                    async with client.post(url, data=BODY, headers=headers) as response:
                        body = await response.read()
                        errors += response.status != 200 or b'"result"' not in body
                except aiohttp.ClientError:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)

            for _ in range(200):  # warm the connection pool
                await one()
            latencies.clear()
            count = int(rate * duration)
            tasks = []
            start = time.perf_counter() + 0.05
            for i in range(count):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # the open loop's schedule
                max_lag = max(max_lag, time.perf_counter() - due)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        return OpenLoop(count, errors, latencies, max_lag * 1000)

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(main())


def row(label: str, *cells: object) -> str:
    return f"{label:14}" + "".join(f"{cell!s:>12}" for cell in cells)


def gateway_profile(provider_url: str, ws_url: str) -> str:
    return (
        "---\nname: Bench\nslug: public\n---\n"
        "chains:\n  ethereum:\n    chain_id: 1\n    providers:\n"
        f'      - {{id: bench, url: "{provider_url}", ws_url: "{ws_url}"}}\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests per second")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per target and test (at most 60)"
    )
    parser.add_argument("--round", type=float, default=2.0, help="seconds per open-loop round")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    parser.add_argument(
        "--client", choices=["wrk", "aiohttp"], default="wrk" if shutil.which("wrk") else "aiohttp"
    )
    parser.add_argument("--gateway-cpu", type=int, default=0)
    parser.add_argument("--provider-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    duration = min(max(args.duration, 1.0), MAX_DURATION_S)
    pinned = len(os.sched_getaffinity(0)) > 1 and shutil.which("taskset") is not None

    def cpu(number: int) -> int | None:
        return number if pinned else None

    if pinned:
        print(f"cpus: gateway {args.gateway_cpu}, provider {args.provider_cpu}, client {args.client_cpu}")
    with (
        start_provider_process(
            "bench", cpu=cpu(args.provider_cpu), log_level="warning", block_time=1.0
        ) as provider,
        tempfile.TemporaryDirectory() as config_dir,
    ):
        config = Path(config_dir) / "public.yml"
        config.write_text(gateway_profile(provider.url, provider.ws_url))
        env = {"LAB_GATEWAY_LOG_LEVEL": "warning"}
        with start_gateway_process(config, cpu=cpu(args.gateway_cpu), env=env) as gateway:
            assert gateway.pid is not None
            targets = {"direct": provider.url, "via gateway": gateway.rpc_url("ethereum")}

            rounds = max(1, round(duration / args.round))
            print(
                f"\nopen loop: eth_blockNumber, {args.rate:.0f} req/s, {rounds} x {args.round:g} s per target"
            )
            print(row("", "sent", "errors", "p50 ms", "p90 ms", "p99 ms", "send lag ms"))
            runs: dict[str, list[OpenLoop]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, url in targets.items():
                    runs[name].append(open_loop(url, args.rate, args.round, cpu(args.client_cpu)))
            pooled = {name: OpenLoop.pooled(results) for name, results in runs.items()}
            for name, run in pooled.items():
                figures = [f"{run.percentile(p):.3f}" for p in PERCENTILES]
                print(row(name, run.sent, run.errors, *figures, f"{run.max_send_lag_ms:.2f}"))
            difference = [
                pooled["via gateway"].percentile(p) - pooled["direct"].percentile(p) for p in PERCENTILES
            ]
            print(row("added", "", "", *(f"{d:.3f}" for d in difference)))
            added = {
                p: statistics.median(
                    g.percentile(p) - d.percentile(p)
                    for g, d in zip(runs["via gateway"], runs["direct"], strict=True)
                )
                for p in PERCENTILES
            }
            print(row("added, median", "", "", *(f"{added[p]:.3f}" for p in PERCENTILES)))
            print(
                "(added: pooled p - direct p; added, median: median over rounds of the same, round by round)"
            )

            drive = run_wrk if args.client == "wrk" else run_aiohttp
            print(f"\nthroughput: {args.client}, {args.connections} keep-alive connections, {duration:.0f} s")
            print(row("", "req/s", "p50 ms", "p99 ms", "errors", "gw cpu", "gw us/req"))
            closed = {}
            for name, url in targets.items():
                drive(url, BODY, args.connections, 1.0, cpu(args.client_cpu))  # warm-up
                cpu_before = cpu_seconds(gateway.pid)
                result = closed[name] = drive(url, BODY, args.connections, duration, cpu(args.client_cpu))
                busy = cpu_seconds(gateway.pid) - cpu_before
                per_request = f"{busy / result.requests * 1e6:.0f}" if name == "via gateway" else "-"
                cells = (f"{result.rps:.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}", result.errors)
                print(row(name, *cells, f"{busy / result.seconds:.0%}", per_request))

    latency_ok = added[50] < TARGET_ADDED_P50_MS and added[99] < TARGET_ADDED_P99_MS
    throughput_ok = closed["via gateway"].rps >= TARGET_RPS
    verdict = "meets" if latency_ok else "MISSES"
    added_ms = f"p50 {added[50]:.3f} ms, p99 {added[99]:.3f} ms"
    print(f"\nadded latency (median of rounds): {added_ms}; {verdict} the target")
    print(f"  (under {TARGET_ADDED_P50_MS:g} ms at the median and {TARGET_ADDED_P99_MS:g} ms at p99)")
    verdict = "meets" if throughput_ok else "MISSES"
    print(
        f"gateway throughput: {closed['via gateway'].rps:.0f} req/s; {verdict} the {TARGET_RPS} req/s target"
    )


if __name__ == "__main__":
    main()
