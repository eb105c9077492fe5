"""The traffic's settings, read from the environment so that the locustfiles work from `lab run`, from
the Locust CLI and in the compose lab's Locust container alike.

    LAB_RUN_DIR          where to record (the run directory); unset: record nothing
    LAB_LOAD             the scenario's whole `load` section as JSON (what `lab run` passes)
    LAB_LOAD_METHODS     a method mix, e.g. "eth_blockNumber=3,eth_call=2" (overrides LAB_LOAD's)
    LAB_LOAD_MODEL       open (the default) or closed
    LAB_LOAD_RATE, LAB_LOAD_MAX_IN_FLIGHT, LAB_LOAD_ARRIVALS   the open model's rate, cap, arrivals
    LAB_LOAD_RATE_PER_USER, LAB_LOAD_TIMEOUT, LAB_LOAD_BATCH_SHARE, LAB_LOAD_BATCH_SIZE,
    LAB_LOAD_STRATEGY, LAB_LOAD_NEW_HEADS, LAB_LOAD_LOGS   single fields of the load section
    LAB_CHAIN            the chain's name in the gateway's routes (default ethereum)
    LAB_RPC_PATH         the HTTP path to POST to (default /rpc[/<strategy>]/<chain>)
    LAB_WS_URL           the WebSocket URL (default: the host's /ws/rpc/<chain>)
    LAB_INCLUDE_META     ask for the gateway's routing headers (default 1)
    LAB_SEED             seeds each user's random choices (default 0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError

from lab.durations import parse_duration
from lab.scenario.models import LoadSpec


class SettingsError(ValueError):
    """An environment variable the traffic reads is malformed; the message names it."""


@dataclass(frozen=True)
class LoadSettings:
    load: LoadSpec
    run_dir: Path | None
    chain: str
    rpc_path: str
    ws_url: str | None
    include_meta: bool
    seed: int
    from_scenario: bool = False  # LAB_LOAD was given: the load's shape and duration drive the run

    def rpc_url_path(self) -> str:
        """The path to POST JSON-RPC to, with the metadata query when asked for."""
        if not self.include_meta:
            return self.rpc_path
        return self.rpc_path + ("&" if "?" in self.rpc_path else "?") + "include_meta=headers"

    def ws_url_for(self, host: str | None) -> str:
        """The WebSocket URL: LAB_WS_URL, or the HTTP host's `/ws/rpc/<chain>`."""
        if self.ws_url:
            return self.ws_url
        if not host:
            raise SettingsError("no WebSocket URL: set LAB_WS_URL or give Locust a host (-H)")
        parts = urlsplit(host)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/ws/rpc/{self.chain}"


_FIELDS: dict[str, tuple[tuple[str, ...], Any]] = {
    "LAB_LOAD_MODEL": (("model",), str),
    "LAB_LOAD_RATE": (("rate",), lambda v: None if v.lower() in ("", "none") else float(v)),
    "LAB_LOAD_MAX_IN_FLIGHT": (("max_in_flight",), int),
    "LAB_LOAD_ARRIVALS": (("arrivals",), str),
    "LAB_LOAD_RATE_PER_USER": (
        ("rate_per_user",),
        lambda v: None if v.lower() in ("", "0", "none") else float(v),
    ),
    "LAB_LOAD_TIMEOUT": (("timeout",), parse_duration),
    "LAB_LOAD_BATCH_SHARE": (("batch", "share"), float),
    "LAB_LOAD_BATCH_SIZE": (("batch", "size"), int),
    "LAB_LOAD_STRATEGY": (("strategy",), lambda v: v or None),
    "LAB_LOAD_NEW_HEADS": (("subscribers", "new_heads"), int),
    "LAB_LOAD_LOGS": (("subscribers", "logs"), int),
}


def _methods(value: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, weight = item.partition("=")
        mix[name.strip()] = float(weight) if weight else 1.0
    return mix


def settings_from_env(env: Mapping[str, str] = os.environ) -> LoadSettings:
    data: dict[str, Any] = {}
    if env.get("LAB_LOAD"):
        try:
            data = orjson.loads(env["LAB_LOAD"])
        except orjson.JSONDecodeError as exc:
            raise SettingsError(f"LAB_LOAD: not JSON: {exc}") from None
    overrides = {name: spec for name, spec in _FIELDS.items() if env.get(name) is not None}
    for name, (path, convert) in overrides.items():
        try:
            value = convert(env[name])
        except ValueError as exc:
            raise SettingsError(f"{name}={env[name]!r}: {exc}") from None
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    if env.get("LAB_LOAD_METHODS"):
        try:
            data["methods"] = _methods(env["LAB_LOAD_METHODS"])
        except ValueError:
            raise SettingsError(
                f"LAB_LOAD_METHODS={env['LAB_LOAD_METHODS']!r}: expected e.g. 'eth_blockNumber=3,eth_call=1'"
            ) from None
    try:
        load = LoadSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"load settings (LAB_LOAD / LAB_LOAD_*): {problems}") from None
    chain = env.get("LAB_CHAIN", "ethereum")
    default_path = f"/rpc/{load.strategy}/{chain}" if load.strategy else f"/rpc/{chain}"
    try:
        seed = int(env.get("LAB_SEED", "0"))
    except ValueError:
        raise SettingsError(f"LAB_SEED={env['LAB_SEED']!r}: expected an integer") from None
    return LoadSettings(
        load=load,
        run_dir=Path(env["LAB_RUN_DIR"]) if env.get("LAB_RUN_DIR") else None,
        chain=chain,
        rpc_path=env.get("LAB_RPC_PATH") or default_path,
        ws_url=env.get("LAB_WS_URL") or None,
        include_meta=env.get("LAB_INCLUDE_META", "1").lower() not in ("0", "false", "no"),
        seed=seed,
        from_scenario=bool(env.get("LAB_LOAD")),
    )
