"""Write a comparison: compare.html, compare.json, compare.md, compare-junit.xml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from lab.analysis import render as r
from lab.analysis.compare import Side
from lab.analysis.junit import Case, write_junit
from lab.analysis.plots import ecdf_plot, figure_png
from lab.analysis.report import write_json

COMPARE_FILES = ("compare.html", "compare.json", "compare.md", "compare-junit.xml")
HEADERS = ("metric", "baseline", "current", "difference", "95 % interval", "tolerance", "verdict", "detail")


def write_comparison(result: dict[str, Any], baseline: Side, current: Side, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in COMPARE_FILES}
    write_json(paths["compare.json"], result)
    paths["compare.md"].write_text(comparison_markdown(result), encoding="utf-8")
    cases = [Case(m["name"], m["verdict"] != "regression", m["detail"]) for m in result["metrics"]]
    write_junit(paths["compare-junit.xml"], f"lab.compare.{result['scenario']}", cases)
    plot = figure_png(
        ecdf_plot(
            baseline.latency, current.latency, (f"baseline {baseline.run_id}", f"current {current.run_id}")
        )
    )
    paths["compare.html"].write_text(comparison_html(result, plot), encoding="utf-8")
    return paths


# One row per metric, in HEADERS' order; the verdict is a (text, css class) cell.
MetricRow = tuple[str, str, str, str, str, str, tuple[str, str], str]


def metric_rows(result: dict[str, Any]) -> list[MetricRow]:
    rows: list[MetricRow] = []
    for m in result["metrics"]:
        fmt = _formatter(m["name"])
        ci = m["ci"]
        rows.append(
            (
                m["name"],
                fmt(m["baseline"]),
                fmt(m["current"]),
                fmt(m["difference"], signed=True),
                "—" if ci is None else f"[{fmt(ci[0], signed=True)}, {fmt(ci[1], signed=True)}]",
                "—" if m["tolerance"] is None else "±" + fmt(m["tolerance"], signed=True).lstrip("+"),
                (m["verdict"].replace("_", " "), m["verdict"]),
                m["detail"],
            )
        )
    return rows


class _Format(Protocol):
    def __call__(self, value: float | None, signed: bool = False) -> str: ...


def _formatter(name: str) -> _Format:
    """Values in the metric's unit; differences (signed=True) in percentage points for success rate."""

    def fmt(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "—"
        sign = "+" if signed and value > 0 else ""
        if name == "success_rate":
            return f"{sign}{value * 100:.4f} " + ("pp" if signed else "%")
        return f"{sign}{value:.4g}" + (" s" if name == "recovery_s" else " ms")

    return fmt


def _sides(result: dict[str, Any]) -> list[list[r.Cell]]:
    rows = []
    for label in ("baseline", "current"):
        side = result[label]
        rows.append(
            [
                label,
                side["run_id"],
                side["source"],
                r.num(side["requests"]),
                f"{side['latency_sample']:,} of {side['latency_population']:,}",
            ]
        )
    return rows


def comparison_html(result: dict[str, Any], plot_png: str) -> str:
    verdict = result["verdict"]
    info_rows = [
        [k, r.num(v[0]) if v[0] is not None else "—", r.num(v[1]) if v[1] is not None else "—"]
        for k, v in result["info"].items()
    ]
    settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items())
    body = "\n".join(
        [
            f"<h1>{r.escape(result['scenario'])}: "
            f"<span class='verdict {verdict}'>{verdict.replace('_', ' ')}</span></h1>",
            r.html_table(("side", "run", "source", "requests", "latency sample"), _sides(result)),
            "<h2>Metrics</h2>",
            r.html_table(HEADERS, metric_rows(result)),
            r.image(plot_png, "Latency distributions"),
            "<h2>Not judged</h2>",
            r.html_table(("figure", "baseline", "current"), info_rows),
            f"<p class='meta'>Settings: {r.escape(settings)}. Differences are current − baseline; "
            f"intervals at {result['settings']['confidence']:.0%}. Definitions: lab/analysis/README.md.</p>",
        ]
    )
    return r.page(f"compare {result['scenario']}", body)


def comparison_markdown(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## {result['verdict'].replace('_', ' ').upper()}: {result['scenario']} "
            f"(`{result['baseline']['run_id']}` → `{result['current']['run_id']}`)",
            "",
            r.markdown_table(HEADERS, metric_rows(result)),
            "",
        ]
    )
