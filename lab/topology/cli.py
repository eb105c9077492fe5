"""`lab up` starts a long-lived lab and prints its endpoints; `lab ps` lists the labs on this Docker
host; `lab down` removes what dead runs left, or one lab by its id, or (`--all`) every lab."""

from __future__ import annotations

import sys
import time
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


def _print_exposed(lab: Any, host_config: str, config_out: str | None) -> None:
    """The providers' Toxiproxy listeners on 127.0.0.1 as JSON, and the rendered configuration's file."""
    from pathlib import Path

    gateway = lab.spec.gateway
    path = Path(config_out or f"{gateway.name}-{lab.run_id}.conf").resolve()
    path.write_text(host_config)
    endpoints = lab.endpoints
    exposed = {
        "run_id": lab.run_id,
        "chain": lab.spec.chain,
        "chain_id": lab.spec.chain_id,
        "adapter": gateway.name,
        "config_file": str(path),
        "toxiproxy_url": endpoints.toxiproxy_url,
        "providers": {
            pid: {"http": p.proxy_urls["http"], "ws": p.proxy_urls["ws"], "control": p.control_url}
            for pid, p in endpoints.providers.items()
        },
        "next": f"start your gateway with {path}, then: lab run SCENARIO --lab {lab.run_id} "
        "--gateway-url http://127.0.0.1:PORT/PATH",
        "remove": f"lab down --run-id {lab.run_id}",
    }
    click.echo(orjson.dumps(exposed, option=orjson.OPT_INDENT_2).decode())


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
    help="A shipped gateway adapter (see `lab gateways`) or an adapter YAML file.",
)
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A TopologySpec YAML/JSON file (replaces --providers; --gateway still applies if given).",
)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Take the providers (and gateway) from a scenario file, e.g. for `lab run --gateway-url` later.",
)
@click.option(
    "--gateway-var", "gateway_vars", multiple=True, metavar="NAME=VALUE", help="Set an adapter variable."
)
@click.option(
    "--expose-providers",
    is_flag=True,
    help="Start no gateway: print the providers' Toxiproxy listeners on 127.0.0.1 as JSON and render "
    "the adapter's configuration for a gateway on the host (--config-out).",
)
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --expose-providers: where the rendered configuration goes (./<adapter>-<run id>.conf).",
)
@click.option("--run-id", default=None, help="Name the lab (default: a timestamp and random suffix).")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as one JSON object on stdout.")
@click.pass_context
def up_command(
    ctx: click.Context,
    provider_count: int,
    gateway_spec: str,
    topology_file: str | None,
    scenario_file: str | None,
    gateway_vars: tuple[str, ...],
    expose_providers: bool,
    config_out: str | None,
    run_id: str | None,
    as_json: bool,
) -> None:
    """Start a lab and leave it running; print its endpoints."""
    from lab.topology import Lab, LabError, SpecError, TopologySpec, load_gateway_spec, load_topology_spec
    from lab.topology.adapters import parse_variable

    gateway_given = ctx.get_parameter_source("gateway_spec") is not ParameterSource.DEFAULT
    try:
        variables = dict(parse_variable(v) for v in gateway_vars)
        if scenario_file is not None:
            from lab.scenario import ScenarioError, load_scenario
            from lab.scenario.topology import ScenarioTopologyError, to_topology_spec

            try:
                scenario = load_scenario(scenario_file)
                spec = to_topology_spec(
                    scenario, gateway_spec if gateway_given else None, scenario_file, variables
                )
            except (ScenarioError, ScenarioTopologyError) as exc:
                raise SpecError(str(exc)) from None
        elif topology_file is not None:
            spec = load_topology_spec(topology_file)
            if gateway_given or variables:
                spec = spec.model_copy(update={"gateway": load_gateway_spec(gateway_spec, variables)})
        else:
            gateway = load_gateway_spec(gateway_spec, variables)
            spec = TopologySpec.with_providers(provider_count, gateway=gateway)
        lab = Lab(spec, run_id=run_id, detached=True, progress=_progress, expose_providers=expose_providers)
        host_config = lab.host_gateway_config() if expose_providers else None
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
    if expose_providers:
        assert host_config is not None
        _print_exposed(lab, host_config, config_out)
        return
    if as_json:
        click.echo(orjson.dumps(endpoints.model_dump(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_endpoints(endpoints)


@click.command("gateways")
@click.argument("adapter", required=False, metavar="[NAME|FILE]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def gateways_command(adapter: str | None, as_json: bool) -> None:
    """List the shipped gateway adapters; with NAME|FILE, check one and show its variables."""
    from lab.topology.adapters import UNTESTED_NOTE, SpecError, load_adapter, shipped_adapters

    names = [adapter] if adapter else list(shipped_adapters())
    try:
        specs = [load_adapter(name) for name in names]
    except SpecError as exc:
        click.echo(f"lab gateways: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        rows = [
            {
                "name": s.name,
                "file": s.source,
                "description": s.description,
                "tested": s.tested,
                "try": s.try_command,
                "image": s.describe_image(),
                "admin_api": s.admin_api,
                "variables": {k: v.model_dump() for k, v in s.variables.items()},
            }
            for s in specs
        ]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for spec in specs:
        status = "tested here" if spec.tested else UNTESTED_NOTE
        click.echo(f"{spec.name:<11} {spec.description} [{status}]")
        click.echo(f"{'':<11} image {spec.describe_image()}; file {spec.source}")
        if spec.try_command:
            click.echo(f"{'':<11} try: {spec.try_command}")
        if adapter:
            for name, variable in spec.variables.items():
                click.echo(f"{'':<11} var {name} = {variable.default!r}  {variable.description}")


def _docker_client(command: str) -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        click.echo(f"lab {command}: Docker is not reachable: {exc}", err=True)
        sys.exit(EXIT_LAB_FAILED)
    return client


@click.command("down")
@click.option("--run-id", default=None, help="Remove this lab, whoever started it (a `lab up` lab).")
@click.option(
    "--all", "remove_all", is_flag=True, help="Remove every lab, also those of live processes and `lab up`."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as one JSON object.")
def down_command(run_id: str | None, remove_all: bool, as_json: bool) -> None:
    """Remove what dead runs left (containers, networks, volumes); or one lab by --run-id, or --all.

    Without arguments only labs whose starting process is gone from this host are removed: a `lab up`
    lab, the labs of processes still running (a test session, a `lab run`, a script) and those of other
    hosts are left (see `lab ps`).
    """
    from docker.errors import DockerException

    from lab.topology.cleanup import list_labs, remove_lab_resources

    client = _docker_client("down")
    try:
        report = remove_lab_resources(client, run_id=run_id, only_orphans=run_id is None and not remove_all)
        kept = [] if run_id is not None or remove_all else list_labs(client)
    except DockerException as exc:
        click.echo(f"lab down: Docker failed: {exc}", err=True)
        sys.exit(EXIT_LAB_FAILED)
    finally:
        client.close()
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
    else:
        click.echo(
            f"removed {len(report.containers)} container(s), {len(report.networks)} network(s), "
            f"{len(report.volumes)} volume(s)"
        )
        if kept:
            ids = ", ".join(f"{lab['run_id']} ({lab['owner']})" for lab in kept)
            click.echo(f"left {len(kept)} lab(s) in use: {ids}; remove one with: lab down --run-id ID")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(EXIT_LAB_FAILED)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


_OWNER_TEXT = {
    "running": "running (pid {pid})",
    "detached": "detached (lab up)",
    "orphan": "gone (pid {pid}): lab down removes it",
    "elsewhere": "on host {host}",
    "unknown": "unknown",
}


@click.command("ps")
@click.option("--json", "as_json", is_flag=True, help="Print the labs as one JSON array.")
def ps_command(as_json: bool) -> None:
    """List the labs on this Docker host: run id, what started it and whether that still runs, age,
    and the ports published on 127.0.0.1."""
    from docker.errors import DockerException

    from lab.topology.cleanup import list_labs

    client = _docker_client("ps")
    try:
        labs = list_labs(client, now=time.time())
    except DockerException as exc:
        click.echo(f"lab ps: Docker failed: {exc}", err=True)
        sys.exit(EXIT_LAB_FAILED)
    finally:
        client.close()
    if as_json:
        click.echo(orjson.dumps(labs, option=orjson.OPT_INDENT_2).decode())
        return
    if not labs:
        click.echo("no labs on this Docker host")
        return
    width = max(len("RUN ID"), *(len(lab["run_id"]) for lab in labs))
    click.echo(f"{'RUN ID':<{width}}  {'STARTED BY':<14} {'AGE':>5}  OWNER")
    for lab in labs:
        owner = _OWNER_TEXT[lab["owner"]].format(pid=lab["owner_pid"], host=lab["owner_host"])
        started_by = lab["started_by"] or "?"
        click.echo(f"{lab['run_id']:<{width}}  {started_by:<14} {_age(lab['age_s']):>5}  {owner}")
        running = sum(c["state"] == "running" for c in lab["containers"])
        networks = ", ".join(lab["networks"]) or "-"
        click.echo(f"  {running}/{len(lab['containers'])} containers running; network {networks}")
        for port in lab["ports"]:
            name = f" ({port['name']})" if port["name"] else ""
            click.echo(f"  {port['host']} -> {port['service']}:{port['port']}{name}")
