"""Write a run's report into a directory: report.html, summary.json, summary.md, junit.xml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from lab.analysis import render as r
from lab.analysis.junit import Case, write_junit
from lab.analysis.plots import SOAK_SLOS, all_plots
from lab.analysis.summary import Analysis

REPORT_FILES = ("report.html", "summary.json", "summary.md", "junit.xml")


def write_report(analysis: Analysis, out_dir: Path, *, html: bool = True) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in REPORT_FILES}
    summary = analysis.summary
    write_json(paths["summary.json"], summary)
    paths["summary.md"].write_text(
        summary_markdown(summary, paths["report.html"] if html else None), encoding="utf-8"
    )
    cases = [
        Case(c["name"] + ": " + c["objective"], c["status"] == "pass", c["detail"], c["status"] != "fail")
        for c in summary["slo"]["checks"]
    ]
    properties = {"verdict": verdict_text(summary)}
    if verdict_of(summary) == "incomplete":
        properties["incomplete"] = incomplete_line(summary)
    write_junit(paths["junit.xml"], f"lab.slo.{summary['scenario']}", cases, properties)
    if html:
        paths["report.html"].write_text(report_html(analysis), encoding="utf-8")
    else:
        del paths["report.html"]
    return paths


def write_json(path: Path, data: Any) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def verdict_of(s: dict[str, Any]) -> str:
    """ "pass", "fail" or "incomplete" (a summary from before the verdict field: from its SLO checks)."""
    verdict = s.get("verdict") or s["slo"].get("verdict")
    if verdict in ("pass", "fail", "incomplete"):
        return str(verdict)
    return "pass" if s["slo"]["passed"] else "fail"


def verdict_text(s: dict[str, Any]) -> str:
    return verdict_of(s).upper()


def incomplete_line(s: dict[str, Any]) -> str:
    """Why the run is INCOMPLETE, in one line (every reason)."""
    reasons = (s.get("completeness") or {}).get("reasons") or []
    named = "; ".join(r["detail"] for r in reasons)
    return f"INCOMPLETE: {named or 'the run record is not whole'} — no PASS or FAIL on partial evidence"


# --- tables shared by HTML and Markdown ------------------------------------------------------------


def slo_rows(summary: dict[str, Any]) -> list[list[r.Cell]]:
    return [
        [c["name"], c["objective"], (r.status_text(c["status"]), c["status"]), c["detail"]]
        for c in summary["slo"]["checks"]
    ]


def soak_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    soak = s.get("soak") or {}
    memory, fds, drift = soak.get("memory"), soak.get("open_fds"), soak.get("latency_drift")
    missing = ("not measurable", "no_data")
    rows: list[list[r.Cell]] = []
    if memory is None:
        rows.append(["memory slope", missing])
    else:
        low, high = memory["slope_ci95"]
        rows += [
            [
                "memory slope (Theil-Sen)",
                f"{memory['slope_mb_per_min']:+.3f} MB/min (95 % CI {low:+.3f} … {high:+.3f})",
            ],
            [
                "resident memory first / last / max",
                f"{memory['first_mb']:.1f} / {memory['last_mb']:.1f} / {memory['max_mb']:.1f} MB "
                f"({memory['samples']} samples)",
            ],
        ]
    if fds is None:
        rows.append(["open fds", missing])
    else:
        first, last = fds["first_third_median"], fds["last_third_median"]
        growth = "not measurable" if fds["growth"] is None else f"{fds['growth']:+g}"
        rows += [
            ["open fds max", f"{fds['max']:g}"],
            ["open fds median first → last third", f"{r.num(first)} → {r.num(last)} (growth {growth})"],
        ]
    if drift is None:
        rows.append(["latency drift", missing])
    else:
        ratio = "—" if drift["ratio_p95"] is None else f"{drift['ratio_p95']:.2f}×"
        rows.append(
            [
                "p95 first third → last third",
                f"{r.ms(drift['first_third_p95_ms'])} → {r.ms(drift['last_third_p95_ms'])} ({ratio})",
            ]
        )
    return rows


def _shows_soak(s: dict[str, Any]) -> bool:
    soak = s.get("soak") or {}
    measured = soak.get("memory") is not None or soak.get("open_fds") is not None
    return measured or any(k in s["slos"] for k in SOAK_SLOS)


def overview_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    lat = s["latency_ms"]
    errors = ", ".join(f"{k} {v:,}" for k, v in s["error_classes"].items()) or "none"
    return [
        ["requests", r.num(s["requests"])],
        ["success rate", r.pct(s["success_rate"])],
        ["errors", f"{s['errors']:,} ({errors})"],
        ["throughput", "—" if s["throughput_rps"] is None else f"{s['throughput_rps']:.1f} req/s"],
        [
            f"{s.get('latency_kind', 'latency')} p50 / p90 / p95 / p99",
            " / ".join(r.ms(lat[k]) for k in ("p50", "p90", "p95", "p99")),
        ],
        ["latency max (mean)", f"{r.ms(lat['max'])} ({r.ms(lat['mean'])})"],
        *_service_time_row(s),
        ["duration", r.secs(s["duration_s"])],
    ]


def _service_time_row(s: dict[str, Any]) -> list[list[r.Cell]]:
    """The service time beside the headline response time (records of before the open model: none)."""
    service = s.get("service_ms")
    if not service or service.get("p50") is None:
        return []
    figures = " / ".join(r.ms(service[k]) for k in ("p50", "p90", "p95", "p99"))
    return [["service time (from the actual send) p50 / p90 / p95 / p99", figures]]


def gateway_line(s: dict[str, Any]) -> str:
    """The gateway under test in one line: adapter, image and id (or the external URL), variables."""
    g = s.get("gateway") or {}
    if not g:
        return "gateway: not recorded"
    if g["external"]:
        where = f"external, at {g['url']} (a gateway the user runs; no image)"
    else:
        image_id = (g["image_id"] or "id unknown").removeprefix("sha256:")[:12]
        where = f"image {g['image'] or '?'} ({image_id})"
    variables = ", ".join(f"{k}={v}" for k, v in g["variables"].items() if k != "settings")
    spec = f" ({g['adapter_file']})" if g.get("adapter_file") else ""
    return f"gateway: {g['adapter']}{spec} · {where}" + (f" · {variables}" if variables else "")


def fault_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    rows = []
    for f in s["faults"]:
        fo = f.get("failover") or {}
        status = f["recovery_status"]
        rows.append(
            [
                f["name"],
                f"{f['action']} → {f['target']}",
                f"{f['start_s']:.1f}–{f['end_s']:.1f} s" + _window_note(f),
                f"{r.pct(f['baseline']['success_rate'], 2)} / {r.ms(f['baseline']['latency_ms']['p95'])}",
                f"{r.pct(f['during']['success_rate'], 2)} / {r.ms(f['during']['latency_ms']['p95'])}",
                r.secs(f.get("time_to_first_impact_s")) + _impact_note(f),
                r.secs(f["time_to_first_error_s"]),
                r.secs(f.get("error_window_s")),
                f"{f['errors']:,} ({f['excess_errors']:,} excess)",
                (
                    r.secs(f["recovery_s"]) if status == "recovered" else status.replace("_", " "),
                    "" if status == "recovered" else "fail",
                ),
                r.secs(f["recovery_after_end_s"]),
                r.secs(fo.get("drained_s")),
                r.secs(fo.get("returned_s")),
            ]
        )
    return rows


def _impact_note(f: dict[str, Any]) -> str:
    return f" ({f['impacted_by']})" if f.get("impacted_by") else ""


def _window_note(f: dict[str, Any]) -> str:
    if not f["ended"]:
        return " (no end)"
    if f.get("lift_error"):
        return " (lift failed)"
    return f" ({f['end_reason']})" if f.get("end_reason") else ""


def failed_fault_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    return [
        [f["name"], f"{f['action']} → {f['target']}", r.secs(f["at_s"]), (f["error"], "fail")]
        for f in s["failed_faults"]
    ]


FAILED_FAULT_HEADERS = ("fault", "action → target", "attempted at", "error")
FAILED_FAULTS_NOTE = "Faults that could not be applied (no window: not analysed, the gateway was not tested)"


FAULT_HEADERS = (
    "fault", "action → target", "window", "baseline ok / p95", "during ok / p95", "first impact",
    "first error", "error window", "errors", "recovered (from start)", "after end", "drained", "returned",
)  # fmt: skip


def method_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    return [
        [
            m["method"],
            r.num(m["requests"]),
            r.pct(m["success_rate"]),
            ", ".join(f"{k} {v:,}" for k, v in m["error_classes"].items()) or "—",
            *(r.ms(m["latency_ms"][k]) for k in ("p50", "p90", "p95", "p99", "max")),
            "—" if m["throughput_rps"] is None else f"{m['throughput_rps']:.1f}",
        ]
        for m in s["methods"]
    ]


METHOD_HEADERS = ("method", "requests", "success", "errors", "p50", "p90", "p95", "p99", "max", "req/s")


def subscriber_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    return [
        [
            x["subscriber"],
            r.num(x["heads"]),
            f"{x['first_block']}–{x['last_block']}",
            (r.num(x["missing"]), "fail" if x["missing"] else ""),
            r.num(x["max_gap"]),
            r.num(x["duplicates"]),
            r.num(x["out_of_order"]),
            r.num(x["reorgs"]),
            (r.num(x.get("regressions")), "fail" if x.get("regressions") else ""),
            r.secs(x["longest_silence_s"]),
            r.secs(x["head_delay_s"]["p50"]),
            r.secs(x["head_delay_s"]["p95"]),
            r.num(x["behind_at_end"]),
        ]
        for x in s["subscription"]["per_subscriber"]
    ]


SUBSCRIBER_HEADERS = (
    "subscriber", "heads", "blocks", "missing", "largest gap", "duplicates", "out of order", "reorgs",
    "regressions", "longest silence", "delay p50", "delay p95", "behind at end",
)  # fmt: skip


# --- correctness (the checker) -----------------------------------------------------------------------

ANOMALY_HEADERS = ("kind", "count", "first at", "request", "expected", "got", "serving provider")
_ANOMALY_NAMES = {
    "wrong": "wrong answer",
    "wrong_chain": "another chain's answer",
    "orphaned": "orphaned branch (after a reorg)",
    "stale": "stale read",
    "head_regression": "head went backwards",
    "head_wrong": "subscriber head not of this chain",
    "head_orphaned": "subscriber head of an orphaned branch",
}


def correctness_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    c = s.get("correctness") or {}
    if not c.get("checked") and not c.get("subscriber_heads"):
        return []
    stale = c["max_stale_blocks"]
    return [
        ["answers checked", r.num(c["checked"])],
        ["wrong answers", (r.num(c["wrong_answers"]), "fail" if c["wrong_answers"] else "")],
        ["  of them another chain's / orphaned", f"{r.num(c['wrong_chain'])} / {r.num(c['orphaned'])}"],
        ["stale reads", f"{r.num(c['stale'])} ({r.pct(c['stale_read_rate'])})"],
        ["largest head lag", "–" if stale is None else f"{stale} blocks"],
        ["head regressions", r.num(c["head_regressions"])],
        ["subscriber heads wrong / orphaned", _heads_cell(c.get("subscriber_heads"))],
        ["reorgs subscribers were never shown", r.num(c.get("subscriber_missed_reorgs"))],
        [
            "reorgs",
            _reorgs_cell(c["reorgs"]),
        ],
    ]


def _reorgs_cell(reorgs: list[dict[str, Any]]) -> str:
    """Each fork block once, at its first target's time, with how many providers took it."""
    first: dict[Any, tuple[float, int]] = {}
    for x in reorgs:
        at, count = first.get(x["fork_block"], (x["at_s"], 0))
        first[x["fork_block"]] = (min(at, x["at_s"]), count + 1)
    parts = [f"from block {fork} at {r.secs(at)} ({n} providers)" for fork, (at, n) in first.items()]
    return ", ".join(parts) or "none"


