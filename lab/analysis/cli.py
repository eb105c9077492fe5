"""`lab report`, `lab compare`, `lab baseline`, `lab history`: the analysis side of the command line.

Exit codes (see lab.cli): 0 the verdict held, 1 it failed (an SLO missed, a regression), 2 bad input,
3 the report could not be written (e.g. the disk is full; the run record and any earlier report are kept),
4 INCOMPLETE (`lab report`: the run's evidence is not whole, see lab.analysis.completeness).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.analysis.loading import RecordError
from lab.cli import EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_LAB_FAILED, EXIT_OK, EXIT_VERDICT_FAILED

_STYLE = {"pass": "bold green", "fail": "bold red", "no_data": "bold yellow", "incomplete": "bold yellow"}
VERDICT_EXIT = {"pass": EXIT_OK, "fail": EXIT_VERDICT_FAILED, "incomplete": EXIT_INCOMPLETE}
_VERDICT_STYLE = {
    "regression": "bold red",
    "improvement": "bold cyan",
    "no_change": "green",
    "no_data": "yellow",
    "weak": "bold yellow",
    "inconclusive": "bold yellow",
}
_baselines_option = click.option(
    "--baselines", "root", type=click.Path(path_type=Path), default="reports/baselines", show_default=True,
    help="Where baselines are stored, one directory per scenario.",
)  # fmt: skip


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # a CI log or a pipe: rich's 80-column default would wrap every table
    return console


def _bad_input(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise SystemExit(EXIT_BAD_INPUT)


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Where to write (default: RUN_DIR).")
@click.option("--window", "window_s", default=5.0, show_default=True, help="Recovery window (s).")
@click.option(
    "--step", "step_s", default=0.25, show_default=True, help="Recovery window step (s): the resolution."
)
@click.option(
    "--baseline", "baseline_s", default=30.0, show_default=True, help="Steady state before a fault (s)."
)
@click.option(
    "--latency-tolerance", default=0.5, show_default=True, type=click.FloatRange(min=0),
    help="Recovered: p95 within this share of the pre-fault baseline's (0.5: 50 %).",
)  # fmt: skip
@click.option(
    "--latency-slack", "latency_slack_ms", default=25.0, show_default=True, type=click.FloatRange(min=0),
    help="... and never closer than this many ms to it.",
)  # fmt: skip
@click.option("--no-html", is_flag=True, help="Skip report.html (and its plots).")
def report_command(
    run_dir: Path,
    out_dir: Path | None,
    window_s: float,
    step_s: float,
    baseline_s: float,
    latency_tolerance: float,
    latency_slack_ms: float,
    no_html: bool,
) -> None:
    """Analyse RUN_DIR: SLO verdicts, report.html, summary.json, summary.md, junit.xml.

    Exit codes: 0 PASS, 1 FAIL, 2 bad input, 3 the report could not be written, 4 INCOMPLETE (the run
    was interrupted, killed, cut short, lost records or could not apply a fault: no verdict)."""
    from lab.analysis.loading import load_run
    from lab.analysis.report import write_report
    from lab.analysis.summary import analyse, recovery_settings

    console = _console()
    if (
        not all(map(math.isfinite, (window_s, step_s, baseline_s)))
        or window_s <= 0
        or step_s <= 0
        or baseline_s < 0
    ):
        _bad_input(console, "--window and --step must be positive, --baseline not negative")
    try:
        run = load_run(run_dir)
    except RecordError as exc:
        _bad_input(console, str(exc))
    settings = recovery_settings(run, window_s, step_s, baseline_s)
    settings = replace(settings, latency_tolerance=latency_tolerance, latency_slack_ms=latency_slack_ms)
    analysis = analyse(run, settings)
    target = out_dir or run_dir
    try:
        paths = _replacing_report(target, lambda: write_report(analysis, target, html=not no_html))
    except OSError as exc:
        where = exc.filename or target
        console.print(
            f"[bold red]the report could not be written:[/] {escape(f'{exc.strerror or exc} ({where})')}; "
            "the run record and any earlier report are unchanged (--out writes the report elsewhere)"
        )
        raise SystemExit(EXIT_LAB_FAILED) from None
    print_verdict(console, analysis.summary)
    for name, path in paths.items():
        console.print(escape(f"{name}: {path}"))
    raise SystemExit(VERDICT_EXIT[analysis.slo.verdict])


def _replacing_report(out_dir: Path, write: Callable[[], dict[str, Path]]) -> dict[str, Path]:
    """Run `write`, keeping the report files already in `out_dir` until it succeeds: on an OSError (a
    full disk) what it half wrote is removed and the earlier files are put back. Renames need no space."""
    from lab.analysis.report import REPORT_FILES

    earlier = [out_dir / name for name in REPORT_FILES if (out_dir / name).is_file()]
    moved: list[Path] = []
    try:
        for path in earlier:
            os.replace(path, _aside(path))
            moved.append(path)
        paths = write()
    except OSError:
        if len(moved) == len(earlier):  # the write itself failed: remove what it half wrote
            for name in REPORT_FILES:
                with contextlib.suppress(OSError):
                    (out_dir / name).unlink(missing_ok=True)
        for path in moved:
            with contextlib.suppress(OSError):
                os.replace(_aside(path), path)
        raise
    for path in earlier:
        with contextlib.suppress(OSError):
            _aside(path).unlink(missing_ok=True)
    return paths


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.earlier")


def print_verdict(console: Console, summary: dict[str, Any]) -> None:
    from lab.analysis import render as r
    from lab.analysis.report import incomplete_line, verdict_of

    verdict = verdict_of(summary)
    if verdict == "incomplete":
        console.print(f"[bold yellow]{escape(incomplete_line(summary))}[/]")
    table = Table(title=escape(f"{summary['scenario']} · run {summary['run_id']}"), title_justify="left")
    for column in ("SLO", "objective", "verdict", "measured"):
        table.add_column(column)
    for check in summary["slo"]["checks"]:
        status = check["status"]
        table.add_row(
            check["name"],
            escape(check["objective"]),
            f"[{_STYLE[status]}]{r.status_text(status)}[/]",
            escape(check["detail"]),
        )
    console.print(table)
    lat = summary["latency_ms"]
    from lab.analysis.report import gateway_line

    console.print(escape(gateway_line(summary)))
    console.print(
        f"{summary['requests']:,} requests · success {r.pct(summary['success_rate'])} · "
        f"response time p50 {r.ms(lat['p50'])} · p95 {r.ms(lat['p95'])} · p99 {r.ms(lat['p99'])} · "
        f"{len(summary['faults'])} faults · {summary['subscription']['heads']:,} heads"
    )
    for fault in summary["faults"]:
        recovery = fault["recovery_s"]
        impact = fault.get("time_to_first_impact_s")
        text = "no impact" if impact is None else f"first hit after {r.secs(impact)} ({fault['impacted_by']})"
        text += (
            f", recovered {r.secs(recovery)} after its start ({r.secs(fault['recovery_after_end_s'])} "
            "after its end)"
            if recovery is not None
            else f", {fault['recovery_status'].replace('_', ' ')}"
        )
        console.print(escape(f"  fault {fault['name']} → {fault['target']}: {text}"))
    for failed in summary["failed_faults"]:
        console.print(
            f"  [bold red]fault {escape(failed['name'])} → {escape(failed['target'])}: NOT APPLIED[/] "
            f"({escape(failed['error'])})"
        )
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if verdict == "incomplete":
        console.print(f"[bold yellow]{escape(incomplete_line(summary))}[/]")
    else:
        console.print("[bold green]PASS[/]" if verdict == "pass" else "[bold red]FAIL[/]")


@click.command("compare")
@click.argument("baseline")
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Where to write (default: CURRENT).")
@_baselines_option
@click.option(
    "--alpha", default=0.01, show_default=True, type=click.FloatRange(0, 0.5, min_open=True),
    help="One-sided significance level per metric against the between-run noise.",
)  # fmt: skip
@click.option(
    "--last", default=20, show_default=True, type=click.IntRange(min=1),
    help="At most this many runs of a side (the newest): the window over the nightly history.",
)  # fmt: skip
@click.option(
    "--tolerance", "tolerances", multiple=True, metavar="NAME=VALUE",
    help="Override a tolerance of the scenario's regression: section (success_rate, p50, p95, p99, "
    "recovery_s, max_gap).",
)  # fmt: skip
@click.option(
    "--max-sample", default=200_000, show_default=True, help="Latencies kept for the distribution plot."
)
@click.option("--seed", default=0, show_default=True)
def compare_command(
    baseline: str,
    current: Path,
    out_dir: Path | None,
    root: Path,
    alpha: float,
    last: int,
    tolerances: tuple[str, ...],
    max_sample: int,
    seed: int,
) -> None:
    """Compare CURRENT with BASELINE, run against run. Each is a run directory, a directory of runs
    (`lab run --repeat N --out DIR`, or the nightly history of summary files); BASELINE may also be a
    baseline directory or the name of a scenario with a stored baseline. Exit code 1 on a regression: a
    change larger than the between-run noise and the scenario's tolerance."""
    import pydantic

    from lab.analysis.baseline import load_side
    from lab.analysis.compare import CompareError, CompareSettings, compare
    from lab.analysis.compare_report import write_comparison
    from lab.scenario.slos import RegressionSpec

    console = _console()
    settings = CompareSettings(alpha=alpha, last=last, max_sample=max_sample, seed=seed)
    try:
        if not current.is_dir():
            raise RecordError(f"{current}: CURRENT must be a run directory or a directory of runs")
        current_side = load_side(str(current), settings, root)
        base_side = load_side(baseline, settings, root, scenario=current_side.scenario)
        if tolerances:
            overrides = dict(_name_value(t) for t in tolerances)
            current_side.tolerances = RegressionSpec.model_validate(
                {**current_side.tolerances.model_dump(), **overrides}
            )
        result = compare(base_side, current_side, settings)
    except (RecordError, CompareError) as exc:
        _bad_input(console, str(exc))
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"--tolerance {e['loc'][0]}: {e['msg']}" for e in exc.errors())
        _bad_input(console, problems)
    paths = write_comparison(result, base_side, current_side, out_dir or current)
    _print_comparison(console, result)
    for name, path in paths.items():
        console.print(escape(f"{name}: {path}"))
    raise SystemExit(EXIT_VERDICT_FAILED if result["verdict"] == "regression" else EXIT_OK)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise RecordError(f"--tolerance {text}: expected NAME=VALUE")
    return name.strip(), value.strip()


