"""The lab's locustfile: HTTP users, WebSocket subscribers and the scenario's load shape, plus the
Faults tab in the web UI. `lab run` starts Locust with this file; by hand:

    LAB_LOAD='{"users": 20, "duration": "2m", "subscribers": {"new_heads": 2}}' LAB_RUN_DIR=reports/manual \
        locust -f locustfiles/scenario.py -H http://127.0.0.1:4000

The shape (steady, ramp, spike, step) and the run's length come from LAB_LOAD; Locust's -u/-r/-t are
ignored when a shape is present (that is Locust's rule for shapes).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from http_user import LOAD, SETTINGS, JsonRpcUser
from locust import LoadTestShape, events
from ws_user import LogsSubscriber, NewHeadsSubscriber

from lab.load.shape import users_at

__all__ = ["JsonRpcUser", "LabShape", "LogsSubscriber", "NewHeadsSubscriber"]
STARTED_MARKER = "locust/started.json"


class LabShape(LoadTestShape):
    """The scenario's load shape; subscribers come on top of the HTTP users."""

    def tick(self) -> tuple[int, float] | None:
        wanted = users_at(LOAD, self.get_run_time())
        if wanted is None:
            return None
        users, spawn_rate = wanted
        return users + LOAD.subscribers.total, spawn_rate


@events.test_start.add_listener
def _mark_start(environment: Any, **_: Any) -> None:
    """Tell `lab run` when the load started: fault offsets count from here (first writer wins)."""
    if SETTINGS.run_dir is None:
        return
    marker = SETTINGS.run_dir / STARTED_MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with marker.open("xb") as fh:
            fh.write(orjson.dumps({"ts": time.time(), "pid": os.getpid()}))
    except FileExistsError:
        pass


@events.init.add_listener
def _faults_tab(environment: Any, web_ui: Any = None, **_: Any) -> None:
    if web_ui is not None:
        from lab.webui import install_faults_tab

        install_faults_tab(web_ui, run_dir=SETTINGS.run_dir)