def _heads_cell(sub: dict[str, Any] | None) -> str:
    return "–" if not sub else f"{r.num(sub['wrong'])} / {r.num(sub['orphaned'])} of {r.num(sub['checked'])}"


def anomaly_rows(s: dict[str, Any]) -> list[list[r.Cell]]:
    first = (s.get("correctness") or {}).get("first_anomalies") or {}
    rows: list[list[r.Cell]] = []
    for kind, x in first.items():
        request = " ".join(str(v) for v in (x["method"], f"by {x['client']}" if x["client"] else None) if v)
        rows.append(
            [
                (_ANOMALY_NAMES.get(kind, kind), "no_data" if kind == "stale" else "fail"),
                r.num(x["count"]),
                r.secs(x["t"]),
                request or "–",
                x["expected"] or (x["detail"] if x["got"] is None else None) or "–",
                x["got"] or "–",
                x["provider"] or "–",
            ]
        )
    return rows


def _correctness_html(s: dict[str, Any]) -> str:
    rows = correctness_rows(s)
    if not rows:
        return "<p class='no_data'>No answer was checked against the chain (the checker was off).</p>"
    out = r.html_table(("metric", "value"), rows)
    anomalies = anomaly_rows(s)
    if anomalies:
        out += "<p>First anomaly of each kind:</p>" + r.html_table(ANOMALY_HEADERS, anomalies)
    return out