def _print_comparison(console: Console, result: dict[str, Any]) -> None:
    from lab.analysis.compare_report import HEADERS, metric_rows

    base, cur = result["baseline"], result["current"]
    title = f"{result['scenario']}: {base['runs']} baseline run(s) → {cur['runs']} current run(s)"
    table = Table(title=escape(title), title_justify="left")
    for column in HEADERS[:-1]:
        table.add_column(column)
    for row in metric_rows(result):
        verdict_text, verdict = row[6]
        table.add_row(
            *(escape(str(cell)) for cell in row[:6]), f"[{_VERDICT_STYLE[verdict]}]{verdict_text}[/]"
        )
    console.print(table)
    verdict = result["verdict"]
    console.print(
        f"[{_VERDICT_STYLE[verdict]}]{verdict.replace('_', ' ').upper()}[/]: {escape(result['explanation'])}"
    )


@click.group("baseline")
def baseline_command() -> None:
    """Per-scenario baselines for `lab compare` (changed only by `lab baseline set`)."""


@baseline_command.command("set")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_baselines_option
@click.option("--max-sample", default=200_000, show_default=True, help="Latencies kept (uniform sample).")
@click.option("--seed", default=0, show_default=True)
def baseline_set(run_dirs: tuple[Path, ...], root: Path, max_sample: int, seed: int) -> None:
    """Make RUN_DIRS (runs of one scenario; several give the noise between runs) its baseline."""
    from lab.analysis.baseline import set_baseline
    from lab.analysis.compare import CompareSettings

    console = _console()
    try:
        directory = set_baseline(list(run_dirs), root, CompareSettings(max_sample=max_sample, seed=seed))
    except RecordError as exc:
        _bad_input(console, str(exc))
    console.print(escape(f"baseline: {directory}"))


