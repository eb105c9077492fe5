"""Formatting shared by the HTML, Markdown and terminal outputs: number formats, tables, the page shell."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TypeAlias

Value: TypeAlias = str | int | float | None  # None prints as "—"
Cell: TypeAlias = Value | tuple[Value, str]  # a (value, css class) tuple for a styled HTML cell


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return (
        f"{value:.3g} ms" if value < 10 else f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.1f} s"
    )


def pct(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g} s" if abs(value) < 100 else f"{value:.0f} s"


def num(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def status_text(status: str) -> str:
    return {"pass": "PASS", "fail": "FAIL", "no_data": "NO DATA", "incomplete": "INCOMPLETE"}.get(
        status, status.upper()
    )


_CSS = "".join(
    (
        "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;",
        "margin:24px auto;max-width:1180px;color:#222;padding:0 16px}",
        "h1{font-size:22px;margin-bottom:4px}",
        "h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}",
        "table{border-collapse:collapse;margin:8px 0;font-size:13px}",
        "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}",
        "th{background:#f4f4f4}",
        "td:first-child,th:first-child{text-align:left}",
        ".pass{background:#d8f5d8;color:#135a13;font-weight:600}",
        ".fail,.regression{background:#fbd5d5;color:#8a1010;font-weight:600}",
        ".no_data,.weak,.inconclusive,.incomplete{background:#fde9c8;color:#7a4b00;font-weight:600}",
        "p.incomplete{padding:8px 12px;border:2px solid #c98a00;font-size:15px}",
        ".improvement{background:#d6e8fb;color:#0d3f78;font-weight:600}",
        ".no_change{color:#555}",
        ".verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-size:18px}",
        ".meta{color:#555}",
        "img{max-width:100%}",
        "code{background:#f4f4f4;padding:0 3px}",
        "ul.defs li{margin:2px 0}",
    )
)


def page(title: str, body: str) -> str:
    """A self-contained HTML document: inline CSS, no scripts, no external resources."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, css = cell if isinstance(cell, tuple) else (cell, "")
            attr = f" class='{css}'" if css else ""
            cells.append(f"<td{attr}>{html.escape('—' if text is None else str(text))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    def text(cell: Cell) -> str:
        value = cell[0] if isinstance(cell, tuple) else cell
        return ("—" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def image(b64_png: str, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64_png}'>"


def escape(text: object) -> str:
    return html.escape(str(text))