# --- HTML ------------------------------------------------------------------------------------------


def report_html(analysis: Analysis) -> str:
    s = analysis.summary
    plots = all_plots(analysis)
    verdict = verdict_of(s)
    parts = [
        f"<h1>{r.escape(s['scenario'])} <span class='verdict {verdict}'>{verdict.upper()}</span></h1>",
        f"<p class='meta'>run <code>{r.escape(s['run_id'])}</code> · started {r.escape(s['started'])} · "
        f"{r.secs(s['duration_s'])} · {r.escape(s['run_dir'])}</p>",
        f"<p class='meta'>{r.escape(gateway_line(s))}</p>",
    ]
    if verdict == "incomplete":
        parts.insert(1, f"<p class='incomplete'>{r.escape(incomplete_line(s))}</p>")
    if s["warnings"]:
        parts.append(
            "<ul>" + "".join(f"<li class='no_data'>{r.escape(w)}</li>" for w in s["warnings"]) + "</ul>"
        )
    parts += ["<h2>SLO verdicts</h2>", r.html_table(("SLO", "objective", "verdict", "measured"), slo_rows(s))]
    parts += ["<h2>Overview</h2>", r.html_table(("metric", "value"), overview_rows(s))]
    if not s["requests"]:
        parts.append("<p class='fail'>No requests were recorded in this run.</p>")
    for name, title in (("latency", "Latency over time"), ("throughput", "Throughput and errors")):
        if name in plots:
            parts += [r.image(plots[name], title)]
    parts.append("<h2>Faults</h2>")
    if s["failed_faults"]:
        parts += [
            f"<p class='fail'>{r.escape(FAILED_FAULTS_NOTE)}:</p>",
            r.html_table(FAILED_FAULT_HEADERS, failed_fault_rows(s)),
        ]
    if s["faults"]:
        parts += [r.html_table(FAULT_HEADERS, fault_rows(s)), _plot(plots, "recovery", "Recovery per fault")]
    elif not s["failed_faults"]:
        parts.append("<p>No faults were injected.</p>")
    parts += ["<h2>Failover</h2>", _failover_html(s), _plot(plots, "providers", "Provider share over time")]
    parts += ["<h2>Circuit breakers</h2>", _breakers_html(s)]
    parts += ["<h2>Subscriptions</h2>", _subscriptions_html(s), _plot(plots, "heads", "Head delay")]
    parts += ["<h2>Answers checked against the chain</h2>", _correctness_html(s)]
    if _shows_soak(s):
        parts += [
            "<h2>Soak</h2>",
            r.html_table(("metric", "value"), soak_rows(s)),
            _plot(plots, "soak", "Soak"),
        ]
        parts += [f"<p class='no_data'>{r.escape(n)}</p>" for n in s["soak"]["notes"]]
    parts += ["<h2>Per method</h2>", r.html_table(METHOD_HEADERS, method_rows(s))]
    parts += [
        "<h2>Definitions</h2><ul class='defs'>",
        *(f"<li><b>{r.escape(k)}</b>: {r.escape(v)}</li>" for k, v in s["definitions"].items()),
        "</ul>",
    ]
    return r.page(f"{s['scenario']} — {s['run_id']}", "\n".join(parts))


