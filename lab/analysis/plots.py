"""The report's figures as base64 PNG (matplotlib, no pyplot, no display, no network).

Plots are drawn from binned series and a bounded sample, never from every request. Every time axis
shades each fault window and labels it, as Jepsen's plots do.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # drawn through its own Agg canvas: no pyplot, no display

from lab.analysis.summary import Analysis

_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#800000")
_ERROR_COLORS = ("#e6194b", "#f58231", "#911eb4", "#9a6324", "#800000", "#f032e6", "#ffd8b1", "#808000")
_MAX_RECOVERY_PANELS = 12


def figure_png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def all_plots(analysis: Analysis) -> dict[str, str]:
    """name -> base64 PNG; plots without data are left out."""
    plots = {}
    if analysis.summary["requests"]:
        plots["latency"] = figure_png(latency_plot(analysis))
        plots["throughput"] = figure_png(throughput_plot(analysis))
        if analysis.timeline.provider_counts.keys() - {"(none)"}:
            plots["providers"] = figure_png(provider_plot(analysis))
        if analysis.summary["faults"]:
            plots["recovery"] = figure_png(recovery_plot(analysis))
    if analysis.summary["subscription"]["heads"]:
        plots["heads"] = figure_png(heads_plot(analysis))
    if has_soak(analysis):
        plots["soak"] = figure_png(soak_plot(analysis))
    return plots


SOAK_SLOS = ("memory_slope_mb_per_min", "max_open_fds", "open_fds_growth", "latency_drift_p95")


def has_soak(analysis: Analysis) -> bool:
    """Soak figures are worth showing: the gateway's process metrics were recorded or a soak SLO is set."""
    soak = analysis.soak
    return not (soak.memory.empty and soak.fds.empty) or any(k in analysis.summary["slos"] for k in SOAK_SLOS)


def soak_plot(analysis: Analysis) -> Figure:
    """The gateway's resident memory with its Theil-Sen fit, its open fds, and p95 latency per bin with
    the first and last thirds' p95: each panel with the fault windows shaded."""
    summary, soak, tl = analysis.summary, analysis.soak, analysis.timeline
    figures = summary["soak"]
    fig = Figure(figsize=(11, 8.4), layout="constrained")
    ax_mem, ax_fds, ax_lat = fig.subplots(3, 1, sharex=True)
    end = max(summary["duration_s"], float(tl.edges[-1]))
    memory = figures["memory"]
    if memory is not None:
        t = soak.memory["t"].to_numpy()
        ax_mem.plot(
            t, soak.memory["value"].to_numpy() / 1e6, ".-", color="#4363d8", ms=3, lw=0.8, label="RSS"
        )
        fit = memory["intercept_mb"] + memory["slope_mb_per_min"] * t / 60.0
        slope = f"Theil-Sen {memory['slope_mb_per_min']:+.3g} MB/min"
        ax_mem.plot(t, fit, color="#e6194b", lw=1.2, label=slope)
        _legend_below(ax_mem, ncol=3)
    _soak_axes(ax_mem, summary, "resident memory (MB)", "Gateway memory", memory is None)
    fds = figures["open_fds"]
    if fds is not None:
        ax_fds.plot(soak.fds["t"], soak.fds["value"], ".-", color="#3cb44b", ms=3, lw=0.8, label="open fds")
        if "max_open_fds" in summary["slos"]:
            ax_fds.axhline(summary["slos"]["max_open_fds"], color="#e6194b", ls="--", lw=0.9, label="SLO max")
        _legend_below(ax_fds, ncol=3)
    _soak_axes(ax_fds, summary, "open fds", "Gateway open file descriptors", fds is None)
    drift = figures["latency_drift"]
    ax_lat.stairs(
        tl.bands["p95"], tl.edges, baseline=None, color="#f58231", lw=1.0, label=f"p95 per {tl.width:g} s"
    )
    if drift is not None:
        for (start, stop), value, name in (
            (drift["first_third"], drift["first_third_p95_ms"], "first third"),
            (drift["last_third"], drift["last_third_p95_ms"], "last third"),
        ):
            ax_lat.hlines(
                value, start, stop, color="#000000", lw=2, label=f"p95 of the {name}: {value:.0f} ms"
            )
        _legend_below(ax_lat, ncol=3)
    _soak_axes(ax_lat, summary, "latency (ms)", "Latency drift (ok requests)", drift is None)
    ax_lat.set(xlabel="seconds since run start", xlim=(0, end))
    return fig


