"""`lab scenario`: check scenario files, show their fault plans, export the JSON Schema."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.cli import EXIT_BAD_INPUT
from lab.durations import format_duration, parse_duration
from lab.scenario.loader import ScenarioError, load_scenario, with_overrides
from lab.scenario.schema import DEFAULT_PATH, schema_text
from lab.scenario.timeline import plan_timeline


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("scenario")
def command() -> None:
    """Scenario files: validate, plan, schema."""


@command.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check scenario files; print every problem with its file, field and line (exit 2 if any)."""
    failed = False
    for file in files:
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            failed = True
            continue
        plan = plan_timeline(scenario)
        click.echo(
            f"{file}: ok ({scenario.name}: {len(scenario.topology.providers)} providers, "
            f"{format_duration(scenario.load.duration)}, {len(plan.faults)} planned faults)"
        )
    if failed:
        sys.exit(EXIT_BAD_INPUT)


@command.command("plan")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--duration", callback=_duration, help="Plan for a run of this length (e.g. 5m).")
@click.option("--seed", type=int, help="Override the scenario's seed.")
def plan_command(file: Path, duration: float | None, seed: int | None) -> None:
    """Print the fault plan: every fault with its offsets and target (random targets resolved)."""
    try:
        scenario = with_overrides(load_scenario(file), str(file), duration=duration, seed=seed)
    except ScenarioError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_INPUT)
    plan = plan_timeline(scenario)
    click.echo(f"{scenario.name}: {format_duration(plan.duration)}, seed {scenario.seed}")
    for line in plan.describe():
        click.echo(line)


@command.command("schema")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help=f"Write here (e.g. {DEFAULT_PATH})."
)
def schema_command(out: Path | None) -> None:
    """Print (or write) the scenario JSON Schema."""
    text = schema_text()
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"--out {out}: cannot write: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        click.echo(f"wrote {out}")
