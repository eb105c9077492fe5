"""Benchmark the checker's load side: `AnswerInspector.inspect` per answer, over the load's method mix.

The open-model goal is 2,500 requests/s per Locust process with recording ≤ 15 % overhead, i.e. a
budget of 400 µs per request of which the checker may take a share: this prints µs per answer for each
method (answers as the lab's providers give them, parsed from JSON as the load gets them) and for the
load's default mix, and the share of that 400 µs budget.

    .venv/bin/python bench/checker.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import random
import time

import orjson

from lab.checker import AnswerInspector
from lab.load.rpc import ChainKnowledge, params_for
from lab.provider.chain import Chain
from lab.provider.methods import METHODS, NodeConfig, View
from lab.scenario.models import DEFAULT_METHODS

BUDGET_US = 1e6 / 2500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per method")
    args = parser.parse_args()
    genesis = time.time() - 1_000_000
    chain = Chain(1, genesis, 1.0)
    inspector = AnswerInspector(1, genesis, 1.0)
    rng = random.Random(1)
    knowledge = ChainKnowledge()
    view = View(chain, NodeConfig("bench"), chain.head_at(time.time()))
    for method in ("eth_getBlockByNumber", "eth_blockNumber", "eth_getLogs"):  # learn hashes and a head
        for _ in range(50):
            name, params = params_for(method, knowledge, rng)
            knowledge.learn(name, METHODS[name](params, view))
    print(f"{'method':28} {'µs/answer':>10} {'answers':>9}")
    mix_cost = 0.0
    total_weight = sum(DEFAULT_METHODS.values())
    for method, weight in DEFAULT_METHODS.items():
        samples = []
        for _ in range(200):
            name, params = params_for(method, knowledge, rng)
            view.head = chain.head_at(time.time())
            samples.append((name, params, orjson.loads(orjson.dumps(METHODS[name](params, view)))))
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            for name, params, result in samples:
                inspector.inspect(name, params, result, time.time())
            done += len(samples)
        per = (time.perf_counter() - started) / done * 1e6
        mix_cost += per * weight / total_weight
        print(f"{method:28} {per:10.1f} {done:9,}")
    share = mix_cost / BUDGET_US
    print(f"{'default mix':28} {mix_cost:10.1f}   ({share:.1%} of {BUDGET_US:.0f} µs per request)")


if __name__ == "__main__":
    main()