def _soak_axes(ax: Axes, summary: dict[str, Any], ylabel: str, title: str, missing: bool) -> None:
    if missing:
        ax.text(0.5, 0.5, "not measurable", transform=ax.transAxes, ha="center", va="center", color="#e6194b")
    _time_axes(ax, summary)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)


def shade_faults(
    ax: Axes,
    faults: Sequence[dict[str, Any]],
    offset: float = 0.0,
    names: Sequence[str] | None = None,
    with_target: bool = True,
) -> None:
    """Shade each fault window in its name's colour, its name (→ target) at the top of the plot. `names`:
    every fault name of the run (default: those of `faults`), so colours agree across plots."""
    palette = sorted({f["name"] for f in faults} if names is None else set(names))
    for index, fault in enumerate(faults):
        color = _COLORS[palette.index(fault["name"]) % len(_COLORS)]
        start, end = fault["start_s"] - offset, fault["end_s"] - offset
        ax.axvspan(start, end, color=color, alpha=0.13, lw=0, zorder=3)  # above stacked areas, see-through
        ax.axvline(start, color=color, lw=0.8, alpha=0.7, zorder=3)
        y = 0.98 - 0.07 * (index % 4)  # staggered so overlapping faults stay readable
        target = f" → {fault['target']}" if with_target and fault.get("target") else ""
        label = f" {fault['name']}{target}" + ("" if fault["ended"] else " (no end)")
        ax.text(start, y, label, transform=ax.get_xaxis_transform(), color=color, fontsize=8, va="top")


def mark_failed_faults(ax: Axes, failed: Sequence[dict[str, Any]]) -> None:
    """A fault that could not be applied: a dashed line at the attempt, no shading (it never held)."""
    for fault in failed:
        ax.axvline(fault["at_s"], color="#555555", ls="--", lw=1.0, zorder=3)
        label = f" ✗ {fault['name']} (not applied)"
        ax.text(fault["at_s"], 0.02, label, transform=ax.get_xaxis_transform(), color="#555555", fontsize=8)


def _time_axes(ax: Axes, summary: dict[str, Any]) -> None:
    shade_faults(ax, summary["faults"])
    mark_failed_faults(ax, summary["failed_faults"])


