"""`lab run` before anything starts: bad input is refused with exit 2, and the scenario becomes the lab's
topology as expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.record import new_run_id
from lab.run import orchestrate
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
    with pytest.raises(BadInput, match="--gateway: gateway 'no-such-gateway': neither a shipped adapter"):
        prepare(RunOptions(SMOKE, gateway="no-such-gateway", out=tmp_path))


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
    assert spec.gateway.kind == "reference" and spec.gateway.values["settings"] == {"retries": 1}
    assert spec.providers[0].seed != spec.providers[1].seed
    assert to_topology_spec(scenario, None, "t.yml").providers[0].seed == spec.providers[0].seed


def test_every_shipped_scenario_prepares(tmp_path: Path) -> None:
    for path in sorted((ROOT / "toxics").glob("*.yml")):
        prepared = prepare(RunOptions(path, out=tmp_path))
        assert len(prepared.topology.providers) == len(load_scenario(path).topology.providers)


def test_run_ids_are_valid_lab_ids() -> None:
    from lab.topology.lab import _RUN_ID

    run_id = new_run_id("a-very-long-scenario-name-" * 4)
    assert _RUN_ID.match(run_id) and len(run_id) <= 63


@pytest.mark.parametrize(
    ("exit_code", "summary", "verdict"),
    [
        (0, {"slo": {"passed": True}}, "pass"),
        (1, {"slo": {"passed": False}}, "fail"),
        (1, None, "error"),  # a crash exits with 1 too: no summary, no verdict
        (2, None, "error"),
        (4, {"verdict": "incomplete", "slo": {"passed": False}}, "incomplete"),
        (0, {"verdict": "incomplete", "slo": {"passed": False}}, "error"),  # the exit code disagrees
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

    def terminated_while_images_build(self: orchestrate.Run) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread before kill returns

    ignored: list[int] = []
    monkeypatch.setattr(orchestrate.Run, "execute", terminated_while_images_build)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: ignored.append(signum))
    console = Console(record=True, width=300)
    try:
        code = orchestrate.execute(RunOptions(SMOKE, out=tmp_path, report=False), console)
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and ignored == [], "SIGTERM reached the run as an interruption"
    assert "INCOMPLETE: interrupted before the load started; no verdict" in console.export_text()
    [run_dir] = list(tmp_path.iterdir())
    assert orjson.loads((run_dir / "manifest.json").read_bytes())["outcome"] == "interrupted"
    assert restored is not None and restored != signal.SIG_DFL, "the previous handler is back"


# --- bad input never crashes the lab: one line, exit 2, nothing started, no run directory ---------------


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(run_command, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_binary_scenario_exits_2(tmp_path: Path) -> None:
    binary = tmp_path / "s.yml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    code, output = run_cli(str(binary), "--out", str(tmp_path / "out"))
    assert code == 2
    assert output == f"error: {binary}: not a text file (byte 0 is not UTF-8): expected YAML or JSON\n"
    assert not (tmp_path / "out").exists()


def test_too_many_users_exits_2_without_a_run_directory(tmp_path: Path) -> None:
    big = write(tmp_path, SMOKE.read_text().replace("users: 10", "users: 1.0e+15"))
    code, output = run_cli(str(big), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{big}: load.users: expected less than or equal to 10000" in output
    assert not (tmp_path / "out").exists()


def test_a_fault_after_a_shortened_run_exits_2_naming_the_option(tmp_path: Path) -> None:
    code, output = run_cli(str(SMOKE), "--duration", "5s", "--out", str(tmp_path / "out"))
    assert code == 2
    assert output == (
        f"error: {SMOKE}: faults[0].start: starts at 10s, not before the run ends at 5s "
        "(with --duration 5s)\n"
    )


def test_duplicate_keys_exit_2(tmp_path: Path) -> None:
    dup = write(tmp_path, SMOKE.read_text().replace("name: smoke\n", "name: smoke\nname: other\n"))
    code, output = run_cli(str(dup), "--out", str(tmp_path / "out"))
    assert code == 2 and "name: duplicate key 'name' (first on line" in output


def test_messages_with_brackets_print_as_written(tmp_path: Path) -> None:
    bad = write(tmp_path, SMOKE.read_text().replace("name: smoke", "name: '[bold]Smoke[/]'"))
    code, output = run_cli(str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    assert "String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$', got '[bold]Smoke[/]'" in output


@pytest.mark.parametrize("out", ["/proc/x", "/proc/version/x"])
def test_an_impossible_out_exits_2_before_anything_starts(tmp_path: Path, out: str) -> None:
    code, output = run_cli(str(SMOKE), "--out", out)
    assert code == 2
    assert output.splitlines()[-1].startswith(f"error: --out {out}: cannot create the run directory: ")
    assert len(output.splitlines()[-1].split("\n")) == 1


def test_a_read_only_out_exits_2_leaving_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from lab.record import RunDir

    def read_only(self: RunDir, manifest: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self.manifest_path))

    monkeypatch.setattr(RunDir, "write_manifest", read_only)
    monkeypatch.setattr(orchestrate.Run, "execute", lambda self: pytest.fail("the lab started"))
    code, output = run_cli(str(SMOKE), "--out", str(tmp_path))
    assert code == 2
    assert (
        output.splitlines()[-1]
        == f"error: --out {tmp_path}: cannot write the run record: Read-only file system"
    )
    assert list(tmp_path.iterdir()) == [], "no half-made run directory"


def test_a_full_disk_during_the_run_stops_it_as_incomplete_keeping_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the load runs: the run stops, exits 4 (INCOMPLETE) with one message, no
    temporary file is left behind, and the reserve the run kept lets the manifest say how it ended."""
    import errno

    import orjson
    from rich.console import Console

    from lab.record import RunDir

    stopped: list[str] = []

    def disk_fills_under_load(self: orchestrate.Run) -> None:
        self.save(started=1.0)  # written while there is space
        reserve = self.run_dir.path / orchestrate.RESERVE
        assert reserve.stat().st_size == orchestrate.RESERVE_BYTES
        real_write_bytes = Path.write_bytes

        def full(path: Path, data: bytes) -> int:
            if not reserve.exists():  # the reserve given up: room for a manifest again
                return real_write_bytes(path, data)
            real_write_bytes(path, data[: len(data) // 2])  # a half-written temporary file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        def parquet_full(table: object, where: Path, **_: object) -> None:
            full(where, b"PAR1 and no more")

        monkeypatch.setattr(Path, "write_bytes", full)
        monkeypatch.setattr("lab.record.pq.write_table", parquet_full)
        writer = self.run_dir.table_writer("provider_stats", autoflush=False)
        writer.append({"ts": 2.0, "provider": "a"})
        assert writer.flush() is None  # noted, not raised
        self.save(ended=2.0)  # not raised either: the reserve is given up and the manifest written
        stopped.append("under load")
        self.check_record()

    monkeypatch.setattr(orchestrate.Run, "execute", disk_fills_under_load)
    console = Console(record=True, width=300)
    code = orchestrate.execute(RunOptions(SMOKE, out=tmp_path, report=True), console)
    output = console.export_text()
    assert code == 4 and stopped == ["under load"]
    [run_dir] = list(tmp_path.iterdir())
    [message] = [line for line in output.splitlines() if "INCOMPLETE" in line]
    assert message == (
        "INCOMPLETE: the run record cannot be written: "
        f"No space left on device ({run_dir}/provider_stats); "
        "the run was stopped, its faults lifted and the lab torn down"
    )
    assert "Traceback" not in output and "the analysis" not in output
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["started"] == 1.0 and manifest["ended"] == 2.0
    assert manifest["outcome"] == "record_lost"
    assert manifest["record_failure"] == f"No space left on device ({run_dir}/provider_stats)"
    assert not list(run_dir.rglob("*.tmp")), "no temporary file left"
    assert not (run_dir / orchestrate.RESERVE).exists()
    assert RunDir(run_dir).read_manifest()["run_id"] == run_dir.name


def test_a_binary_gateway_file_is_bad_input(tmp_path: Path) -> None:
    binary = tmp_path / "gateway.yml"
    binary.write_bytes(bytes(range(128, 256)))
    with pytest.raises(BadInput, match=r"^--gateway: ") as info:
        prepare(RunOptions(SMOKE, gateway=str(binary), out=tmp_path))
    assert "\n" not in str(info.value)


def test_repeat_runs_the_scenario_n_times_and_exits_with_the_worst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = iter([0, 1, 0])
    calls: list[Path] = []

    def fake_execute(options: orchestrate.RunOptions, console: object) -> int:
        calls.append(options.out)
        return next(codes)

    monkeypatch.setattr(orchestrate, "execute", fake_execute)
    result = CliRunner().invoke(run_command, [str(SMOKE), "--out", str(tmp_path), "--repeat", "3"])
    assert result.exit_code == 1 and calls == [tmp_path] * 3
    assert "run 3 of 3" in result.output


def test_repeat_stops_at_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(orchestrate, "execute", lambda options, console: calls.append(1) or 2)
    result = CliRunner().invoke(run_command, [str(SMOKE), "--out", str(tmp_path), "--repeat", "5"])
    assert result.exit_code == 2 and len(calls) == 1


def test_the_manifest_names_only_the_gateway_that_ran(tmp_path: Path) -> None:
    """Before the lab resolves the gateway's image, the manifest names none (not the lab's own gateway):
    the adapter's spec and declared image are kept beside it; `images` keeps the lab's own gateway image
    as `reference_gateway`."""
    cut = SMOKE.with_name("primary-cut.yml")
    prepared = prepare(RunOptions(cut, gateway="haproxy", out=tmp_path))
    record = orchestrate.gateway_record(prepared.topology.gateway)
    assert record["adapter"] == "haproxy" and record["adapter_file"].endswith("haproxy.yml")
    assert record["image"] == {"ref": None, "id": None}
    assert record["declared_image"] and "haproxy" in record["declared_image"]
    assert record["spec"]["name"] == "haproxy"
