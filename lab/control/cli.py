"""`lab control`: the compose lab's control service, until SIGTERM/SIGINT (lab.control.service)."""

from __future__ import annotations

import logging
import socket

import click

from lab import serving
from lab.control.service import ControlService, controlled, make_app, own_project

log = logging.getLogger("lab.control")

EXIT_LAB_FAILED = 3


class StartupFailed(click.ClickException):
    exit_code = EXIT_LAB_FAILED


@click.command("control")
@click.option(
    "--service",
    "services",
    multiple=True,
    required=True,
    envvar="LAB_CONTROL_SERVICES",
    help="A compose service whose container it may act on (repeat, or comma-separated).",
)
@click.option(
    "--project",
    envvar="LAB_CONTROL_PROJECT",
    help="The compose project (default: its own container's, found by its hostname).",
)
@click.option("--host", default="0.0.0.0", show_default=True, envvar="LAB_CONTROL_HOST")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, envvar="LAB_CONTROL_PORT"
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def command(services: tuple[str, ...], project: str | None, host: str, port: int, log_level: str) -> None:
    """Serve kill/stop/start/pause/unpause/restart, network disconnect/connect and memory updates on the
    containers of the given compose services of this compose project only (needs the Docker socket)."""
    import docker
    from docker.errors import DockerException

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        client = docker.from_env()
        project = project or own_project(client, socket.gethostname())
    except DockerException as exc:
        raise StartupFailed(f"cannot reach Docker (is /var/run/docker.sock mounted?): {exc}") from None
    except LookupError as exc:
        raise StartupFailed(f"{exc} (or pass --project)") from None
    service = ControlService(client, project, controlled(services))
    if not service.services:
        raise click.BadParameter("no service named", param_hint="--service")
    serving.run(_serve_until_signalled(service, host, port))


async def _serve_until_signalled(service: ControlService, host: str, port: int) -> None:
    try:
        runner, port = await serving.listen(make_app(service), host, port)
    except OSError as exc:
        raise StartupFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info(
        "control service of compose project %s on http://%s:%d: services %s",
        service.project,
        host,
        port,
        ", ".join(sorted(service.services)),
    )
    try:
        await serving.until_stop_signal()
    finally:
        await runner.cleanup()