def _legend_below(ax: Axes, ncol: int = 6, **kwargs: Any) -> None:
    """Under the axes, so it never hides a fault label or the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=ncol, frameon=False, **kwargs)


def latency_plot(analysis: Analysis) -> Figure:
    tl, summary = analysis.timeline, analysis.summary
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    sample = tl.sample
    good = sample["ok"].to_numpy()
    ax.scatter(
        sample["t"][good],
        sample["latency_ms"][good],
        s=2,
        color="#4363d8",
        alpha=0.25,
        lw=0,
        label="ok (sample)",
    )
    failed = sample[~good & np.isfinite(sample["latency_ms"].to_numpy())]
    if len(failed):
        ax.scatter(
            failed["t"],
            failed["latency_ms"],
            s=6,
            color="#e6194b",
            marker="x",
            lw=0.6,
            label="failed (sample)",
        )
    x = tl.edges
    for name, color in (("p50", "#000000"), ("p95", "#f58231"), ("p99", "#911eb4")):
        ax.stairs(tl.bands[name], x, baseline=None, color=color, lw=1.2, label=f"{name} per {tl.width:g} s")
    slos = summary["slos"]
    for key, color in (("p95_ms", "#f58231"), ("p99_ms", "#911eb4")):
        if key in slos:
            ax.axhline(slos[key], color=color, ls="--", lw=0.9, label=f"SLO {key[:3]}")
    if _wide_range(sample["latency_ms"].to_numpy()):
        ax.set_yscale("log")
    _time_axes(ax, summary)
    ax.set(
        xlabel="seconds since run start", ylabel="latency (ms)", title="Latency over time", xlim=(0, x[-1])
    )
    _legend_below(ax, ncol=7, markerscale=3)
    ax.grid(alpha=0.3)
    return fig


def throughput_plot(analysis: Analysis) -> Figure:
    tl = analysis.timeline
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros_like(tl.requests, dtype=np.float64)
    for index, (name, counts) in enumerate(sorted(tl.errors_by_class.items())):
        rate = counts / tl.width
        ax.stairs(
            bottom + rate,
            tl.edges,
            baseline=bottom,
            fill=True,
            alpha=0.7,
            color=_ERROR_COLORS[index % len(_ERROR_COLORS)],
            label=f"{name} errors/s",
        )
        bottom = bottom + rate
    ax.stairs(tl.ok / tl.width, tl.edges, baseline=None, color="#3cb44b", lw=1.4, label="ok req/s", zorder=4)
    _time_axes(ax, analysis.summary)
    ax.set(
        xlabel="seconds since run start",
        ylabel="requests / s",
        title="Throughput and errors",
        xlim=(0, tl.edges[-1]),
    )
    _legend_below(ax)
    ax.grid(alpha=0.3)
    return fig


def provider_plot(analysis: Analysis) -> Figure:
    tl, summary = analysis.timeline, analysis.summary
    names = sorted(tl.provider_counts.keys() - {"(none)"})
    counts = np.vstack([tl.provider_counts[n] for n in names]).astype(np.float64)
    totals = counts.sum(axis=0)
    shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    breakers = [b for b in summary["breakers"]["breakers"] if b["open_intervals"]]
    fig = Figure(figsize=(11, 3.8 + 0.25 * len(breakers)), layout="constrained")
    if breakers:
        ax, lanes = fig.subplots(2, 1, sharex=True, height_ratios=[4, max(1, 0.35 * len(breakers))])
    else:
        ax, lanes = fig.subplots(), None
    centers = tl.centers
    ax.stackplot(
        centers,
        np.nan_to_num(shares),
        labels=names,
        colors=[_COLORS[(i + 2) % 9] for i in range(len(names))],
        alpha=0.8,
    )
    _time_axes(ax, summary)
    ax.set(ylabel="share of requests", title="Provider share over time", ylim=(0, 1), xlim=(0, tl.edges[-1]))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    if lanes is not None:
        for row, breaker in enumerate(breakers):
            spans = [(a, b - a) for a, b in breaker["open_intervals"]]
            lanes.broken_barh(spans, (row - 0.35, 0.7), color="#e6194b")
        lanes.set_yticks(
            range(len(breakers)), [f"{b['provider']} {b['transport']}".strip() for b in breakers], fontsize=7
        )
        lanes.set(xlabel="seconds since run start", title="breaker open")
        lanes.title.set_fontsize(8)
    else:
        ax.set_xlabel("seconds since run start")
    return fig


def recovery_plot(analysis: Analysis) -> Figure:
    faults = analysis.summary["faults"][:_MAX_RECOVERY_PANELS]
    target = analysis.settings.target
    fig = Figure(figsize=(11, 2.3 * len(faults) + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(faults), 1, squeeze=False)[:, 0])
    for ax, fault, series in zip(axes, faults, analysis.recovery_series, strict=False):
        start = fault["start_s"]
        steps, windows = series.steps, series.windows
        step = analysis.settings.step_s
        ax.stairs(
            steps.success_rate, np.append(steps.starts, steps.starts[-1] + step) - start,
            color="#9a9a9a", lw=0.9, baseline=None, label=f"success rate per {step:g} s",
        )  # fmt: skip
        ax.plot(
            windows.starts - start, windows.success_rate, color="#4363d8", lw=1.2, marker=".", ms=2,
            label=f"success rate of the {analysis.settings.window_s:g} s window starting at t (judged)",
        )  # fmt: skip
        ax.axhline(target, color="#3cb44b", ls="--", lw=0.9, label=f"target {target:.2%}")
        names = [f["name"] for f in analysis.summary["faults"]]
        shade_faults(ax, [fault], offset=start, names=names, with_target=False)  # the title names it
        # Show the steady state, the fault and the recovery, not the whole (possibly long) horizon.
        settled = max(fault["end_s"] - start, fault["recovery_s"] or 0.0)
        right = min(fault["horizon_s"] - start, 1.3 * settled + 2 * analysis.settings.window_s)
        ax.set_xlim(steps.starts[0] - start if steps.starts.size else 0.0, right)
        if fault["recovery_s"] is not None:
            ax.axvline(fault["recovery_s"], color="#000000", lw=1.2)
            ax.text(
                fault["recovery_s"],
                0.05,
                f" recovered +{fault['recovery_s']:g} s",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
            )
        else:
            ax.text(0.5, 0.5, "not recovered", transform=ax.transAxes, color="#e6194b", ha="center")
        rates = np.concatenate([steps.success_rate, windows.success_rate])
        low = np.nanmin(rates) if np.isfinite(rates).any() else 0.0
        ax.set_ylim(min(low, target) - 0.02, 1.005)
        ax.set_ylabel("success rate", fontsize=8)
        ax.set_title(f"{fault['name']} → {fault['target']}", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=7)
    axes[-1].set_xlabel("seconds since the fault started")
    return fig


def heads_plot(analysis: Analysis) -> Figure:
    heads, t0 = analysis.run.heads, analysis.run.t0
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax = fig.subplots()
    subscription = analysis.summary["subscription"]
    names = [s["subscriber"] for s in subscription["per_subscriber"]]
    for index, name in enumerate(names[: len(_COLORS)]):
        rows = heads[(heads["subscriber"].astype("object") == name).to_numpy()]
        delay = rows["t"].to_numpy() + t0 - rows["block_timestamp"].to_numpy().astype(np.float64)
        ax.scatter(rows["t"], delay, s=3, color=_COLORS[index], alpha=0.6, lw=0, label=name)
    for s in subscription["per_subscriber"]:
        for gap in s["gaps"]:
            ax.axvline(gap["ended_at_s"], color="#e6194b", lw=0.8, alpha=0.6)
    _time_axes(ax, analysis.summary)
    ax.set(
        xlabel="seconds since run start",
        ylabel="head delay (s)",
        title="newHeads delay (red lines: a gap ended)",
    )
    _legend_below(ax, ncol=min(len(names), 6), markerscale=3)
    ax.grid(alpha=0.3)
    return fig


def _wide_range(values: np.ndarray) -> bool:
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and float(values.max()) / max(float(np.quantile(values, 0.01)), 1e-9) > 50


def ecdf_plot(baseline: np.ndarray, current: np.ndarray, labels: tuple[str, str]) -> Figure:
    """Both latency samples' empirical CDFs (sorted inputs), thinned to at most 2,000 steps each."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    for sample, label, color in ((baseline, labels[0], "#4363d8"), (current, labels[1], "#e6194b")):
        if sample.size == 0:
            continue
        index = np.unique(np.linspace(0, sample.size - 1, min(sample.size, 2_000)).astype(np.int64))
        ax.step(sample[index], (index + 1) / sample.size, where="post", color=color, lw=1.3, label=label)
        for q in (0.5, 0.95, 0.99):
            ax.plot(sample[max(int(np.ceil(q * sample.size)) - 1, 0)], q, "o", color=color, ms=4)
    if _wide_range(np.concatenate([baseline, current])):
        ax.set_xscale("log")
    ax.set(xlabel="latency of successful requests (ms)", ylabel="fraction ≤ x", title="Latency distributions")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig
