"""The lab's locustfile: HTTP users, WebSocket subscribers and the scenario's load shape, plus the
Faults tab in the web UI. It ships in the package (`lab.load.LOCUSTFILE`): `lab run` and the Locust image
start Locust with this file, the user-facing `locustfiles/scenario.py` imports it; by hand:

    LAB_LOAD='{"users": 20, "duration": "2m", "subscribers": {"new_heads": 2}}' LAB_RUN_DIR=reports/manual \
        locust -f locustfiles/scenario.py -H http://127.0.0.1:4000

The shape (steady, ramp, spike, step) and the run's length come from LAB_LOAD; Locust's -u/-r/-t are
ignored when a shape is present (that is Locust's rule for shapes). Without LAB_LOAD there is no shape:
the web UI's (or -u/-r's) user count drives, HTTP users plus the subscribers LAB_LOAD_NEW_HEADS and
LAB_LOAD_LOGS ask for (none unless asked: they would otherwise take a share of the users).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

import orjson
from locust import LoadTestShape, User, constant, events, task

from lab.load import STARTED_MARKER, open_user, ws_user
from lab.load.http_user import LOAD, SETTINGS, JsonRpcUser
from lab.load.shape import users_at

OPEN = LOAD.model == "open"
GC_YOUNG_THRESHOLD = 20_000  # allocations between young-generation collections (Python 3.11's default: 700)
__all__ = ["LabShape"]

# Locust runs the User classes it finds in this module. The open model sends from its own dispatcher
# (lab.load.open_user), not from users: Locust's users are then the WebSocket subscribers only.
if not OPEN:
    __all__ += ["JsonRpcUser"]
if ws_user.CONFIGURED:
    NewHeadsSubscriber, LogsSubscriber = ws_user.NewHeadsSubscriber, ws_user.LogsSubscriber
    __all__ += ["LogsSubscriber", "NewHeadsSubscriber"]
elif OPEN:  # by hand without subscribers: the UI's users subscribe to newHeads
    NewHeadsSubscriber = ws_user.NewHeadsSubscriber
    __all__ += ["NewHeadsSubscriber"]
if OPEN:
    del JsonRpcUser
    if not any(not getattr(globals()[name], "abstract", False) for name in __all__ if name != "LabShape"):

        class OpenModelIdle(User):
            """Locust wants a User class; the open model without subscribers spawns none (the shape asks
            for no users): the dispatcher sends."""

            wait_time = constant(1)

            @task
            def idle(self) -> None:
                pass

        __all__ += ["OpenModelIdle"]


class LabShape(LoadTestShape):
    """The scenario's load shape; subscribers come on top of the HTTP users (the closed model's; the open
    model scales its rate with the shape instead). Only with LAB_LOAD (as `lab run` sets it): by hand
    without it, the web UI's user count and spawn rate drive."""

    abstract = not os.environ.get("LAB_LOAD")

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        if OPEN:  # the schedule starts after a delay with worker processes (lab.load.open_user)
            options = self.runner.environment.parsed_options if self.runner else None
            elapsed = max(0.0, elapsed - float(getattr(options, "lab_open_delay", 0.0) or 0.0))
        wanted = users_at(LOAD, elapsed)
        if wanted is None:
            return None
        users, spawn_rate = wanted
        if OPEN:
            return LOAD.subscribers.total, max(spawn_rate, float(LOAD.subscribers.total or 1))
        return users + LOAD.subscribers.total, spawn_rate


@events.test_start.add_listener
def _mark_start(environment: Any, **_: Any) -> None:
    """Tell `lab run` when the load started: fault offsets count from here (first writer wins). The open
    model's start is its schedule's, which the master (or local runner) fixes here first."""
    from locust.runners import WorkerRunner

    if OPEN and not isinstance(environment.runner, WorkerRunner):
        open_user.fix_shared_plan(environment)
    if SETTINGS.run_dir is None:
        return
    started = getattr(environment.parsed_options, "lab_open_start", None) if OPEN else None
    marker = SETTINGS.run_dir / STARTED_MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with marker.open("xb") as fh:
            fh.write(orjson.dumps({"ts": started or time.time(), "pid": os.getpid()}))
    except FileExistsError:
        pass


@events.init.add_listener
def _collect_garbage_less(**_: Any) -> None:
    """A request allocates hundreds of short-lived objects: with Python's default thresholds the collector
    runs every few requests and, now and then, scans every module Locust and pyarrow loaded, a pause that
    shows as schedule lag. What exists at start-up lives as long as the process: freeze it out of the
    collector's generations, and collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


@events.init.add_listener
def _manual_manifest(environment: Any, **_: Any) -> None:
    """By hand (no `lab run`, so no manifest yet), a minimal manifest makes the record analysable with
    `lab report` (no SLOs: the figures, no verdict). First writer wins; `lab run` writes its own first."""
    if SETTINGS.run_dir is None:
        return
    SETTINGS.run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": SETTINGS.run_dir.name,
        "scenario": {"name": "manual", "description": "a Locust session by hand (web UI or CLI)"},
        "load": orjson.loads(LOAD.model_dump_json()),
        "created": time.time(),
    }
    try:
        with (SETTINGS.run_dir / "manifest.json").open("xb") as fh:
            fh.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    except FileExistsError:
        pass


@events.init.add_listener
def _faults_tab(environment: Any, web_ui: Any = None, **_: Any) -> None:
    if web_ui is not None:
        from lab.webui import install_faults_tab

        install_faults_tab(web_ui, run_dir=SETTINGS.run_dir)


@events.init_command_line_parser.add_listener
def _open_model_arguments(parser: Any) -> None:
    if OPEN and "--lab-rate" not in parser._option_string_actions:  # Locust may build its parser twice
        open_user.add_arguments(parser)


_dispatcher: open_user.OpenLoad | None = None


@events.test_start.add_listener
def _start_open_load(environment: Any, **_: Any) -> None:
    """The open model: each process that runs users runs its dispatcher (after `_mark_start`, which fixed
    the shared plan)."""
    global _dispatcher
    if not OPEN:
        return
    from locust.runners import MasterRunner

    if isinstance(environment.runner, MasterRunner):
        return
    if _dispatcher is not None:
        _dispatcher.stop()
        _dispatcher = None
    lane = open_user.lane_of(environment)
    if lane is None:
        logging.warning(
            "this worker joined after the test started: it sends no requests of the open model until the "
            "next start (its share of the rate belongs to the workers connected at the start)"
        )
        return
    _dispatcher = open_user.OpenLoad(environment, *lane).start()


@events.test_stop.add_listener
def _stop_open_load(environment: Any, **_: Any) -> None:
    global _dispatcher
    if _dispatcher is not None:
        _dispatcher.stop()
        _dispatcher = None
