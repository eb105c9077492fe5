"""`lab run` before anything starts: bad input is refused with exit 2, and the scenario becomes the lab's
topology as expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.record import new_run_id
from lab.run.cli import run_command
from lab.run.errors import BadInput
from lab.run.orchestrate import RunOptions, prepare
from lab.scenario import load_scenario, parse_scenario
from lab.scenario.topology import to_topology_spec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "toxics" / "smoke.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yml"
    path.write_text(text)
    return path


def test_malformed_scenario_exits_2_before_anything_starts(tmp_path: Path) -> None:
    bad = write(tmp_path, "name: x\ntopology: {providers: [{id: a}]}\nload: {duration: soon}\n")
    result = CliRunner().invoke(run_command, [str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{bad}: load.duration: expected a duration like '500ms'" in result.output
    assert not (tmp_path / "out").exists(), "no run directory for a run that never started"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "forever"], "expected a duration"),
        (["--duration", "0s"], "must be positive"),
        (["--users", "0"], "0 is not in the range"),
        (["--workers", "0"], "0 is not in the range"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(run_command, [str(SMOKE), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output


def test_unknown_gateway_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--gateway: gateway spec 'nginx'"):
        prepare(RunOptions(SMOKE, gateway="nginx", out=tmp_path))


def test_gateway_settings_are_checked_against_the_reference_gateway(tmp_path: Path) -> None:
    text = SMOKE.read_text().replace(
        "    - id: tertiary\n", "    - id: tertiary\n  gateway:\n    settings: {retries: -1, colour: blue}\n"
    )
    with pytest.raises(BadInput) as info:
        prepare(RunOptions(write(tmp_path, text), out=tmp_path))
    assert "topology.gateway.settings.retries" in str(info.value)
    assert "topology.gateway.settings.colour" in str(info.value)


def test_overrides_reach_the_plan_and_the_load(tmp_path: Path) -> None:
    prepared = prepare(RunOptions(SMOKE, duration=15, users=2, seed=5, out=tmp_path))
    assert prepared.plan.duration == 15
    assert prepared.scenario.load.users == 2 and prepared.scenario.seed == 5
    assert [f.end for f in prepared.plan.faults] == [20.0]  # planned past the end: lifted when the run ends


def test_scenario_topology_becomes_the_labs() -> None:
    scenario = parse_scenario(
        "name: t\nseed: 3\ntopology:\n  chain: base\n  chain_id: 8453\n  block_time: 2s\n  providers:\n"
        "    - {id: a, behavior: {type: latency, ms: 20}}\n    - {id: b, block_time: 500ms}\n"
        "  gateway: {settings: {retries: 1}}\n"
    )
    spec = to_topology_spec(scenario, None, "t.yml")
    assert (spec.chain, spec.chain_id) == ("base", 8453)
    assert [(p.id, p.block_time) for p in spec.providers] == [("a", 2.0), ("b", 0.5)]
    assert spec.providers[0].behavior | {"seed": None} == {
        "type": "latency",
        "ms": 20.0,
        "jitter_ms": 0.0,
        "seed": None,
    }
    assert spec.gateway.kind == "reference" and spec.gateway.settings == {"retries": 1}
    assert spec.providers[0].seed != spec.providers[1].seed
    assert to_topology_spec(scenario, None, "t.yml").providers[0].seed == spec.providers[0].seed


def test_every_shipped_scenario_prepares(tmp_path: Path) -> None:
    for path in sorted((ROOT / "toxics").glob("*.yml")):
        prepared = prepare(RunOptions(path, out=tmp_path))
        assert len(prepared.topology.providers) == len(load_scenario(path).topology.providers)


def test_run_ids_are_valid_lab_ids() -> None:
    from lab.topology import _RUN_ID

    run_id = new_run_id("a-very-long-scenario-name-" * 4)
    assert _RUN_ID.match(run_id) and len(run_id) <= 63


@pytest.mark.parametrize(
    ("exit_code", "summary", "verdict"),
    [
        (0, {"slo": {"passed": True}}, "pass"),
        (1, {"slo": {"passed": False}}, "fail"),
        (1, None, "error"),  # a crash exits with 1 too: no summary, no verdict
        (2, None, "error"),
    ],
)
def test_the_verdict_comes_from_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int, summary: dict | None, verdict: str
) -> None:
    import subprocess

    import orjson
    from rich.console import Console

    from lab.run.orchestrate import analyse

    def fake_report(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert command[-2:] == ["report", str(tmp_path)]
        if summary is not None:
            (tmp_path / "summary.json").write_bytes(orjson.dumps(summary))
        return subprocess.CompletedProcess(command, exit_code)

    monkeypatch.setattr(subprocess, "run", fake_report)
    assert analyse(tmp_path, Console(quiet=True)) == verdict


def test_sigterm_before_the_lab_is_up_is_an_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import orjson
    from rich.console import Console

    from lab.run import orchestrate

    def terminated_while_images_build(self: orchestrate.Run) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread before kill returns

    ignored: list[int] = []
    monkeypatch.setattr(orchestrate.Run, "execute", terminated_while_images_build)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: ignored.append(signum))
    try:
        code = orchestrate.execute(RunOptions(SMOKE, out=tmp_path, report=False), Console(quiet=True))
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and ignored == [], "SIGTERM reached the run as an interruption"
    [run_dir] = list(tmp_path.iterdir())
    assert orjson.loads((run_dir / "manifest.json").read_bytes())["outcome"] == "interrupted"
    assert restored is not None and restored != signal.SIG_DFL, "the previous handler is back"
