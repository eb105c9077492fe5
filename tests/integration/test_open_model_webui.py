"""The compose lab's way in: Locust's web UI start form sets the open model's target rate (a Locust
custom argument shown in the form), and the load follows it, recorded with intended and actual send
times. A real Locust with its web UI against a mock provider process (no containers)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lab import serving
from lab.eventually import wait_for_value
from lab.load import LOCUSTFILE
from lab.provider import start_provider_process
from lab.record import read_table

pytestmark = pytest.mark.integration


def post(url: str, form: dict[str, str]) -> bytes:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        return bytes(response.read())


def test_the_start_form_sets_the_target_rate(tmp_path: Path) -> None:
    port = serving.free_port()
    ui = f"http://127.0.0.1:{port}"
    # In the web UI, LAB_RUN_DIR is the inbox: each swarm start → stop is a session, filed into a run
    # directory of its own beside it (lab.webui.session).
    inbox = tmp_path / "inbox"

    def session_parts() -> list[Path]:
        return [p for p in tmp_path.glob("*/requests/part-*.parquet") if not p.is_relative_to(inbox)]

    with start_provider_process("ui") as provider:
        env = {**os.environ, "LAB_RUN_DIR": str(inbox), "LAB_RPC_PATH": "/", "LAB_LOAD_NEW_HEADS": "0"}
        env.pop("LAB_LOAD", None)
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "-H", f"http://127.0.0.1:{provider.port}",
             "--web-host", "127.0.0.1", "--web-port", str(port), "--loglevel", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            page = wait_for_value(
                lambda: urllib.request.urlopen(ui, timeout=2).read(), timeout=30, message="the web UI"
            )
            assert b"lab_rate" in page and b"lab_max_in_flight" in page, "the start form shows the knobs"
            post(
                f"{ui}/swarm",
                {"user_count": "0", "spawn_rate": "1", "lab_rate": "120", "lab_max_in_flight": "50"},
            )
            wait_for_value(
                lambda: len(session_parts()) >= 4 or None,
                timeout=30,
                message="four seconds of recorded load",
            )
            post(f"{ui}/stop", {})
        finally:
            locust.terminate()
            locust.wait(30)
    (session,) = {part.parent.parent for part in session_parts()}
    requests = read_table(session, "requests")
    intended = requests["intended_ts"].astype("int64").to_numpy() / 1e6
    gaps = np.diff(np.sort(intended))
    assert np.median(gaps) == pytest.approx(1 / 120, rel=0.01), "sent at the form's rate, evenly"
    assert requests["client"].notna().all() and requests["response_ms"].notna().all()
