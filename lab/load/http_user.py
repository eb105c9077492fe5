"""Locust's HTTP side: JSON-RPC through the gateway, a weighted method mix with realistic params, and
batches. Imports Locust: only the Locust process imports this (through a locustfile).

Two load models share the sending (`RpcSender`): the closed model's `JsonRpcUser` (Locust's semantics:
each user sends its next request once the last one was answered) and the open model's dispatcher
(lab/load/open_user.py: requests on a schedule, whatever happened to the ones before).

On its own:  locust -f locustfiles/http_user.py -H http://127.0.0.1:4000 -u 20 -r 10   (closed model)
Settings come from the environment (see lab/load/settings.py: LAB_RUN_DIR to record, LAB_LOAD_METHODS,
LAB_LOAD_TIMEOUT, LAB_CHAIN, ...). Every request is recorded with its exact latency, outcome, JSON-RPC
error code and the gateway's routing metadata when LAB_RUN_DIR is set.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import gevent
import orjson
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpSession

from lab.checker import AnswerInspector
from lab.load.recorder import install, worker_id
from lab.load.rpc import ChainKnowledge, HeaderSource, MethodMix, Outcome, classify, params_for, read_meta
from lab.load.settings import settings_from_env

SETTINGS = settings_from_env()
LOAD = SETTINGS.load
install(events, SETTINGS.run_dir)
INSPECTOR = AnswerInspector.from_env()  # None: answers are not checked
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# geventhttpclient raises BadStatusCode for any status outside its valid set, and Locust then hands over
# the response with the exception: a 429 or a 503 with a JSON-RPC error body would look like a broken
# connection. Every status is an answer here; `classify` reads the status and the body itself.
EVERY_STATUS = frozenset(range(100, 600))
_user_numbers = itertools.count()


def accept_every_status(session: FastHttpSession) -> FastHttpSession:
    session.client.valid_response_codes = EVERY_STATUS  # type: ignore[misc]  # this session only
    return session


class RpcSender:
    """Builds JSON-RPC calls from the method mix and judges their answers for the run record (what the
    request's context needs: lab.load.recorder). Each load model sends with its own client: the closed
    model with Locust's FastHttpSession (`send`), the open model with the geventhttpclient client beneath
    it (lab.load.open_user)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mix = MethodMix(LOAD.methods)
        self.chain = ChainKnowledge()
        self.ids = itertools.count(1)
        self.path = SETTINGS.rpc_url_path()

    def next_calls(self) -> tuple[list[dict[str, Any]], bool]:
        """The calls of the next HTTP request, and whether they go as a batch."""
        if LOAD.batch.share and self.rng.random() < LOAD.batch.share:
            return [self.next_call() for _ in range(LOAD.batch.size)], True
        return [self.next_call()], False

    def next_call(self) -> dict[str, Any]:
        method, params = params_for(self.mix.choose(self.rng), self.chain, self.rng)
        return {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}

    @staticmethod
    def context(batch: bool, client: str, intended_ts: float | None) -> dict[str, Any]:
        return {
            "transport": "batch" if batch else "http",
            "batch_id": uuid.uuid4().hex if batch else None,
            "client": client,
            "intended_ts": intended_ts,
        }

    def judge(
        self,
        calls: list[dict[str, Any]],
        *,
        batch: bool,
        status: int,
        content: bytes | None,
        error: BaseException | None,
        headers: HeaderSource | None,
        sent_at: float,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The record's entries for an answer (one per call), and the failure text when one failed."""
        outcomes = classify([(c["id"], c["method"]) for c in calls], status, content, error, batch=batch)
        meta = read_meta(headers)
        entries = []
        failed = None
        for call, outcome in zip(calls, outcomes, strict=True):
            provider, attempts = meta.at(outcome.position)
            entry = {**outcome.row(), "provider": provider, "attempts": attempts}
            if outcome.ok:
                if INSPECTOR is not None:
                    entry.update(INSPECTOR.inspect(outcome.method, call["params"], outcome.result, sent_at))
                self.chain.learn(outcome.method, outcome.result)
            elif failed is None:
                failed = outcome
            entries.append(entry)
        return entries, None if failed is None else failure_text(failed, status)

    def send(
        self,
        session: FastHttpSession,
        calls: list[dict[str, Any]],
        *,
        batch: bool,
        client: str,
        intended_ts: float | None = None,
    ) -> None:
        """Send `calls` (one request, or a batch) now with Locust's session; `intended_ts`: when the
        schedule meant to send it (None: now)."""
        body = orjson.dumps(calls if batch else calls[0])
        # Locust documents `data` as str or bytes but annotates it `str | dict`: bytes go out as they are.
        with session.post(
            self.path,
            data=body,  # type: ignore[arg-type]
            headers=JSON_HEADERS,
            name="batch" if batch else calls[0]["method"],
            catch_response=True,
            context=self.context(batch, client, intended_ts),
        ) as response:
            status = response.status_code or 0
            error = getattr(response, "error", None)
            try:
                content = response.content if status else None
            except Exception as exc:  # the body could not be read: a transport failure after the status
                content, error, status = None, exc, 0
            entries, failure = self.judge(
                calls,
                batch=batch,
                status=status,
                content=content,
                error=error,
                headers=response.headers,
                sent_at=response.request_meta["start_time"],
            )
            response.request_meta["context"].update(entries=entries, http_status=status or None)
            if failure is None:
                response.success()
            else:
                response.failure(failure)


class JsonRpcUser(FastHttpUser):
    """The closed model: one request (or batch) at a time, at most `rate_per_user` per second."""

    # Locust's FastHttpUser waits 60 s by default: a timeout toxic would stall a user for a minute.
    network_timeout = LOAD.timeout
    connection_timeout = LOAD.timeout
    wait_time = constant_throughput(LOAD.rate_per_user) if LOAD.rate_per_user else constant(0)

    def on_start(self) -> None:
        worker = getattr(self.environment.runner, "worker_index", 0)
        number = next(_user_numbers)
        rng = random.Random(f"{SETTINGS.seed}/{worker}/{number}")
        self.sender = RpcSender(rng)
        accept_every_status(self.client)
        self.client_id = f"{worker_id()}/u{number}"
        if LOAD.rate_per_user:  # a phase of its own within the pacing interval: users never fire in lockstep
            gevent.sleep(rng.uniform(0, 1 / LOAD.rate_per_user))

    @task
    def call(self) -> None:
        calls, batch = self.sender.next_calls()
        self.sender.send(self.client, calls, batch=batch, client=self.client_id)


def failure_text(outcome: Outcome, status: int) -> str:
    """Locust groups failures by text: keep it to a few distinct values."""
    if outcome.rpc_code is not None:
        return f"{outcome.error_class} (code {outcome.rpc_code})"
    if outcome.error_class in ("http_status", "rate_limited") and status:
        return f"{outcome.error_class} (HTTP {status})"
    return str(outcome.error_class)
