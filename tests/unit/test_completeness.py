"""A verdict only on complete evidence: INCOMPLETE for each cause, with its reason at the top of every
report and `lab report` exiting 4 (planted records)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from lab.analysis.cli import report_command
from lab.analysis.synthetic import Fault, SyntheticRun, write_run
from lab.record import RunDir

SLOS = {"success_rate": 0.99, "p95_ms": 1000}


def planted(tmp_path: Path, synthetic: SyntheticRun, **manifest: Any) -> Path:
    """A healthy run (every SLO met), its manifest then changed as `manifest` says (None removes a key)."""
    path = write_run(synthetic, tmp_path / "run")
    run = RunDir(path)
    recorded = run.read_manifest()
    for key, value in manifest.items():
        if value is None:
            recorded.pop(key, None)
        else:
            recorded[key] = value
    run.write_manifest(recorded)
    return path


def report(path: Path) -> tuple[int, str, dict[str, Any]]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(report_command, [str(path)])
    summary = orjson.loads((path / "summary.json").read_bytes())
    return result.exit_code, result.output, summary


def scenario(duration: float) -> dict[str, Any]:
    return {"name": "synthetic", "load": {"duration": duration}, "slos": SLOS}


def test_a_complete_run_gets_its_verdict(tmp_path: Path) -> None:
    code, output, summary = report(planted(tmp_path, SyntheticRun(duration_s=30, slos=SLOS)))
    assert code == 0 and summary["verdict"] == "pass" and summary["completeness"]["complete"]
    assert "INCOMPLETE" not in output and "INCOMPLETE" not in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.parametrize(
    ("changes", "cause", "reason"),
    [
        # The case: a 30 s run interrupted after 10.6 s reported PASS.
        ({"outcome": "interrupted", "scenario": scenario(30)}, "interrupted",
         "the run was interrupted after 10.6 s of 30 s planned"),
        ({"outcome": "running", "ended": None}, "killed", "the run never finished"),
        ({"outcome": "record_lost", "record_failure": "No space left on device (run/requests)"},
         "record_lost", "the run record could not be written: No space left on device (run/requests)"),
        ({"scenario": scenario(30)}, "cut_short", "the load ran 10.6 s of 30 s planned"),
        ({"locust": {"exit_code": 1}}, "load_failed", "Locust exited with code 1"),
        ({"outcome": "failed", "error": "the gateway container exited"}, "lab_failed",
         "the lab failed during the run: the gateway container exited"),
        ({"plan": [{"fault_id": "late#0", "name": "late", "kind": "cut", "target": "p1", "start": 20,
                    "end": 25}]},
         "fault_not_applied", "fault late#0 (cut → p1), planned at 20 s, was never applied"),
    ],
)  # fmt: skip
def test_an_incomplete_run_is_never_pass(
    tmp_path: Path, changes: dict[str, Any], cause: str, reason: str
) -> None:
    """Every SLO of these runs is met; each lacks part of its evidence: INCOMPLETE, exit 4, the reason
    first in the terminal and at the top of report.html, summary.md, summary.json and junit.xml."""
    path = planted(tmp_path, SyntheticRun(duration_s=10.6, slos=SLOS), **changes)
    code, output, summary = report(path)
    assert code == 4, output
    assert summary["verdict"] == "incomplete" and summary["slo"]["passed"] is False
    assert all(c["status"] in ("pass", "incomplete") for c in summary["slo"]["checks"])
    reasons = summary["completeness"]["reasons"]
    assert [r["cause"] for r in reasons] == [cause]
    assert reasons[0]["detail"].startswith(reason)
    assert output.splitlines()[0].startswith(f"INCOMPLETE: {reason}")
    lines = output.splitlines()
    assert [i for i, line in enumerate(lines) if line.startswith("INCOMPLETE: ")] == [0, len(lines) - 5]
    html = (path / "report.html").read_text()
    assert "<span class='verdict incomplete'>INCOMPLETE</span>" in html
    assert html.index("INCOMPLETE: ") < html.index("SLO verdicts")
    md = (path / "summary.md").read_text().splitlines()
    assert md[0].startswith("## INCOMPLETE: synthetic") and md[2].startswith(f"**INCOMPLETE: {reason}")
    junit = ET.parse(path / "junit.xml").getroot()
    props = {p.get("name"): p.get("value", "") for p in junit.iter("property")}
    assert props["verdict"] == "INCOMPLETE" and reason in props["incomplete"]
    assert junit.get("failures") == "0" and int(junit.get("errors") or 0) >= 1


def test_a_record_that_stops_early_is_cut_short(tmp_path: Path) -> None:
    """The manifest says a whole 60 s ran, but nothing was recorded after 20 s."""
    path = planted(
        tmp_path, SyntheticRun(duration_s=20, slos=SLOS), ended=1_700_000_060.0, scenario=scenario(60)
    )
    code, _, summary = report(path)
    assert code == 4
    [reason] = summary["completeness"]["reasons"]
    assert reason["cause"] == "cut_short" and reason["detail"].startswith(
        "the record stops at 20.0 s of 60.0 s"
    )


def test_a_failing_run_that_is_also_incomplete_is_incomplete(tmp_path: Path) -> None:
    plan = SyntheticRun(duration_s=30, slos={"p95_ms": 1}, faults=[Fault("f", 5, 10, failed="gone")])
    code, _, summary = report(planted(tmp_path, plan))
    assert code == 4 and summary["verdict"] == "incomplete"
    statuses = {c["name"]: c["status"] for c in summary["slo"]["checks"]}
    assert statuses["p95_ms"] == "fail" and statuses["faults_applied"] == "incomplete"


def test_the_report_header_names_the_gateway_that_ran(tmp_path: Path) -> None:
    from lab.analysis.report import gateway_line
    from lab.analysis.summary import gateway_of

    manifest = {
        "images": {"reference_gateway": {"ref": "lab-gateway:1", "id": "sha256:aaaa"}},
        "gateway": {
            "adapter": "haproxy",
            "adapter_file": "lab/topology/adapters/haproxy.yml",
            "image": {"ref": "lab-haproxy:0123", "id": "sha256:0123456789abcdef"},
            "variables": {"inter": "1s"},
        },
    }
    line = gateway_line({"gateway": gateway_of(manifest)})
    assert line == (
        "gateway: haproxy (lab/topology/adapters/haproxy.yml) · image lab-haproxy:0123 (0123456789ab)"
        " · inter=1s"
    )


def test_an_incomplete_run_is_never_a_baseline_nor_compared(tmp_path: Path) -> None:
    from lab.analysis.cli import baseline_command, compare_command

    path = planted(tmp_path, SyntheticRun(duration_s=10.6, slos=SLOS), outcome="interrupted")
    result = CliRunner().invoke(baseline_command, ["set", str(path), "--baselines", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "the run is INCOMPLETE (the run was interrupted after 10.6 s" in result.output
    complete = write_run(SyntheticRun(duration_s=10.6, slos=SLOS), tmp_path / "complete")
    result = CliRunner().invoke(compare_command, [str(complete), str(path)])
    assert result.exit_code == 2 and "cannot be compared" in result.output


def test_a_run_still_going_is_told_from_a_killed_one(tmp_path: Path) -> None:
    import os
    import socket

    alive = {"outcome": "running", "ended": None, "pid": os.getpid(), "hostname": socket.gethostname()}
    code, _, summary = report(planted(tmp_path, SyntheticRun(duration_s=10, slos=SLOS), **alive))
    assert code == 4
    assert summary["completeness"]["reasons"][0]["detail"].startswith(
        f"the run is still going (lab run, pid {os.getpid()})"
    )
