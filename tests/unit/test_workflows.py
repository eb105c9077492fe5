"""The CI workflows: valid against GitHub's workflow schema (check-jsonschema's vendored copy, offline),
and the nightly is `make nightly` (.ci/nightly.py), so the job and the local command cannot drift."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import orjson
import yaml

from lab.analysis.synthetic import SyntheticRun, write_run

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_workflows_validate_against_githubs_schema() -> None:
    assert {p.name for p in WORKFLOWS} == {"nightly.yml", "pull-request.yml"}
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: {schedule: [{cron: 1}]}\njobs: {a: {runs-on: ubuntu-latest}}\n")
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1


def run_commands(workflow: str) -> list[str]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    return [step["run"] for job in data["jobs"].values() for step in job["steps"] if "run" in step]


def test_the_workflows_run_the_readmes_commands() -> None:
    assert run_commands("nightly.yml") == ["make nightly"]
    assert run_commands("pull-request.yml")[:2] == ["make test", "make lab SCENARIO=toxics/smoke.yml"]
    makefile = (ROOT / "Makefile").read_text()
    assert "nightly: $(STAMP)\n\t$(BIN)/python .ci/nightly.py\n" in makefile


def load_nightly() -> object:
    spec = importlib.util.spec_from_file_location("nightly", ROOT / ".ci" / "nightly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nightly"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_a_run_without_its_summary_or_not_completed_is_incomplete(tmp_path: Path) -> None:
    nightly = load_nightly()
    done = write_run(SyntheticRun(duration_s=5, rps=10), tmp_path / "runs" / "smoke" / "done")
    killed = write_run(SyntheticRun(duration_s=5, rps=10), tmp_path / "runs" / "smoke" / "killed")
    for path, outcome in ((done, "completed"), (killed, "interrupted")):
        manifest = orjson.loads((path / "manifest.json").read_bytes())
        (path / "manifest.json").write_bytes(orjson.dumps({**manifest, "outcome": outcome}))
        (path / "summary.json").write_bytes(orjson.dumps({"slo": {"passed": True}}))
    runs = {r.run_id: r for r in nightly.find_runs(tmp_path / "runs")}  # type: ignore[attr-defined]
    assert runs["done"].complete and not runs["killed"].complete
    (done / "summary.json").unlink()
    assert not nightly.find_runs(tmp_path / "runs")[0].complete  # type: ignore[attr-defined]
