"""The report files: summary.json's contract, valid JUnit XML, a self-contained report.html, summary.md."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from lab.analysis.loading import load_run
from lab.analysis.report import write_report
from lab.analysis.summary import analyse
from lab.analysis.synthetic import (
    ErrorBurst,
    Fault,
    HeadsPlan,
    ProviderOutage,
    SyntheticRun,
    breaker_events,
    write_run,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plan = SyntheticRun(
        duration_s=90,
        slos={"success_rate": 0.999, "p95_ms": 1000, "max_gap": 0},
        faults=[Fault("kill-a", 30, 50, target="provider-a"), Fault("never-ends", 70, None, target="gw")],
        bursts=[ErrorBurst(30, 33)],
        outages=[ProviderOutage("provider-a", 31, 55)],
        heads=HeadsPlan(missing=[(0, 1010, 1011)]),
        gateway_events=breaker_events("provider-a", 31, 40, 41),
    )
    path = write_run(plan, tmp_path_factory.mktemp("report") / "run")
    write_report(analyse(load_run(path)), path)
    return path


def test_summary_json_has_the_contract_keys(written: Path) -> None:
    summary = orjson.loads((written / "summary.json").read_bytes())
    assert {"requests", "success_rate", "latency_ms", "faults", "providers", "subscription", "slo"} <= set(
        summary
    )
    assert set(summary["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert all("recovery_s" in f for f in summary["faults"])
    assert summary["faults"][0]["recovery_s"] == 3.0
    assert set(summary["providers"]) == {"provider-a", "provider-b", "provider-c"}
    assert all(isinstance(v, float) for v in summary["providers"].values())
    assert set(summary["subscription"]) >= {"heads", "missing", "duplicates", "max_gap"}
    assert (summary["subscription"]["missing"], summary["subscription"]["max_gap"]) == (2, 2)
    assert set(summary["slo"]) == {"passed", "verdict", "checks"}
    assert summary["verdict"] == "fail" and summary["completeness"]["complete"] is True
    assert summary["slo"]["passed"] is False


def test_summary_json_is_strict_json_without_nan(written: Path) -> None:
    text = (written / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text

    def walk(value: object) -> None:
        if isinstance(value, float):
            assert math.isfinite(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(orjson.loads(text))


def test_junit_has_one_testcase_per_slo_check(written: Path) -> None:
    root = ET.parse(written / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    summary = orjson.loads((written / "summary.json").read_bytes())
    assert len(cases) == len(summary["slo"]["checks"]) == int(suite.get("tests", "-1"))
    failed = [c.get("name", "") for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures", "-1")) == len(failed)
    assert any(name.startswith("success_rate") for name in failed)
    assert any(name.startswith("max_gap") for name in failed)
    assert not any(name.startswith("p95_ms") for name in failed)


def test_report_html_is_self_contained_with_embedded_plots(written: Path) -> None:
    html = (written / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external resources"
    assert "<script" not in html
    images = re.findall(r"src='data:image/png;base64,", html)
    assert len(images) == 5  # latency, throughput, recovery, providers, heads
    for heading in ("SLO verdicts", "Faults", "Failover", "Circuit breakers", "Subscriptions", "Per method"):
        assert heading in html
    assert "kill-a" in html and "never-ends" in html


def test_summary_md_states_the_verdict_and_the_slo_table(written: Path) -> None:
    text = (written / "summary.md").read_text()
    assert text.startswith("## FAIL: synthetic")
    assert "| success_rate |" in text and "| FAIL |" in text
    assert "report.html" in text


def test_a_fault_that_was_not_applied_shows_in_every_output(tmp_path: Path) -> None:
    plan = SyntheticRun(
        duration_s=60, faults=[Fault("ok", 10, 20), Fault("broken", 30, 40, failed="DockerException: gone")]
    )
    path = write_run(plan, tmp_path / "run")
    write_report(analyse(load_run(path)), path)
    html = (path / "report.html").read_text()
    assert "could not be applied" in html and "DockerException: gone" in html
    md = (path / "summary.md").read_text()
    assert md.startswith("## INCOMPLETE")
    assert "| broken | toxic → provider-a | 30 s | DockerException: gone |" in md
    assert md.splitlines()[2].startswith("**INCOMPLETE: fault f2 (toxic → provider-a) could not be applied")
    root = ET.parse(path / "junit.xml").getroot()
    errors = [c.get("name", "") for c in root.iter("testcase") if c.find("error") is not None]
    assert errors == ["faults_applied: every fault was applied"]
    props = {p.get("name"): p.get("value", "") for p in root.iter("property")}
    assert props["verdict"] == "INCOMPLETE" and "DockerException: gone" in props["incomplete"]
