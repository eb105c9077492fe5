"""The `lab` command line. Each subcommand lives beside the code it drives and is imported only when
used, so `lab provider` inside a slim container never imports Docker, pandas or Locust.

Exit codes (shared by every subcommand):
  0  success (for `run`, `report`, `compare`: every SLO held / no regression)
  1  the verdict failed (an SLO missed, a regression found)
  2  bad input (a malformed scenario, config or argument), reported before anything started
  3  the lab itself failed (images, containers, a gateway that never came up)
  4  INCOMPLETE: no verdict on partial evidence (the run was cut short, killed or interrupted, lost
     records, or could not apply a fault); the reason is printed and heads every report
  130 interrupted (Ctrl-C); everything started was torn down and what was recorded is kept
"""

from __future__ import annotations

import importlib
from typing import Any

import click

EXIT_OK = 0
EXIT_VERDICT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LAB_FAILED = 3
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130

# name -> "module:attribute" of a click command
_COMMANDS: dict[str, str] = {
    "provider": "lab.provider.cli:command",
    "gateway": "lab.gateway.cli:command",
    "control": "lab.control.cli:command",
    "images": "lab.images.cli:command",
    "up": "lab.topology.cli:up_command",
    "down": "lab.topology.cli:down_command",
    "gateways": "lab.topology.cli:gateways_command",
    "ps": "lab.topology.cli:ps_command",
    "run": "lab.run.cli:run_command",
    "scenario": "lab.scenario.cli:command",
    "report": "lab.analysis.cli:report_command",
    "compare": "lab.analysis.cli:compare_command",
    "baseline": "lab.analysis.cli:baseline_command",
    "history": "lab.analysis.cli:history_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # `lab --help` imports every command; in a slim image some need extras that are not installed.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            try:
                command = self.get_command(ctx, name)
            except click.ClickException:
                rows.append((name, "(not installed here: needs the package's extras)"))
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose optional dependencies are not installed in this environment.
            raise click.ClickException(
                f"'lab {cmd_name}' needs {exc.name!r}, which is not installed here "
                "(install the package with the extras: pip install 'lab[all]')"
            ) from exc
        command: Any = getattr(module, attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lab")
def main() -> None:
    """A containerized fault-injection lab for JSON-RPC gateways."""


if __name__ == "__main__":
    main()
