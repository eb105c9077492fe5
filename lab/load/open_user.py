"""The open model in Locust: requests sent on a schedule, whatever happened to the ones before, so a
stalled gateway is measured by every request that should have gone out during the stall (no coordinated
omission). Imports Locust and gevent: only the Locust process imports this.

One dispatcher per Locust process that runs users (the local runner, or each worker) follows its share
of the schedule (lab.load.arrivals): it sleeps until each intended send time and spawns the request in
its own greenlet; every request records its intended and its actual send time. Requests in flight are
capped (the process's share of `max_in_flight`): an arrival beyond the cap is recorded as failed,
`not_sent`, never silently skipped (blocking instead would bring coordinated omission back).

The master (or the local runner) fixes what every process must agree on when the test starts: the
schedule's start, and a lane of it for each worker connected then (by Locust's client id). They travel
to the workers in the spawn message's parsed options (Locust forwards custom options), so the processes
interleave their arrivals. A worker that joins a running test has no lane: it sends nothing until the
next start, and says so, rather than double a lane's rate.
The target rate and the cap are Locust custom arguments (`--lab-rate`, `--lab-max-in-flight`), shown in
the web UI's start form; their defaults come from the scenario's load section.

The record's `client`: virtual clients per process, `<process>/c<n>`, the arrivals of a process dealt
to them in turn (the load's `users` in all, split between processes). A virtual client's requests may
overlap in time (it does not wait for answers); its view of the head is judged in send order.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import gevent
import orjson
from gevent.event import Event
from geventhttpclient.url import URL
from locust.exception import CatchResponseError
from locust.runners import MasterRunner

from lab.load import arrivals, shape
from lab.load.arrivals import ArrivalSchedule
from lab.load.http_user import JSON_HEADERS, LOAD, SETTINGS, RpcSender
from lab.load.poster import JsonPoster
from lab.load.recorder import worker_id

# With worker processes, the schedule starts this long after the master's test start: late enough for
# every worker to get its spawn message and set up first (on a busy machine that takes a few tenths of a
# second); the shape and the fault offsets count from the schedule's start.
START_DELAY_S = 1.0


class NotSent(Exception):
    """The in-flight cap was reached: the request was not sent (recorded as `not_sent`)."""


def add_arguments(parser: Any) -> None:
    """Locust custom arguments for the open model (in the web UI's start form too). Float and int defaults:
    the web UI converts a form value to the type of its default."""
    parser.add_argument(
        "--lab-rate",
        type=float,
        default=float(LOAD.target_rate or 0.0),
        include_in_web_ui=True,
        help="open model: target requests per second of the whole load (all processes)",
    )
    parser.add_argument(
        "--lab-max-in-flight",
        type=int,
        default=int(LOAD.max_in_flight),
        include_in_web_ui=True,
        help="open model: requests in flight at most (all processes); beyond it an arrival is not_sent",
    )


def fix_shared_plan(environment: Any) -> None:
    """On the master or the local runner at test start: the schedule's start and each process's lane of
    it, for every process to read from its parsed options."""
    options = environment.parsed_options
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        workers = (*runner.clients.ready, *runner.clients.spawning, *runner.clients.running)
        options.lab_open_lanes = arrivals.assign_lanes(worker.id for worker in workers)
        options.lab_open_delay = START_DELAY_S
    else:
        options.lab_open_lanes = {}
        options.lab_open_delay = 0.0
    options.lab_open_start = time.time() + options.lab_open_delay


def lane_of(environment: Any) -> tuple[int, int] | None:
    """This process's lane of the shared schedule and the number of lanes (lab.load.arrivals.lane_of)."""
    lanes = getattr(environment.parsed_options, "lab_open_lanes", None) or {}
    return arrivals.lane_of(lanes, getattr(environment.runner, "client_id", None))


class DirectSender:
    """Sends JSON-RPC requests with the lean client of lab.load.poster rather than Locust's
    FastHttpSession (its browser-like layer: cookies, redirects, a URL parsed per request, over
    geventhttpclient's own client), and reports each to Locust's request event, as Locust's docs show for
    custom clients: Locust's statistics and the run record see every request."""

    def __init__(self, host: str, events: Any, rng: random.Random, *, concurrency: int) -> None:
        self.rpc = RpcSender(rng)
        self.events = events
        target = URL(f"{host}{self.rpc.path}")
        self.url = str(target)
        self.http = JsonPoster(self.url, concurrency=concurrency, timeout=LOAD.timeout, headers=JSON_HEADERS)

    def send(self, client: str, intended: float | None = None) -> None:
        """Send the next request (or batch) of the method mix now; `intended`: when the schedule meant to
        send it (None: now)."""
        calls, batch = self.rpc.next_calls()
        body = orjson.dumps(calls if batch else calls[0])
        status, content, headers, error = 0, None, None, None
        sent_at = time.time()
        started = time.perf_counter()
        try:
            status, answer = self.http.post(body)
            headers, content = answer, bytes(answer.body)
        except (Exception, gevent.Timeout) as exc:  # a transport failure, before or after the status
            status, content, error = 0, None, exc
        response_time = (time.perf_counter() - started) * 1000
        entries, failure = self.rpc.judge(
            calls, batch=batch, status=status, content=content, error=error, headers=headers, sent_at=sent_at
        )
        context = self.rpc.context(batch, client, intended)
        context.update(entries=entries, http_status=status or None)
        self.events.request.fire(
            request_type="POST",
            name="batch" if batch else calls[0]["method"],
            response_time=response_time,
            response_length=len(content) if content is not None else 0,
            exception=None if failure is None else CatchResponseError(failure),
            context=context,
            start_time=sent_at,
            url=self.url,
            response=None,
        )

    def close(self) -> None:
        self.http.close()


class OpenLoad:
    """One process's dispatcher."""

    def __init__(self, environment: Any, lane: int, lanes: int) -> None:
        options = environment.parsed_options
        self.lanes = lanes
        start = float(getattr(options, "lab_open_start", 0.0) or time.time())
        rate = float(getattr(options, "lab_rate", 0.0) or LOAD.target_rate or 0.0)
        if rate <= 0:
            raise ValueError("the open model needs a target rate > 0 (--lab-rate or the load's rate)")
        cap = int(getattr(options, "lab_max_in_flight", 0) or LOAD.max_in_flight)
        self.cap = max(1, math.ceil(cap / self.lanes))
        scale = rate / LOAD.target_rate if LOAD.target_rate else 1.0
        self.rate = rate
        if SETTINGS.from_scenario:  # the scenario's shape and duration

            def rate_at(elapsed: float) -> float | None:
                base = shape.rate_at(LOAD, elapsed)
                return None if base is None else base * scale
        else:  # by hand (web UI or CLI): the rate until Locust stops the test

            def rate_at(elapsed: float) -> float | None:
                return rate

        self.schedule = ArrivalSchedule(
            rate_at,
            start,
            lane=lane,
            lanes=self.lanes,
            poisson=LOAD.arrivals == "poisson",
            rng=random.Random(f"{SETTINGS.seed}/arrivals/{lane}"),
        )
        self.sender = DirectSender(
            environment.host,
            environment.events,
            random.Random(f"{SETTINGS.seed}/open/{lane}"),
            concurrency=self.cap,
        )
        self.events = environment.events
        clients = max(1, LOAD.users // self.lanes)
        self.clients = [f"{worker_id()}/c{i}" for i in range(clients)]
        self.in_flight = 0
        self.drained = Event()  # set whenever no request is in flight
        self.drained.set()
        self.not_sent = 0
        self.greenlet: gevent.Greenlet[Any, Any] | None = None

    def start(self) -> OpenLoad:
        self.greenlet = gevent.spawn(self.run)
        return self

    def run(self) -> None:
        while True:
            intended = self.schedule.next()
            if intended is None:
                return
            delay = intended - time.time()
            if delay > 0:
                gevent.sleep(delay)
            client = self.clients[(self.schedule.count - 1) % len(self.clients)]
            if self.in_flight >= self.cap:
                self.refuse(intended, client)
                continue
            self.in_flight += 1
            self.drained.clear()
            gevent.spawn_raw(self.send, intended, client)  # no Greenlet object: a tenth of a request's CPU

    def send(self, intended: float, client: str) -> None:
        try:
            self.sender.send(client, intended)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.drained.set()

    def refuse(self, intended: float, client: str, reason: str | None = None) -> None:
        """Record an arrival the cap (or `reason`) kept back: failed, `not_sent`, its response time up to
        now."""
        self.not_sent += 1
        calls, batch = self.sender.rpc.next_calls()
        self.events.request.fire(
            request_type="POST",
            name="batch" if batch else calls[0]["method"],
            response_time=None,
            response_length=0,
            exception=NotSent(reason or f"{self.cap} requests in flight (the process's share of the cap)"),
            context={
                "transport": "batch" if batch else "http",
                "batch_id": None,
                "client": client,
                "intended_ts": intended,
                "entries": [{"method": c["method"], "ok": False, "error_class": "not_sent"} for c in calls],
            },
            start_time=time.time(),
            url=self.sender.url,
            response=None,
        )

    def stop(self) -> None:
        """Stop sending. Arrivals already due that the dispatcher had not got to (it was behind schedule
        when Locust stopped) are recorded as `not_sent`, not dropped; requests in flight get up to the
        client's timeout to be answered and recorded."""
        if self.greenlet is not None:
            self.greenlet.kill(block=True)
            self.greenlet = None
            now = time.time()
            while (intended := self.schedule.next()) is not None and intended <= now:
                client = self.clients[(self.schedule.count - 1) % len(self.clients)]
                self.refuse(intended, client, "the load stopped before it could be sent (behind schedule)")
        # a request that gets no answer ends at its connect or its read timeout
        self.drained.wait(timeout=2 * LOAD.timeout + 1.0)
        self.sender.close()