def _plot(plots: dict[str, str], name: str, title: str) -> str:
    return r.image(plots[name], title) if name in plots else ""


def _failover_html(s: dict[str, Any]) -> str:
    providers = s["failover"]["providers"]
    attempts = s["failover"]["attempts"]
    rows = [
        [
            p["provider"],
            r.num(p["requests"]),
            r.pct(p["share"], 1),
            r.pct(p["success_rate"]),
            r.ms(p["latency_ms"]["p50"]),
            r.ms(p["latency_ms"]["p95"]),
        ]
        for p in providers
    ]
    out = (
        r.html_table(("provider", "requests", "share", "success", "p50", "p95"), rows)
        if rows
        else "<p>No serving provider was recorded.</p>"
    )
    if s["failover"].get("unattributed") or s["failover"].get("unattributed_failed"):
        out += (
            f"<p>{s['failover'].get('unattributed', 0):,} successful and "
            f"{s['failover'].get('unattributed_failed', 0):,} failed requests are unattributed: the "
            "gateway's response did not say which provider served them (no routing metadata, no "
            "X-Lab-Provider passed through, or the gateway's own error). They count in every share; "
            "failed ones count against a provider's draining.</p>"
        )
    if attempts["requests"]:
        dist = ", ".join(f"{k}: {v:,}" for k, v in attempts["distribution"].items())
        out += (
            f"<p>Attempts per request: mean {attempts['mean']:.3f}, max {attempts['max']}, "
            f"retried {r.pct(attempts['retried_share'], 2)} ({r.escape(dist)}).</p>"
        )
    return out


