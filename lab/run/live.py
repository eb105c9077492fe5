"""The live terminal view of `lab run`: elapsed time, request rate, error rate, p95, active faults.

`RecordTail` reads the run record as it grows (each closed part file once), so the view shows what
the record holds, from every Locust process, about a second behind. `LiveView` draws it with rich on a
terminal and prints a plain line every few seconds elsewhere (CI logs).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from lab.durations import format_duration

WINDOW_S = 10.0


@dataclass
class Snapshot:
    elapsed: float
    duration: float
    requests: int = 0
    errors: int = 0
    rate: float = 0.0  # requests/s over the window
    window_error_rate: float = 0.0
    p95_ms: float | None = None
    heads: int = 0
    error_classes: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        return None if not self.requests else 1 - self.errors / self.requests

    def line(self) -> str:
        success = "-" if self.success_rate is None else f"{self.success_rate:.2%}"
        p95 = "-" if self.p95_ms is None else f"{self.p95_ms:.0f} ms"
        faults = ", ".join(self.faults) or "none"
        return (
            f"{format_duration(round(self.elapsed))}/{format_duration(self.duration)}  "
            f"{self.rate:.0f} req/s  errors {self.window_error_rate:.1%} (10s)  p95 {p95}  "
            f"success {success} of {self.requests:,}  heads {self.heads:,}  faults: {faults}"
        )


class RecordTail:
    """Rolling figures from the `requests` and `heads` tables of a run directory."""

    def __init__(self, run_dir: Path, *, window_s: float = WINDOW_S) -> None:
        self.run_dir = Path(run_dir)
        self.window_s = window_s
        self._seen: set[Path] = set()
        self._recent: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()  # ts (s), latency, ok
        self.requests = 0
        self.errors = 0
        self.heads = 0
        self.error_classes: dict[str, int] = {}

    def _new_parts(self, table: str) -> list[Path]:
        parts = [p for p in sorted((self.run_dir / table).glob("part-*.parquet")) if p not in self._seen]
        self._seen.update(parts)
        return parts

    def refresh(self, now: float | None = None) -> None:
        for part in self._new_parts("requests"):
            table = pq.read_table(part, columns=["ts", "latency_ms", "ok", "error_class"])
            ts = table.column("ts").cast("int64").to_numpy() / 1e6
            ok = table.column("ok").fill_null(False).to_numpy(zero_copy_only=False)
            latency = table.column("latency_ms").fill_null(np.nan).to_numpy(zero_copy_only=False)
            self.requests += len(ok)
            self.errors += int((~ok).sum())
            for cls in table.column("error_class").drop_null().to_pylist():
                self.error_classes[cls] = self.error_classes.get(cls, 0) + 1
            self._recent.append((ts, latency, ok))
        for part in self._new_parts("heads"):
            self.heads += pq.read_metadata(part).num_rows
        horizon = (time.time() if now is None else now) - self.window_s
        while self._recent and (len(self._recent[0][0]) == 0 or self._recent[0][0].max() < horizon):
            self._recent.popleft()

    def window(self, now: float | None = None) -> tuple[float, float, float | None]:
        """(requests/s, error share, p95 of ok latencies) over the last `window_s` seconds."""
        now = time.time() if now is None else now
        if not self._recent:
            return 0.0, 0.0, None
        ts = np.concatenate([r[0] for r in self._recent])
        latency = np.concatenate([r[1] for r in self._recent])
        ok = np.concatenate([r[2] for r in self._recent])
        inside = ts >= now - self.window_s
        count = int(inside.sum())
        if not count:
            return 0.0, 0.0, None
        good = latency[inside & ok]
        p95 = float(np.percentile(good, 95)) if good.size else None
        return count / self.window_s, float((~ok[inside]).sum() / count), p95


class LiveView:
    """Draws snapshots: a rich panel on a terminal, a plain line every `plain_every` s otherwise."""

    def __init__(self, title: str, *, console: Any = None, plain_every: float = 10.0) -> None:
        from rich.console import Console

        self.title = title
        self.console = console or Console(stderr=True)
        self.plain_every = plain_every
        self._live: Any = None
        self._last_plain = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def show(self, snapshot: Snapshot) -> None:
        if self._live is not None:
            self._live.update(self._panel(snapshot))
        elif time.monotonic() - self._last_plain >= self.plain_every:
            self._last_plain = time.monotonic()
            self.console.print(f"{self.title}: {snapshot.line()}", highlight=False, markup=False)

    def _panel(self, s: Snapshot) -> Any:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        progress = Table.grid(padding=(0, 1))
        progress.add_row(
            ProgressBar(total=max(s.duration, 1.0), completed=min(s.elapsed, s.duration), width=40),
            f"{format_duration(round(s.elapsed))} of {format_duration(s.duration)}",
        )
        grid.add_row("elapsed", progress)
        grid.add_row("req/s", f"{s.rate:,.0f}  (last {WINDOW_S:.0f} s)")
        style = "green" if s.window_error_rate < 0.01 else "red"
        grid.add_row("errors", f"[{style}]{s.window_error_rate:.2%}[/]  (last {WINDOW_S:.0f} s)")
        grid.add_row("p95", "-" if s.p95_ms is None else f"{s.p95_ms:,.0f} ms")
        success = "-" if s.success_rate is None else f"{s.success_rate:.3%}"
        classes = ", ".join(f"{k} {v:,}" for k, v in sorted(s.error_classes.items(), key=lambda kv: -kv[1]))
        grid.add_row(
            "total", f"{s.requests:,} requests, success {success}" + (f"  ({classes})" if classes else "")
        )
        grid.add_row("heads", f"{s.heads:,}")
        grid.add_row("faults", escape("\n".join(s.faults)) or "[dim]none active[/]")
        return Panel(grid, title=escape(self.title), title_align="left")


def snapshot(tail: RecordTail, elapsed: float, duration: float, faults: Callable[[], list[str]]) -> Snapshot:
    tail.refresh()
    rate, error_rate, p95 = tail.window()
    return Snapshot(
        elapsed=elapsed,
        duration=duration,
        requests=tail.requests,
        errors=tail.errors,
        rate=rate,
        window_error_rate=error_rate,
        p95_ms=p95,
        heads=tail.heads,
        error_classes=dict(tail.error_classes),
        faults=faults(),
    )
