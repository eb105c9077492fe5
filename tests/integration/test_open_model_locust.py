"""The open model in a real Locust against a mock provider process (no containers): a slow provider
does not slow the arrivals down, and the in-flight cap records what it keeps back as `not_sent`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from lab.load import LOCUSTFILE
from lab.provider import start_provider_process
from lab.record import read_table

pytestmark = pytest.mark.integration


def test_a_slow_provider_keeps_the_rate_and_the_cap_records_what_it_kept_back(tmp_path: Path) -> None:
    rate, seconds, cap, slow_ms = 100, 4, 10, 400
    behavior = orjson.dumps({"type": "latency", "ms": slow_ms}).decode()
    with start_provider_process("slow", env={"LAB_PROVIDER_BEHAVIOR": behavior}) as provider:
        load = {"rate": rate, "duration": seconds, "max_in_flight": cap, "timeout": "5s", "users": 4}
        env = {
            **os.environ,
            "LAB_RUN_DIR": str(tmp_path),
            "LAB_RPC_PATH": "/",
            "LAB_LOAD": orjson.dumps(load).decode(),
        }
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H",
             f"http://127.0.0.1:{provider.port}", "--only-summary", "--exit-code-on-error", "0"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_table(tmp_path, "requests")
    # every arrival of the schedule is a row: sent, or kept back by the cap, none silently skipped
    assert len(rows) == rate * seconds
    intended = np.sort(rows["intended_ts"].astype("int64").to_numpy() / 1e6)
    assert np.allclose(np.diff(intended), 1 / rate, atol=1e-4)
    sent, kept_back = rows[rows["error_class"] != "not_sent"], rows[rows["error_class"] == "not_sent"]
    # 10 in flight at 400 ms each: about 25 sent a second, the rest kept back
    assert len(sent) == pytest.approx(cap * seconds * 1000 / slow_ms, rel=0.25)
    assert len(kept_back) > 0.6 * rate * seconds
    assert not kept_back["ok"].any() and kept_back["latency_ms"].isna().all()
    assert (kept_back["response_ms"] >= 0).all() and (kept_back["response_ms"] < 100).all()
    # the provider's delay is an event-loop timer of 1 ms resolution, started at the loop's cached time:
    # an answer can come a little under `slow_ms` after the request left
    assert (sent["latency_ms"] >= slow_ms - 5).all() and sent["ok"].all()
    assert set(rows["client"]) == {f"{rows['worker'].iloc[0]}/c{i}" for i in range(4)}