def _breakers_html(s: dict[str, Any]) -> str:
    b = s["breakers"]
    if b.get("unknown"):
        return f"<p>Not known: {r.escape(b['unknown'])}.</p>"
    if b["opens"] is None:
        return "<p>No gateway events were recorded (no gateway_events.jsonl).</p>"
    rows = [
        [
            x["provider"],
            x["transport"],
            x["opens"],
            x["half_opens"],
            x["closes"],
            r.secs(x["time_open_s"]),
            x["final_state"],
        ]
        for x in b["breakers"]
    ]
    types = ", ".join(f"{k}: {v}" for k, v in sorted(b["event_types"].items())) or "none"
    table = (
        r.html_table(("provider", "transport", "opens", "half-opens", "closes", "time open", "final"), rows)
        if rows
        else "<p>No breaker transitions.</p>"
    )
    return table + f"<p class='meta'>Gateway events by type: {r.escape(types)}</p>"


def _subscriptions_html(s: dict[str, Any]) -> str:
    sub = s["subscription"]
    if not sub["heads"]:
        return "<p>No newHeads notifications were recorded.</p>"
    delay = sub["head_delay_s"]
    out = (
        f"<p>{sub['heads']:,} heads to {sub['subscribers']} subscribers: {sub['missing']:,} missing, "
        f"largest gap {sub['max_gap']}, {sub['duplicates']:,} duplicates, "
        f"{sub['out_of_order']:,} out of order; head delay p50 {r.secs(delay['p50'])}, "
        f"p95 {r.secs(delay['p95'])}, max {r.secs(delay['max'])}.</p>"
    )
    out += r.html_table(SUBSCRIBER_HEADERS, subscriber_rows(s))
    gaps = [(x["subscriber"], g) for x in sub["per_subscriber"] for g in x["gaps"]]
    if gaps:
        rows = [
            [name, f"{g['from_block']}–{g['to_block']}", g["blocks"], r.secs(g["ended_at_s"])]
            for name, g in gaps
        ]
        out += "<p>Gaps:</p>" + r.html_table(("subscriber", "missing blocks", "count", "ended at"), rows)
    return out


# --- Markdown (CI job summary) ---------------------------------------------------------------------


def summary_markdown(s: dict[str, Any], report_path: Path | None = None) -> str:
    lines = [
        f"## {verdict_text(s)}: {s['scenario']} (run `{s['run_id']}`)",
        "",
        *([f"**{incomplete_line(s)}**", ""] if verdict_of(s) == "incomplete" else []),
        gateway_line(s),
        "",
        r.markdown_table(("SLO", "objective", "verdict", "measured"), slo_rows(s)),
        "",
        r.markdown_table(("metric", "value"), overview_rows(s)),
    ]
    if s["faults"] or s["failed_faults"]:
        lines += ["", "### Faults"]
    if s["failed_faults"]:
        lines += [
            "",
            f"**{FAILED_FAULTS_NOTE}:**",
            "",
            r.markdown_table(FAILED_FAULT_HEADERS, failed_fault_rows(s)),
        ]
    if s["faults"]:
        lines += ["", r.markdown_table(FAULT_HEADERS, fault_rows(s))]
    sub = s["subscription"]
    if sub["heads"]:
        lines += ["", "### Subscriptions", "", r.markdown_table(SUBSCRIBER_HEADERS, subscriber_rows(s))]
    if correctness_rows(s):
        lines += ["", "### Answers checked", "", r.markdown_table(("metric", "value"), correctness_rows(s))]
        if anomaly_rows(s):
            lines += ["", r.markdown_table(ANOMALY_HEADERS, anomaly_rows(s))]
    if _shows_soak(s):
        lines += ["", "### Soak", "", r.markdown_table(("metric", "value"), soak_rows(s))]
        lines += [f"> {n}" for n in s["soak"]["notes"]]
    if s["warnings"]:
        lines += ["", *(f"> {w}" for w in s["warnings"])]
    if report_path is not None:
        lines += ["", f"Full report: `{report_path}`"]
    lines.append("")
    return "\n".join(lines)
