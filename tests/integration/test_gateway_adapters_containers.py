"""HAProxy and nginx under test through their adapters, built here from Debian's packages: a primary-cut
scenario through each, twice, with two configurations compared the way a user would compare a change to
their gateway. The lab must report what each configuration implies:
- HAProxy, active JSON-RPC health check, no retries: errors until `fall` checks `inter` apart have failed,
  so the error window lies between (fall - 1) × inter and fall × inter; with retries and redispatch, a
  refused connection is retried on another server: next to no errors.
- nginx, `proxy_next_upstream off`: the cut server is tried again once `fail_timeout` has passed
  (max_fails 1), and each try fails a request, so errors recur at least `fail_timeout` apart; with the
  default `error timeout`, a refused connection goes to the next server: next to no errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from lab.analysis.failover import UNATTRIBUTED

pytestmark = [pytest.mark.integration, pytest.mark.containers]

SCENARIO = Path(__file__).with_name("gateway-cut.yml")
CUT_S = 12.0  # the scenario's cut of the primary


def run_through(gateway: str, out: Path, **variables: Any) -> dict[str, Any]:
    """`lab run` of the cut scenario through `gateway` with its variables; the run's summary.json."""
    args = [sys.executable, "-m", "lab", "run", str(SCENARIO), "--gateway", gateway, "--out", str(out)]
    for name, value in variables.items():
        args += ["--gateway-var", f"{name}={value}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    summary: dict[str, Any] = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["gateway"]["adapter"] == gateway
    assert summary["gateway"]["image"].startswith(f"lab-{gateway}:")
    assert summary["gateway"]["image_id"].startswith("sha256:")
    assert summary["breakers"]["unknown"], "no admin API: the report says breakers are not known"
    # Attribution through the providers' X-Lab-Provider, which both pass through (the gateway's own
    # 502/503 during the cut name none: they are the "(unattributed)" row).
    assert set(summary["providers"]) - {UNATTRIBUTED} == {"primary", "secondary", "tertiary"}
    assert summary["failover"]["unattributed"] == 0
    return summary


def cut(summary: dict[str, Any]) -> dict[str, Any]:
    """The cut's figures: its error window and the requests that failed while it lasted."""
    [fault] = summary["faults"]
    assert fault["action"] == "cut" and fault["target"] == "primary"
    return {**fault, "errors": fault["during"]["errors"]}


def test_haproxy_error_window_tracks_inter_times_fall_and_retries_remove_it(
    lab_images: Any, tmp_path: Path
) -> None:
    inter, fall = 1.0, 3
    checked = run_through("haproxy", tmp_path / "check", inter=f"{inter:g}s", fall=fall, retries=0)
    retried = run_through(
        "haproxy", tmp_path / "retry", inter=f"{inter:g}s", fall=fall, retries=2, redispatch="true"
    )
    window = cut(checked)["error_window_s"]
    # Down after `fall` failed checks; the first may come any time up to `inter` after the cut.
    assert (fall - 1) * inter - 0.5 <= window <= fall * inter + 0.75, window
    assert cut(checked)["time_to_first_error_s"] < 0.5  # round robin reaches the cut server at once
    assert cut(checked)["errors"] >= 5
    assert cut(retried)["errors"] <= 2 and cut(retried)["error_window_s"] <= 0.5, cut(retried)
    assert checked["success_rate"] < retried["success_rate"]


def test_nginx_next_upstream_off_fails_all_through_the_cut_and_on_hides_it(
    lab_images: Any, tmp_path: Path
) -> None:
    fail_timeout = 4.0
    off = run_through(
        "nginx", tmp_path / "off", next_upstream="off", max_fails=1, fail_timeout=f"{fail_timeout:g}s"
    )
    on = run_through("nginx", tmp_path / "on", max_fails=1, fail_timeout=f"{fail_timeout:g}s")
    window = cut(off)["error_window_s"]
    # The cut server is tried again once fail_timeout has passed, and fails again: errors recur at least
    # fail_timeout apart while the cut lasts (measured here: 3 over 9.9 s, and 2 over 5.0 s).
    assert fail_timeout - 0.5 <= window <= CUT_S + 1.0, window
    assert 2 <= cut(off)["errors"] <= CUT_S / fail_timeout + 3, cut(off)
    assert cut(on)["errors"] <= 3 and cut(on)["error_window_s"] <= 1.0, cut(on)
