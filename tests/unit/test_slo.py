"""SLO specs, verdicts and `lab report` exit codes, including empty, torn and malformed records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pydantic
import pytest
from click.testing import CliRunner

from lab.analysis.cli import report_command
from lab.analysis.synthetic import ErrorBurst, Fault, HeadsPlan, SyntheticRun, breaker_events, write_run
from lab.record import RunDir, TableWriter
from lab.scenario.slos import SLOSpec


def report(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(report_command, [str(path), "--no-html", *args])
    return result.exit_code, result.output


def checks(path: Path) -> dict[str, dict]:
    summary = orjson.loads((path / "summary.json").read_bytes())
    return {c["name"]: c for c in summary["slo"]["checks"]}


def test_spec_accepts_the_documented_fields_and_rejects_others() -> None:
    fields = {"success_rate": 0.99, "p95_ms": 500, "p99_ms": 900, "max_gap": 0, "max_duplicates": 0}
    spec = SLOSpec.model_validate({**fields, "recovery_s": 30, "breaker_opens": 5})
    assert spec.max_gap == 0 and spec.breaker_opens == 5
    with pytest.raises(pydantic.ValidationError, match="p90_ms"):
        SLOSpec.model_validate({"p90_ms": 10})
    with pytest.raises(pydantic.ValidationError, match="success_rate"):
        SLOSpec.model_validate({"success_rate": 99})


def test_every_objective_met_exits_zero(tmp_path: Path) -> None:
    slos = {"success_rate": 0.9, "p95_ms": 1000, "p99_ms": 2000, "max_gap": 0, "max_duplicates": 0,
            "recovery_s": 10, "breaker_opens": 1}  # fmt: skip
    plan = SyntheticRun(
        duration_s=60,
        slos=slos,
        faults=[Fault("f", 20, 30)],
        bursts=[ErrorBurst(20, 25)],
        heads=HeadsPlan(),
        gateway_events=breaker_events("provider-a", 21, 26, 27),
    )
    path = write_run(plan, tmp_path / "run")
    code, output = report(path)
    assert code == 0, output
    assert "PASS" in output
    assert {name: c["status"] for name, c in checks(path).items()} == dict.fromkeys(
        ["traffic_recorded", "run_complete", "faults_applied", *slos], "pass"
    )
    # Target 90 %, 5 s windows stepped by 0.25 s: [24.5, 29.5) holds 50 failures in 500 requests, exactly
    # 90 %, so it is good; [24.25, 29.25) is not.
    assert checks(path)["recovery_s"]["actual"] == 4.5


@pytest.mark.parametrize(
    ("slos", "plan_changes", "failing"),
    [
        ({"success_rate": 0.99}, {"bursts": [ErrorBurst(0, 6)]}, "success_rate"),
        ({"p95_ms": 5}, {}, "p95_ms"),
        ({"p99_ms": 5}, {}, "p99_ms"),
        ({"max_gap": 0}, {"heads": HeadsPlan(missing=[(0, 1005, 1006)])}, "max_gap"),
        ({"max_duplicates": 0}, {"heads": HeadsPlan(duplicates=[(1, 1003)])}, "max_duplicates"),
        ({"recovery_s": 3}, {"faults": [Fault("f", 20, 30)], "bursts": [ErrorBurst(20, 25)]}, "recovery_s"),
        ({"breaker_opens": 0}, {"gateway_events": breaker_events("provider-a", 1, 2, 3)}, "breaker_opens"),
    ],
)
def test_a_missed_objective_exits_one(tmp_path: Path, slos: dict, plan_changes: dict, failing: str) -> None:
    path = write_run(SyntheticRun(duration_s=60, slos=slos, **plan_changes), tmp_path / "run")
    code, output = report(path)
    assert code == 1, output
    assert checks(path)[failing]["status"] == "fail"
    assert "FAIL" in output


def test_an_objective_without_data_fails_as_no_data(tmp_path: Path) -> None:
    path = write_run(SyntheticRun(duration_s=10, slos={"max_gap": 0, "breaker_opens": 3}), tmp_path / "run")
    code, _ = report(path)
    assert code == 1
    assert checks(path)["max_gap"]["status"] == "no_data"
    assert checks(path)["breaker_opens"]["status"] == "no_data"


def test_a_run_with_no_requests_gets_a_clear_failing_verdict(tmp_path: Path) -> None:
    RunDir.create(tmp_path, "empty").write_manifest(
        {"scenario": {"name": "s", "slos": {"success_rate": 0.99}}, "outcome": "completed"}
    )
    code, output = report(tmp_path / "empty")
    assert code == 1
    assert "no requests and no heads were recorded" in output
    found = checks(tmp_path / "empty")
    assert found["traffic_recorded"]["status"] == "fail"
    assert found["success_rate"]["status"] == "no_data"
    html = CliRunner().invoke(report_command, [str(tmp_path / "empty")])
    assert (
        html.exit_code == 1
        and "No requests were recorded" in (tmp_path / "empty" / "report.html").read_text()
    )


def test_a_record_written_by_the_real_writers_and_torn_by_a_kill_is_analysed(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "torn")
    run.write_manifest({"scenario": {"name": "s", "slos": {"success_rate": 0.5}}, "started": 1000.0})
    with TableWriter(run.path, "requests", autoflush=False) as writer:
        for i in range(20):
            failed = i % 4 == 0
            row = {"ts": 1000.0 + i, "method": "eth_call", "latency_ms": 5.0, "provider": "p1", "attempts": 1}
            writer.append({**row, "ok": not failed, "error_class": "timeout" if failed else None})
    (run.path / "requests" / "part-dead-000001.parquet.tmp").write_bytes(b"half a part")
    with run.event_log("faults") as log:
        log.append(
            {
                "event": "start",
                "fault_id": "f1",
                "name": "kill",
                "action": "kill",
                "target": "p1",
                "ts": 1005.0,
            }
        )
    with (run.path / "faults.jsonl").open("ab") as fh:
        fh.write(b'{"event": "end", "fault_id": "f1", "ts": 10')  # killed mid-line
    code, output = report(run.path)
    assert code == 4, output  # killed: INCOMPLETE, whatever its SLOs say
    assert "INCOMPLETE: the run never finished" in output
    summary = orjson.loads((run.path / "summary.json").read_bytes())
    assert summary["verdict"] == "incomplete" and summary["slo"]["passed"] is False
    assert summary["requests"] == 20 and summary["success_rate"] == 0.75
    assert summary["faults"][0]["ended"] is False
    assert summary["duration_s"] == 19.0  # no end time: the last record


def test_not_a_run_directory_exits_two(tmp_path: Path) -> None:
    code, output = report(tmp_path / "missing")
    assert code == 2 and "not a directory" in output
    (tmp_path / "plain").mkdir()
    code, output = report(tmp_path / "plain")
    assert code == 2 and "no manifest.json" in output


def test_malformed_slos_exit_two_naming_the_file_and_field(tmp_path: Path) -> None:
    RunDir.create(tmp_path, "bad").write_manifest({"scenario": {"name": "s", "slos": {"p95_ms": "fast"}}})
    code, output = report(tmp_path / "bad")
    assert code == 2
    assert "manifest.json" in output and "scenario.slos.p95_ms" in output


def test_a_corrupt_part_file_exits_two_naming_the_table(tmp_path: Path) -> None:
    path = write_run(SyntheticRun(duration_s=5, rps=10), tmp_path / "run")
    (path / "requests" / "part-x-000001.parquet").write_bytes(b"not parquet")
    code, output = report(path)
    assert code == 2 and "requests" in output and "cannot be read" in output


def test_bad_recovery_options_exit_two(tmp_path: Path) -> None:
    path = write_run(SyntheticRun(duration_s=5, rps=10), tmp_path / "run")
    assert report(path, "--window", "0")[0] == 2


def test_a_full_disk_exits_three_keeping_the_record_and_the_earlier_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import lab.analysis.report

    path = write_run(SyntheticRun(duration_s=5, rps=10), tmp_path / "run")
    assert report(path)[0] in (0, 1)
    before = {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()}

    def full(target: Path, data: object) -> None:
        target.write_bytes(b'{\n  "half')
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(lab.analysis.report, "write_json", full)
    code, output = report(path)
    assert code == 3
    assert output == (
        f"the report could not be written: No space left on device ({path / 'summary.json'}); the run record "
        "and any earlier report are unchanged (--out writes the report elsewhere)\n"
    )
    assert {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
