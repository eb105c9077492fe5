"""`lab gateway`: run the reference gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from lab import serving
from lab.gateway.config import ConfigError, GatewayConfig, load

log = logging.getLogger("lab.gateway")

EXIT_BAD_INPUT = 2
EXIT_LAB_FAILED = 3


class BadConfig(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class StartupFailed(click.ClickException):
    exit_code = EXIT_LAB_FAILED


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    envvar="LAB_GATEWAY_CONFIG",
    help="A Lasso profile file, or a directory of them.",
)
@click.option("--host", default="0.0.0.0", show_default=True, envvar="LAB_GATEWAY_HOST")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=4000, show_default=True, envvar="LAB_GATEWAY_PORT"
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="LAB_GATEWAY_LOG_LEVEL",
)
def command(config_path: Path, host: str, port: int, log_level: str) -> None:
    """Run the reference JSON-RPC gateway (Lasso RPC's API) on HOST:PORT."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load(config_path)
    except ConfigError as exc:
        raise BadConfig(str(exc)) from None
    serving.run(_serve_until_signalled(config, host, port))


async def _serve_until_signalled(config: GatewayConfig, host: str, port: int) -> None:
    from lab.gateway.app import create_app

    try:
        app_runner, port = await serving.listen(
            create_app(config), host, port, backlog=2048, shutdown_timeout=2.0
        )
    except OSError as exc:
        raise StartupFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    chains = sorted(f"{p.slug}/{name}" for p in config.profiles.values() for name in p.chains)
    log.info("gateway listening on http://%s:%d (profiles/chains: %s)", host, port, ", ".join(chains))
    try:
        await serving.until_stop_signal()
    finally:
        await app_runner.cleanup()
        log.info("gateway stopped")
