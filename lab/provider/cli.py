"""`lab provider`: run one mock Ethereum JSON-RPC provider until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import orjson
import yaml
from pydantic import ValidationError

from lab import serving
from lab.provider.settings import DEFAULT_GENESIS_TIME, MIB, ProviderSettings
from lab.provider.specs import BEHAVIOR_TYPES, BehaviorError, BehaviorSpec, parse_behavior

log = logging.getLogger("lab.provider")

BEHAVIOR_HINT = "--behavior / LAB_PROVIDER_BEHAVIOR"
EXIT_LAB_FAILED = 3


def _env(name: str) -> str:
    return "LAB_PROVIDER_" + name.upper()


def read_behavior(value: str) -> BehaviorSpec:
    """A behaviour from JSON, `@FILE` (JSON or YAML) or a bare type name; BehaviorError/ValueError if bad."""
    # Inline values are already named by click's param hint; only a file needs naming here.
    text, source = value, ""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        source = str(path)
    stripped = text.strip()
    if stripped in BEHAVIOR_TYPES:
        data: Any = stripped
    else:
        try:
            data = yaml.safe_load(text) if source.endswith((".yml", ".yaml")) else orjson.loads(text)
        except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
            known = ", ".join(BEHAVIOR_TYPES)
            where = source or "value"
            raise ValueError(f"{where}: not valid JSON/YAML ({exc}); known types: {known}") from None
    try:
        return parse_behavior(data)
    except BehaviorError as exc:
        raise ValueError(f"{source}: {exc}" if source else str(exc)) from None


def _behavior_option(ctx: click.Context, param: click.Parameter, value: str | None) -> BehaviorSpec | None:
    if value is None:
        return None
    try:
        return read_behavior(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint=BEHAVIOR_HINT) from None


class StartupFailed(click.ClickException):
    exit_code = EXIT_LAB_FAILED


@click.command("provider")
@click.option("--id", "provider_id", required=True, envvar=_env("id"), help="Name in X-Lab-Provider.")
@click.option("--port", type=click.IntRange(0, 65535), default=8545, show_default=True, envvar=_env("port"))
@click.option("--host", default="0.0.0.0", show_default=True, envvar=_env("host"))
@click.option("--chain-id", type=click.IntRange(min=1), default=1, show_default=True, envvar=_env("chain_id"))
@click.option(
    "--block-time",
    type=click.FloatRange(0.01, 3600),
    default=1.0,
    show_default=True,
    envvar=_env("block_time"),
    help="Seconds between blocks.",
)
@click.option(
    "--genesis-time",
    type=float,
    default=DEFAULT_GENESIS_TIME,
    show_default=True,
    envvar=_env("genesis_time"),
    help="Unix time of block 0; providers with the same chain id, genesis and block time agree.",
)
@click.option(
    "--behavior",
    callback=_behavior_option,
    envvar=_env("behavior"),
    help="Behaviour at start-up: JSON, @FILE (JSON/YAML) or a type name. Default: healthy.",
)
@click.option("--seed", type=int, default=0, show_default=True, envvar=_env("seed"), help="Seeds behaviours.")
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=MIB,
    show_default=True,
    envvar=_env("max_body_bytes"),
)
@click.option(
    "--logs-max-range",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    envvar=_env("logs_max_range"),
    help="eth_getLogs block-range limit (-32005 above it).",
)
@click.option(
    "--logs-max-results",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    envvar=_env("logs_max_results"),
    help="eth_getLogs result limit (-32005 above it).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar=_env("log_level"),
)
def command(log_level: str, behavior: BehaviorSpec | None, **options: Any) -> None:
    """Run a mock Ethereum JSON-RPC provider with controllable misbehaviour.

    Every option can also be set with LAB_PROVIDER_<OPTION> (LAB_PROVIDER_ID, LAB_PROVIDER_BEHAVIOR, ...).
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ProviderSettings(**options, **({"behavior": behavior} if behavior else {}))
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    _run(settings)


def _run(settings: ProviderSettings) -> None:
    serving.run(_serve_until_signalled(settings))


async def _serve_until_signalled(settings: ProviderSettings) -> None:
    from lab.provider.launch import serve

    try:
        app_runner, _server, port = await serve(settings)
    except OSError as exc:
        raise StartupFailed(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    log.info(
        "provider %s listening on http://%s:%d (chain %d, block time %gs, behaviour %s)",
        settings.provider_id,
        settings.host,
        port,
        settings.chain_id,
        settings.block_time,
        settings.behavior.type,
    )
    try:
        await serving.until_stop_signal()
    finally:
        await app_runner.cleanup()
        log.info("provider %s stopped", settings.provider_id)
