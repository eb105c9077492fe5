"""`lab up` starts a long-lived lab and prints its endpoints; `lab down` removes labs by label."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from click.core import ParameterSource

from lab.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_LAB_FAILED


def _progress(message: str) -> None:
    click.echo(f"lab: {message}", err=True)


def _print_endpoints(endpoints: Any) -> None:
    click.echo(f"run id        {endpoints.run_id}   (remove with: lab down --run-id {endpoints.run_id})")
    click.echo(f"gateway       {endpoints.gateway_rpc_url}")
    click.echo(f"gateway ws    {endpoints.gateway_ws_url}")
    click.echo(f"health        {endpoints.gateway_health_url}")
    if endpoints.gateway_events_url:
        click.echo(f"events        {endpoints.gateway_events_url}")
    click.echo(f"toxiproxy     {endpoints.toxiproxy_url}")
    for provider in endpoints.providers.values():
        proxies = ", ".join(f"{name} ({provider.proxy_urls[t]})" for t, name in provider.proxies.items())
        click.echo(f"provider {provider.id:<4} control {provider.control_url}   proxies {proxies}")


@click.command("up")
@click.option(
    "--providers",
    "provider_count",
    type=click.IntRange(1, 32),
    default=3,
    show_default=True,
    help="Number of mock providers (p1, p2, ...).",
)
@click.option(
    "--gateway",
    "gateway_spec",
    default="reference",
    show_default=True,
    metavar="SPEC",
    help="A shipped gateway profile (reference, lasso) or a GatewaySpec YAML/JSON file.",
)
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A TopologySpec YAML/JSON file (replaces --providers; --gateway still applies if given).",
)
@click.option("--run-id", default=None, help="Name the lab (default: a timestamp and random suffix).")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as one JSON object on stdout.")
@click.pass_context
def up_command(
    ctx: click.Context,
    provider_count: int,
    gateway_spec: str,
    topology_file: str | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    """Start a lab and leave it running; print its endpoints."""
    from lab.topology import Lab, LabError, SpecError, TopologySpec, load_gateway_spec, load_topology_spec

    try:
        if topology_file is not None:
            spec = load_topology_spec(topology_file)
            if ctx.get_parameter_source("gateway_spec") is not ParameterSource.DEFAULT:
                spec = spec.model_copy(update={"gateway": load_gateway_spec(gateway_spec)})
        else:
            spec = TopologySpec.with_providers(provider_count, gateway=load_gateway_spec(gateway_spec))
        lab = Lab(spec, run_id=run_id, detached=True, progress=_progress)
    except (SpecError, ValueError) as exc:
        click.echo(f"lab up: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        lab.start()
    except KeyboardInterrupt:
        click.echo("lab up: interrupted; everything started was removed", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # start() has already removed what it had started
        kind = "" if isinstance(exc, LabError) else f"{type(exc).__name__}: "
        click.echo(f"lab up: the lab failed to start: {kind}{exc}", err=True)
        sys.exit(EXIT_LAB_FAILED)
    endpoints = lab.detach()
    _progress(f"up in {lab.timings.get('gateway ready', 0):.1f}s")
    if as_json:
        click.echo(orjson.dumps(endpoints.model_dump(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_endpoints(endpoints)


@click.command("down")
@click.option("--run-id", default=None, help="Remove only this lab, whoever owns it.")
@click.option(
    "--all", "remove_all", is_flag=True, help="Also remove labs of processes still running (test sessions)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as one JSON object.")
def down_command(run_id: str | None, remove_all: bool, as_json: bool) -> None:
    """Remove the labs of `lab up` and whatever crashed runs left (containers, networks, volumes).

    Labs of processes still running on this host (a test session, a script) are left to them, unless
    `--all` or their `--run-id` is given.
    """
    import docker
    from docker.errors import DockerException

    from lab.cleanup import remove_lab_resources

    try:
        client = docker.from_env()
        report = remove_lab_resources(client, run_id=run_id, keep_live=run_id is None and not remove_all)
        client.close()
    except DockerException as exc:
        click.echo(f"lab down: Docker is not reachable: {exc}", err=True)
        sys.exit(EXIT_LAB_FAILED)
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
    else:
        click.echo(
            f"removed {len(report.containers)} container(s), {len(report.networks)} network(s), "
            f"{len(report.volumes)} volume(s)"
        )
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(EXIT_LAB_FAILED)
