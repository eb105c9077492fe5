"""A provider's start-up settings (the `lab provider` options), validated."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from lab.provider.specs import Behavior, Healthy

DEFAULT_GENESIS_TIME = 1_700_000_000
MIB = 1024 * 1024


class ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider_id: Annotated[str, Field(min_length=1, max_length=200)]
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8545
    chain_id: PositiveInt = 1
    block_time: Annotated[float, Field(ge=0.01, le=3600)] = 1.0
    genesis_time: float = DEFAULT_GENESIS_TIME
    behavior: Behavior = Healthy()
    seed: int = 0
    max_body_bytes: Annotated[int, Field(ge=1024)] = MIB
    logs_max_range: PositiveInt = 10_000
    logs_max_results: PositiveInt = 10_000
    ws_heartbeat_s: Annotated[float, Field(gt=0)] | None = 30.0
    ws_send_queue: Annotated[int, Field(ge=16)] = 4096  # queued messages before a slow client is dropped
