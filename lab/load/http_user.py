"""Locust's HTTP user: JSON-RPC through the gateway, a weighted method mix with realistic params, and
batches. Imports Locust: only the Locust process imports this (through a locustfile).

On its own:  locust -f locustfiles/http_user.py -H http://127.0.0.1:4000 -u 20 -r 10
Settings come from the environment (see lab/load/settings.py: LAB_RUN_DIR to record, LAB_LOAD_METHODS,
LAB_LOAD_TIMEOUT, LAB_CHAIN, ...). Every request is recorded with its exact latency, outcome, JSON-RPC
error code and the gateway's routing metadata when LAB_RUN_DIR is set.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import orjson
from locust import FastHttpUser, constant, constant_throughput, events, task

from lab.load.recorder import install
from lab.load.rpc import ChainKnowledge, MethodMix, Outcome, classify, params_for, read_meta
from lab.load.settings import settings_from_env

SETTINGS = settings_from_env()
LOAD = SETTINGS.load
install(events, SETTINGS.run_dir)
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_user_numbers = itertools.count()


class JsonRpcUser(FastHttpUser):
    # Locust's FastHttpUser waits 60 s by default: a timeout toxic would stall a user for a minute.
    network_timeout = LOAD.timeout
    connection_timeout = LOAD.timeout
    wait_time = constant_throughput(LOAD.rate_per_user) if LOAD.rate_per_user else constant(0)

    def on_start(self) -> None:
        worker = getattr(self.environment.runner, "worker_index", 0)
        self.rng = random.Random(f"{SETTINGS.seed}/{worker}/{next(_user_numbers)}")
        self.mix = MethodMix(LOAD.methods)
        self.chain = ChainKnowledge()
        self.ids = itertools.count(1)
        self.path = SETTINGS.rpc_url_path()

    @task
    def call(self) -> None:
        if LOAD.batch.share and self.rng.random() < LOAD.batch.share:
            self.send([self.next_call() for _ in range(LOAD.batch.size)], batch=True)
        else:
            self.send([self.next_call()], batch=False)

    def next_call(self) -> dict[str, Any]:
        method, params = params_for(self.mix.choose(self.rng), self.chain, self.rng)
        return {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}

    def send(self, calls: list[dict[str, Any]], *, batch: bool) -> None:
        body = orjson.dumps(calls if batch else calls[0])
        name = "batch" if batch else calls[0]["method"]
        context = {"transport": "batch" if batch else "http", "batch_id": uuid.uuid4().hex if batch else None}
        # Locust documents `data` as str or bytes but annotates it `str | dict`: bytes go out as they are.
        with self.client.post(
            self.path,
            data=body,  # type: ignore[arg-type]
            headers=JSON_HEADERS,
            name=name,
            catch_response=True,
            context=context,
        ) as response:
            status = response.status_code or 0
            error = getattr(response, "error", None)
            try:
                content = response.content if status else None
            except Exception as exc:  # the body could not be read: a transport failure after the status
                content, error, status = None, exc, 0
            outcomes = classify([(c["id"], c["method"]) for c in calls], status, content, error, batch=batch)
            meta = read_meta(response.headers)
            entries = []
            for outcome in outcomes:
                provider, attempts = meta.at(outcome.position)
                entries.append({**outcome.row(), "provider": provider, "attempts": attempts})
            response.request_meta["context"].update(entries=entries, http_status=status or None)
            for outcome in outcomes:
                if outcome.ok:
                    self.chain.learn(outcome.method, outcome.result)
            failed = next((o for o in outcomes if not o.ok), None)
            if failed is None:
                response.success()
            else:
                response.failure(_failure_text(failed, status))


def _failure_text(outcome: Outcome, status: int) -> str:
    """Locust groups failures by text: keep it to a few distinct values."""
    if outcome.rpc_code is not None:
        return f"{outcome.error_class} (code {outcome.rpc_code})"
    if outcome.error_class in ("http_status", "rate_limited") and status:
        return f"{outcome.error_class} (HTTP {status})"
    return str(outcome.error_class)
