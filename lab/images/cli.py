"""`lab images`: build or reuse the lab's images and print them."""

from __future__ import annotations

import dataclasses
import sys
import time

import click

from lab.images.builder import ensure_gateway_image, ensure_images, prune_images
from lab.images.model import GATEWAY_IMAGES, IMAGE_NAMES, MODE_ENV, MODES, BadImageMode, ImageError


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
@click.option(
    "--gateway",
    "gateways",
    multiple=True,
    type=click.Choice(GATEWAY_IMAGES),
    help="Also build this gateway of the lab's Dockerfiles (otherwise built when an adapter first needs it).",
)
def command(mode: str | None, force: bool, prune: bool, as_json: bool, gateways: tuple[str, ...]) -> None:
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
        gateway_refs = {
            name: ensure_gateway_image(name, mode, progress=report, force=force) for name in gateways
        }
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
        click.echo(orjson.dumps({**dataclasses.asdict(images), **gateway_refs}).decode())
        return
    table = Table("image", "reference", title=f"lab images ({images.mode})")
    for name in IMAGE_NAMES:
        table.add_row(name, getattr(images, name))
    for name, ref in gateway_refs.items():
        table.add_row(name, ref)
    Console().print(table)
