"""The nightly job, the same here (`make nightly`) and in .github/workflows/nightly.yml.

1. The battle matrix: `pytest -m battle` (every shipped scenario against the reference gateway, among
   them the 10-minute soak production-resilience; the weak gateway against the chaos; the soak shortened
   with a planted leak, which must fail its memory slope), each run record under $NIGHTLY_OUT/runs,
   JUnit in junit/. Controls, the runs a battle test means to fail (the weak gateway, the leak) and the
   shortened A/A repeats, go under $NIGHTLY_OUT/controls: their tests judge them, so their verdicts
   neither fail the night nor join a history; summary.md lists them apart.
2. Each run: complete? (its manifest says `completed`, it has a summary.json and its verdict is not
   INCOMPLETE — `lab report` found the evidence whole; otherwise INCOMPLETE, with the summary's reason).
   An INCOMPLETE run is never compared nor added to the history.
3. Each complete run against the history of its scenario ($NIGHTLY_HISTORY/<scenario>/*.json, the
   newest summaries): `lab compare` (a regression = a change beyond the between-run noise of the history
   and the scenario's tolerance; with no history the verdict is weak and passes). Then its summary joins
   the history (the newest KEEP kept) and `lab history` reports the change points (shown, not failed on:
   a change point is a question for a human; the failing verdict is the comparison's).
4. summary.md (every verdict, then each run's summary.md and compare.md) into $OUT and, on GitHub, into
   $GITHUB_STEP_SUMMARY.

Exit 1 on a missed SLO, a regression or a failed battle test; else 4 (lab.cli's INCOMPLETE) when a run
is INCOMPLETE or there are no runs; otherwise 0.

Environment: NIGHTLY_OUT (default reports/nightly/<UTC time>), NIGHTLY_HISTORY (reports/nightly-history),
NIGHTLY_KEEP (30), NIGHTLY_SELECT (a pytest -k expression: a part of the matrix, for trying it out).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class RunOutcome:
    path: Path
    scenario: str
    run_id: str
    complete: bool
    slo: str  # PASS / FAIL / INCOMPLETE / — (no summary)
    compare: str = "—"  # the comparison's verdict
    why: str = ""  # why the run is INCOMPLETE


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "lab"), *args], cwd=ROOT, capture_output=True, text=True, check=False)


def find_runs(runs_root: Path) -> list[RunOutcome]:
    outcomes = []
    for manifest_path in sorted(runs_root.rglob("manifest.json")):
        run_dir = manifest_path.parent
        manifest = json.loads(manifest_path.read_text())
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        verdict = None if summary is None else verdict_of(summary)
        outcomes.append(
            RunOutcome(
                path=run_dir,
                scenario=str((manifest.get("scenario") or {}).get("name") or run_dir.name),
                run_id=str(manifest.get("run_id") or run_dir.name),
                complete=manifest.get("outcome") == "completed" and verdict in ("pass", "fail"),
                slo="—" if verdict is None else verdict.upper(),
                why=incomplete_reason(manifest, summary),
            )
        )
    return outcomes


def verdict_of(summary: dict) -> str:
    """ "pass", "fail" or "incomplete" (a summary from before INCOMPLETE: from its SLO checks)."""
    verdict = summary.get("verdict")
    if verdict in ("pass", "fail", "incomplete"):
        return str(verdict)
    return "pass" if summary["slo"]["passed"] else "fail"


def incomplete_reason(manifest: dict, summary: dict | None) -> str:
    """Why a run is INCOMPLETE ("" when it is not, as far as the record says)."""
    reasons = ((summary or {}).get("completeness") or {}).get("reasons") or []
    if reasons:
        return "; ".join(str(r.get("detail")) for r in reasons)
    if manifest.get("outcome") != "completed":
        return f"outcome {manifest.get('outcome')!r}" + (
            f": {manifest['error']}" if manifest.get("error") else ""
        )
    return "" if summary is not None else "no summary.json (the analysis did not run)"


def judge_against_history(run: RunOutcome, history: Path, out: Path, keep: int) -> list[str]:
    """Compare the run with its scenario's history, then add it; the markdown sections produced."""
    sections = []
    scenario_history = history / run.scenario
    if any(scenario_history.glob("*.json")):
        compared = out / "compare" / run.run_id
        result = lab("compare", str(scenario_history), str(run.path), "--out", str(compared))
        if result.returncode not in (0, 1):
            run.compare = f"error (exit {result.returncode})"
            sections.append(f"### {run.scenario}: compare failed\n\n```\n{result.stdout[-2000:]}\n```\n")
        else:
            run.compare = json.loads((compared / "compare.json").read_text())["verdict"]
            shutil.copy(compared / "compare-junit.xml", out / "junit" / f"compare-{run.run_id}.xml")
            sections.append((compared / "compare.md").read_text())
    else:
        run.compare = "first night (no history)"
    scenario_history.mkdir(parents=True, exist_ok=True)
    shutil.copy(run.path / "summary.json", scenario_history / f"{run.run_id}.json")

    def started(path: Path) -> str:
        return str(json.loads(path.read_text()).get("started", ""))

    for old in sorted(scenario_history.glob("*.json"), key=started)[:-keep]:
        old.unlink()
    changes = lab("history", str(scenario_history), "--json", str(out / "history" / f"{run.scenario}.json"))
    sections.append(
        f"### {run.scenario}: change points over the history\n\n```\n{changes.stdout.strip()}\n```\n"
    )
    return sections


