"""The scenario's service-level objectives (`slos:`) and regression tolerances (`regression:`);
`lab.analysis.slo` checks a run against the first, `lab.analysis.compare` uses the second."""

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
    # Correctness, from the checker (lab.checker): answers judged against the simulated chain
    max_stale_blocks: int | None = Field(
        default=None, ge=0, description="maximum blocks a head answer was behind the true head at send time"
    )
    stale_read_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="maximum share of checked answers that were stale"
    )
    wrong_answers: int | None = Field(
        default=None,
        ge=0,
        description="maximum wrong answers (contents not the canonical chain's, another chain's, orphaned)",
    )
    head_regressions: int | None = Field(
        default=None, ge=0, description="maximum times a client's or subscriber's head went backwards"
    )
    breaker_opens: int | None = Field(
        default=None, ge=0, description="maximum breaker openings, all providers"
    )
    # Soak checks, from the gateway's own process metrics (long runs; see lab.analysis.soak)
    memory_slope_mb_per_min: float | None = Field(
        default=None, description="maximum growth of the gateway's resident memory (Theil-Sen slope, MB/min)"
    )
    max_open_fds: int | None = Field(
        default=None, ge=0, description="maximum open file descriptors of the gateway"
    )
    open_fds_growth: float | None = Field(
        default=None, description="maximum growth of the gateway's median open fds, first to last third"
    )
    latency_drift_p95: float | None = Field(
        default=None, gt=0.0, description="maximum p95 latency of the last third over the first third (ratio)"
    )


class RegressionSpec(BaseModel):
    """Practical tolerances of `lab compare`: a change smaller than these is never a regression, however
    significant. The defaults hold when the scenario has no `regression:` section."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    success_rate: float = Field(
        default=0.005, ge=0.0, le=1.0, description="drop in success rate (0.005 = 0.5 pp)"
    )
    p50: float = Field(default=0.10, ge=0.0, description="relative increase of p50 latency (0.1 = +10 %)")
    p95: float = Field(default=0.10, ge=0.0, description="relative increase of p95 latency")
    p99: float = Field(default=0.20, ge=0.0, description="relative increase of p99 latency")
    recovery_s: float = Field(default=2.0, ge=0.0, description="increase of a fault's recovery time (s)")
    max_gap: int = Field(default=0, ge=0, description="increase of the largest subscription gap (blocks)")
