"""The mock Ethereum JSON-RPC provider (`lab provider`): a simulated chain behind controllable
misbehaviour. See lab/provider/README.md for the CLI, the behaviour catalogue and the control API.

Public API: `start_provider_process` / `running_provider` to start one (`FakeClock` to drive time),
`ProviderEndpoint` for where it listens, `ProviderSettings`, and `parse_behavior` / `BehaviorError`
to validate behaviour specs. They load lazily, so `lab.provider.chain` or `lab.provider.specs` can be
imported (by the load generator, the scenario loader) without the aiohttp server.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FakeClock": "lab.provider.launch",
    "ProviderEndpoint": "lab.provider.launch",
    "running_provider": "lab.provider.launch",
    "start_provider_process": "lab.provider.launch",
    "ProviderSettings": "lab.provider.settings",
    "BehaviorError": "lab.provider.specs",
    "parse_behavior": "lab.provider.specs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lab.provider' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
