"""`lab images`: build or reuse the lab's images and print them."""

from __future__ import annotations

import dataclasses
import sys
import time

import click

from lab.images.builder import ensure_images, prune_images
from lab.images.model import IMAGE_NAMES, MODE_ENV, MODES, BadImageMode, ImageError


@click.command("images")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help=f"Base images to use (default: ${MODE_ENV} or auto).",
)
@click.option("--force", is_flag=True, help="Rebuild everything, even what is up to date.")
@click.option("--prune", is_flag=True, help="Afterwards, remove the lab's older images no container uses.")
@click.option("--json", "as_json", is_flag=True, help="Print the image set as one JSON object.")
def command(mode: str | None, force: bool, prune: bool, as_json: bool) -> None:
    """Build or reuse the lab's images (provider, gateway, locust, toxiproxy) and print them."""
    import orjson
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lab.cli import EXIT_BAD_INPUT, EXIT_LAB_FAILED

    errors = Console(stderr=True)
    started = time.monotonic()

    def report(line: str) -> None:
        errors.print(Text.assemble((f"{time.monotonic() - started:6.1f}s ", "dim"), line), soft_wrap=True)

    try:
        images = ensure_images(mode, progress=report, force=force)
        if prune:
            prune_images(images, progress=report)
    except BadImageMode as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except ImageError as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_LAB_FAILED)
    report(f"images: ready ({images.mode})")
    if as_json:
        click.echo(orjson.dumps(dataclasses.asdict(images)).decode())
        return
    table = Table("image", "reference", title=f"lab images ({images.mode})")
    for name in IMAGE_NAMES:
        table.add_row(name, getattr(images, name))
    Console().print(table)
