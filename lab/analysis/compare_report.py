"""Write a comparison: compare.html, compare.json, compare.md, compare-junit.xml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.analysis import render as r
from lab.analysis.compare import Side
from lab.analysis.junit import Case, write_junit
from lab.analysis.plots import ecdf_plot, figure_png
from lab.analysis.report import write_json

COMPARE_FILES = ("compare.html", "compare.json", "compare.md", "compare-junit.xml")
HEADERS = ("metric", "baseline", "current", "change", "noise margin", "tolerance", "verdict", "detail")


def write_comparison(result: dict[str, Any], baseline: Side, current: Side, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in COMPARE_FILES}
    write_json(paths["compare.json"], result)
    paths["compare.md"].write_text(comparison_markdown(result), encoding="utf-8")
    cases = [Case(m["name"], m["verdict"] != "regression", m["detail"]) for m in result["metrics"]]
    write_junit(paths["compare-junit.xml"], f"lab.compare.{result['scenario']}", cases)
    plot = None
    if baseline.latency is not None and current.latency is not None:
        labels = (f"baseline {baseline.runs[-1].run_id}", f"current {current.runs[-1].run_id}")
        plot = figure_png(ecdf_plot(baseline.latency, current.latency, labels))
    paths["compare.html"].write_text(comparison_html(result, plot), encoding="utf-8")
    return paths


# One row per metric, in HEADERS' order; the verdict is a (text, css class) cell.
MetricRow = tuple[str, str, str, str, str, str, tuple[str, str], str]


def metric_rows(result: dict[str, Any]) -> list[MetricRow]:
    rows: list[MetricRow] = []
    for m in result["metrics"]:
        fmt = _formatter(m)
        rows.append(
            (
                m["name"],
                fmt(m["baseline"]),
                fmt(m["current"]),
                _change(m),
                "unknown" if m["margin"] is None else "±" + _amount(m, m["margin"]),
                "±" + _amount(m, m["tolerance"]),
                (m["verdict"].replace("_", " "), m["verdict"]),
                m["detail"],
            )
        )
    return rows


def _formatter(m: dict[str, Any]) -> Any:
    def fmt(value: float | None) -> str:
        if value is None:
            return "—"
        if m["name"] == "success_rate":
            return f"{value * 100:.3f} %"
        return f"{value:.4g} {m['unit']}".rstrip()

    return fmt


def _amount(m: dict[str, Any], value: float) -> str:
    """A margin or tolerance: relative for log-scale metrics, pp for success rate, else in the unit."""
    if m["scale"] == "log":
        return f"{value:.1%}"
    if m["name"] == "success_rate":
        return f"{value * 100:.3g} pp"
    return f"{value:.3g} {m['unit']}"


def _change(m: dict[str, Any]) -> str:
    if m["difference"] is None:
        return "—"
    if m["scale"] == "log":
        return f"{m['relative']:+.1%}"
    if m["name"] == "success_rate":
        return f"{m['difference'] * 100:+.3f} pp"
    return f"{m['difference']:+.3g} {m['unit']}"


def comparison_html(result: dict[str, Any], plot_png: str | None) -> str:
    verdict = result["verdict"]
    sides = [
        [label, str(result[label]["runs"]), ", ".join(result[label]["run_ids"]), result[label]["source"]]
        for label in ("baseline", "current")
    ]
    settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items())
    body = "\n".join(
        [
            f"<h1>{r.escape(result['scenario'])}: "
            f"<span class='verdict {verdict}'>{verdict.replace('_', ' ')}</span></h1>",
            f"<p>{r.escape(result['explanation'])}</p>",
            r.html_table(("side", "runs", "run ids", "source"), sides),
            "<h2>Metrics (one value per run)</h2>",
            r.html_table(HEADERS, metric_rows(result)),
            r.image(plot_png, "Latency distributions of the newest run of each side") if plot_png else "",
            f"<p class='meta'>Settings: {r.escape(settings)}. Changes are current − baseline (ratios for "
            "latency); the noise margin is the one-sided t quantile times the pooled between-run standard "
            "deviation. Definitions: lab/analysis/README.md.</p>",
        ]
    )
    return r.page(f"compare {result['scenario']}", body)


def comparison_markdown(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## {result['verdict'].replace('_', ' ').upper()}: {result['scenario']} "
            f"({result['baseline']['runs']} baseline run(s) → {result['current']['runs']} current run(s))",
            "",
            result["explanation"],
            "",
            r.markdown_table(HEADERS, metric_rows(result)),
            "",
        ]
    )