def main() -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / os.environ.get("NIGHTLY_OUT", f"reports/nightly/{stamp}")
    history = ROOT / os.environ.get("NIGHTLY_HISTORY", "reports/nightly-history")
    keep = int(os.environ.get("NIGHTLY_KEEP", "30"))
    select = os.environ.get("NIGHTLY_SELECT", "")
    for sub in ("runs", "controls", "junit", "compare", "history"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    subprocess.run([str(BIN / "lab"), "images"], cwd=ROOT, check=True)  # not under a test's time limit
    pytest = [
        str(BIN / "pytest"),
        "-m",
        "battle",
        "tests/battle",
        f"--junitxml={out / 'junit' / 'battle.xml'}",
    ]
    battle = subprocess.run(
        [*pytest, *(["-k", select] if select else [])],
        cwd=ROOT,
        env={**os.environ, "LAB_BATTLE_OUT": str(out / "runs"), "LAB_BATTLE_CONTROLS": str(out / "controls")},
        check=False,
    )
    code, summary = judge(stamp, out, history, keep, battle.returncode)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as step_summary:
            step_summary.write(summary)
    print(f"nightly: {'FAILED' if code else 'passed'}; summary: {out / 'summary.md'}")
    return code


def judge(stamp: str, out: Path, history: Path, keep: int, battle_code: int) -> tuple[int, str]:
    """The night's verdict on the runs under out/runs (each against its scenario's history, then added
    to it) and the controls under out/controls (listed: their own battle tests judge them, and a control
    is meant to fail); writes and returns summary.md, with the exit code."""
    runs = find_runs(out / "runs")
    controls = find_runs(out / "controls")
    sections: list[str] = []
    for run in runs:
        if run.complete:
            sections += judge_against_history(run, history, out, keep)
    incomplete = [r for r in runs if not r.complete]
    regressions = [r for r in runs if r.compare == "regression"]
    code = exit_code(runs, battle_code)

    def row(r: RunOutcome) -> str:
        complete = "yes" if r.complete else f"**INCOMPLETE**: {r.why}"
        return f"| {r.scenario} | `{r.run_id}` | {complete} | {r.slo} | {r.compare} |"

    def summaries(of: list[RunOutcome]) -> list[str]:
        return [(r.path / "summary.md").read_text() for r in of if (r.path / "summary.md").exists()]

    lines = [
        f"# Nightly {stamp}: {'FAILED' if code else 'PASSED'}",
        "",
        "- battle tests: " + ("passed" if battle_code == 0 else f"FAILED (pytest exit {battle_code})"),
        f"- runs: {len(runs)}, incomplete: {len(incomplete)}, regressions: {len(regressions)}",
        "",
        "| scenario | run | complete | verdict | against the history |",
        "|---|---|---|---|---|",
        *(row(r) for r in runs),
        "",
        *summaries(runs),
        *sections,
    ]
    if controls:
        lines += [
            "## Controls",
            "",
            "Runs a battle test judges itself: planted weaknesses and a planted leak, which must FAIL, and "
            "the shortened A/A repeats. Their verdicts do not fail the night (their tests do, in the battle "
            "tests' line above), and they never join a scenario's history.",
            "",
            "| scenario | run | complete | verdict | against the history |",
            "|---|---|---|---|---|",
            *(row(r) for r in controls),
            "",
            *summaries(controls),
        ]
    summary = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(summary)
    return code, summary


EXIT_INCOMPLETE = 4  # lab.cli's (the nightly runs without importing the lab)


def exit_code(runs: list[RunOutcome], battle_code: int) -> int:
    """1 on a missed SLO or a regression, else 4 when a run is INCOMPLETE (or none ran), else 1 when the
    battle tests failed otherwise, else 0."""
    if any(r.slo == "FAIL" or r.compare == "regression" for r in runs):
        return 1
    if not runs or any(not r.complete for r in runs):
        return EXIT_INCOMPLETE
    return 1 if battle_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
