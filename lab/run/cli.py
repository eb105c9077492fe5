"""`lab run SCENARIO`: the command line of lab.run.orchestrate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.cli import (
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_LAB_FAILED,
    EXIT_OK,
    EXIT_VERDICT_FAILED,
)
from lab.run.manifest import DEFAULT_OUT
from lab.scenario import parse_duration
from lab.scenario.models import MAX_RUN_S, MAX_USERS

MAX_WORKERS = 64
MAX_REPEATS = 100


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be positive")
    if seconds > MAX_RUN_S:
        raise click.BadParameter(f"at most {MAX_RUN_S / 86400:g} days")
    return seconds


@click.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--duration", callback=_duration, help="Run this long instead (e.g. 20s, 5m); faults keep their offsets."
)
@click.option(
    "--users", type=click.IntRange(min=1, max=MAX_USERS), help="HTTP users instead of the scenario's."
)
@click.option(
    "--gateway", "gateway", metavar="NAME|FILE", help="A gateway adapter (`lab gateways`) or adapter file."
)
@click.option(
    "--gateway-var",
    "gateway_vars",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a variable of the gateway adapter (repeatable), e.g. inter=500ms.",
)
@click.option(
    "--gateway-url",
    metavar="URL",
    help="Drive a gateway you run (its JSON-RPC URL) against a `lab up --expose-providers` lab (--lab).",
)
@click.option(
    "--lab", "lab_id", metavar="RUN_ID", help="With --gateway-url: the `lab up --expose-providers` lab."
)
@click.option(
    "--seed", type=int, help="Seed instead of the scenario's (random targets, probabilities, behaviours)."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default="reports/", help="Where the run directory goes.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=1, show_default=True,
              help="Locust processes generating load (Locust's --processes).")  # fmt: skip
@click.option("--no-report", is_flag=True, help="Skip the analysis at the end.")
@click.option("--repeat", type=click.IntRange(min=1, max=MAX_REPEATS), default=1, show_default=True,
              help="Run it this many times, one run directory each (for `lab compare`: the noise "
              "between runs).")  # fmt: skip
def run_command(
    scenario: Path,
    duration: float | None,
    users: int | None,
    gateway: str | None,
    gateway_vars: tuple[str, ...],
    gateway_url: str | None,
    lab_id: str | None,
    seed: int | None,
    out: Path,
    workers: int,
    no_report: bool,
    repeat: int,
) -> None:
    """Run SCENARIO against a fresh lab and record everything under reports/<run-id>/.

    Exit codes: 0 every SLO held, 1 an SLO missed, 2 bad input, 3 the lab failed, 4 INCOMPLETE (no
    verdict: records lost, the load cut short, a fault not applied), 130 interrupted (INCOMPLETE too);
    with --repeat, the worst of the runs (bad input and an interrupt stop the repeats).
    """
    from rich.console import Console

    from lab.run.orchestrate import RunOptions, execute
    from lab.topology.adapters import SpecError, parse_variable

    try:
        variables = dict(parse_variable(v) for v in gateway_vars)
    except SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--gateway-var") from None
    options = RunOptions(
        scenario, duration, users, gateway, seed, out, workers, report=not no_report, gateway_vars=variables,
        gateway_url=gateway_url, lab_id=lab_id,
    )  # fmt: skip
    console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines
    codes: list[int] = []
    for number in range(1, repeat + 1):
        if repeat > 1:
            console.print(f"[bold]run {number} of {repeat}[/]", highlight=False)
        codes.append(execute(options, console))
        if codes[-1] in (EXIT_BAD_INPUT, EXIT_INTERRUPTED):
            break
    sys.exit(worst(codes))


def worst(codes: list[int]) -> int:
    """The exit code of several runs: interrupted, bad input, lab failed, incomplete, verdict failed, ok."""
    order = (EXIT_INTERRUPTED, EXIT_BAD_INPUT, EXIT_LAB_FAILED, EXIT_INCOMPLETE, EXIT_VERDICT_FAILED, EXIT_OK)
    return next((code for code in order if code in codes), max(codes))