@baseline_command.command("show")
@click.argument("scenario")
@_baselines_option
def baseline_show(scenario: str, root: Path) -> None:
    """Print the stored baseline of SCENARIO."""
    from lab.analysis.baseline import BASELINE_FILE, baseline_dir

    console = _console()
    path = baseline_dir(root, scenario) / BASELINE_FILE
    if not path.exists():
        _bad_input(console, f"no baseline for scenario {scenario!r} in {root}")
    console.print_json(path.read_text(encoding="utf-8"))


@baseline_command.command("list")
@_baselines_option
def baseline_list(root: Path) -> None:
    """List the stored baselines."""
    from lab.analysis.baseline import list_baselines

    console = _console()
    table = Table("scenario", "runs", "set at", "directory")
    for item in list_baselines(root):
        runs = ", ".join(item.get("run_ids") or [str(item.get("run_id"))])
        cells = (item.get("scenario"), runs, item.get("set_at"), item["dir"])
        table.add_row(*(escape(str(cell)) for cell in cells))
    console.print(table)


@click.command("history")
@click.argument("root", type=click.Path(path_type=Path), default="reports")
@click.option("--scenario", help="Which scenario's runs (required when ROOT holds several).")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of the permutation test.")
@click.option("--permutations", default=199, show_default=True)
@click.option("--min-size", default=3, show_default=True, help="Fewest runs in a segment.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), help="Also write the result as JSON here."
)
@click.option(
    "--fail-on-regression", is_flag=True, help="Exit 1 when a metric's latest change made it worse."
)
def history_command(
    root: Path,
    scenario: str | None,
    alpha: float,
    permutations: int,
    min_size: int,
    seed: int,
    json_path: Path | None,
    fail_on_regression: bool,
) -> None:
    """Change points (E-Divisive) in each metric over the runs of one scenario under ROOT."""
    from lab.analysis.history import collect_runs, history, latest_regressions
    from lab.analysis.report import write_json

    console = _console()
    if min_size < 2 or permutations < 1 or not 0 < alpha < 1:
        _bad_input(console, "--min-size must be ≥ 2, --permutations ≥ 1, --alpha in (0, 1)")
    try:
        name, entries, notes = collect_runs(root, scenario)
    except RecordError as exc:
        _bad_input(console, str(exc))
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]")
    result = {
        "scenario": name,
        **history(entries, alpha=alpha, permutations=permutations, min_size=min_size, seed=seed),
    }
    table = Table(title=escape(f"{name}: {len(entries)} runs"), title_justify="left")
    for column in ("metric", "first run of new level", "date", "before", "after", "change", "p", "direction"):
        table.add_column(column)
    for key, metric in result["metrics"].items():
        for cp in metric["change_points"]:
            change = "—" if cp["change"] is None else f"{cp['change']:+.1%}"
            style = "bold red" if cp["direction"] == "worse" else "cyan"
            means = f"{cp['before_mean']:.4g}", f"{cp['after_mean']:.4g}"
            table.add_row(
                key, escape(cp["run_id"]), cp["date"], *means, change, f"{cp['p_value']:.3f}",
                f"[{style}]{cp['direction']}[/]",
            )  # fmt: skip
    console.print(table if table.row_count else escape(f"{name}: no change points in {len(entries)} runs"))
    if json_path is not None:
        write_json(json_path, result)
        console.print(escape(f"history: {json_path}"))
    regressions = latest_regressions(result)
    raise SystemExit(EXIT_VERDICT_FAILED if fail_on_regression and regressions else EXIT_OK)
