"""How long a lab takes to start, with its images already built: from the call to a gateway answering
eth_blockNumber through Toxiproxy (target: under 20 s), and how long teardown takes.

    .venv/bin/python bench/startup.py [--runs 3] [--providers 3] [--gateway reference]

Images are ensured once before timing (seconds when nothing changed since the last build; printed
separately).
Every figure printed comes from a run that was actually made; each lab is torn down before the next.
"""

from __future__ import annotations

import statistics
import sys
import time

import click

from lab.images import ensure_images
from lab.topology import Lab, TopologySpec, load_gateway_spec

TARGET_S = 20.0


@click.command()
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--providers", type=click.IntRange(1, 16), default=3, show_default=True)
@click.option("--gateway", default="reference", show_default=True)
def main(runs: int, providers: int, gateway: str) -> None:
    started = time.monotonic()
    images = ensure_images(progress=lambda line: click.echo(f"  images: {line}", err=True))
    click.echo(f"ensure_images: {time.monotonic() - started:.1f}s  mode={images.mode}")
    spec = TopologySpec.with_providers(providers, gateway=load_gateway_spec(gateway))

    ups, downs = [], []
    for run in range(1, runs + 1):
        lab = Lab(spec, images=images)
        t0 = time.monotonic()
        lab.start()
        up = time.monotonic() - t0
        block = lab.wait_gateway(timeout=5)  # answered through Toxiproxy already; one more for the record
        t1 = time.monotonic()
        report = lab.stop()
        down = time.monotonic() - t1
        ups.append(up)
        downs.append(down)
        steps = "  ".join(f"{k}={v:.1f}s" for k, v in lab.timings.items() if k != "images")
        click.echo(
            f"run {run}: up {up:.1f}s (block {block})  [{steps}]  "
            f"down {down:.1f}s ({len(report.containers)} containers, {len(report.networks)} network)"
        )

    click.echo(
        f"start-up, {providers} providers: median {statistics.median(ups):.1f}s  max {max(ups):.1f}s  "
        f"(target < {TARGET_S:.0f}s)   teardown median {statistics.median(downs):.1f}s"
    )
    sys.exit(0 if max(ups) < TARGET_S else 1)


if __name__ == "__main__":
    main()
