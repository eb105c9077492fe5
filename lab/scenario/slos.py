"""The scenario's service-level objectives (`slos:`); `lab.analysis.slo` checks a run against them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SLOSpec(BaseModel):
    """Objectives; every field optional (None: not checked)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    success_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="minimum share of ok requests"
    )
    p95_ms: float | None = Field(default=None, gt=0.0, description="maximum p95 latency of ok requests")
    p99_ms: float | None = Field(default=None, gt=0.0, description="maximum p99 latency of ok requests")
    max_gap: int | None = Field(
        default=None, ge=0, description="maximum run of consecutive missing blocks for any subscriber"
    )
    max_duplicates: int | None = Field(
        default=None, ge=0, description="maximum duplicate heads for any subscriber"
    )
    recovery_s: float | None = Field(default=None, ge=0.0, description="maximum recovery time of every fault")
    breaker_opens: int | None = Field(
        default=None, ge=0, description="maximum breaker openings, all providers"
    )
