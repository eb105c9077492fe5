"""What `lab run` records beside the load: providers' counters, the gateway's metrics and its event
stream. Each observer is a thread that polls with a bound on every request, writes into the run record
as it goes, and stops on `close()`. A failing poll is counted, never fatal: the lab is under fire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import requests

from lab.jsonrpc import quantity
from lab.record import EventLog, RunDir, TableWriter

log = logging.getLogger(__name__)


class Poller:
    """Calls `poll()` every `interval` seconds in a daemon thread until closed."""

    name = "poller"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.polls = 0
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lab-{self.name}", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def poll(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
                self.polls += 1
            except Exception as exc:  # the target is down (a fault): note it and try again
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.finish()

    def finish(self) -> None:
        """Flush what was written (subclasses)."""

    def report(self) -> dict[str, Any]:
        return {"polls": self.polls, "failures": self.failures, "last_error": self.last_error}


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # lab traffic never goes through an environment proxy
    return session


class ProviderStatsPoller(Poller):
    """Snapshots of every provider's `/_lab/stats` into `provider_stats`, straight from each provider
    (not through Toxiproxy, so a cut provider still reports)."""

    name = "provider-stats"

    def __init__(self, run_dir: RunDir, control_urls: Mapping[str, str], *, interval: float = 1.0) -> None:
        super().__init__(interval)
        self.control_urls = dict(control_urls)
        self.writer: TableWriter = run_dir.table_writer("provider_stats", writer_id="orchestrator")
        self.session = _session()

    def poll(self) -> None:
        errors = []
        for provider, url in self.control_urls.items():
            try:
                response = self.session.get(
                    f"{url.rstrip('/')}/_lab/stats", timeout=min(2.0, self.interval * 2)
                )
                response.raise_for_status()
                self.writer.append(stats_row(provider, response.json(), time.time()))
            except (requests.RequestException, ValueError) as exc:
                errors.append(f"{provider}: {type(exc).__name__}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def finish(self) -> None:
        self.writer.close()
        self.session.close()


def stats_row(provider: str, stats: Mapping[str, Any], ts: float) -> dict[str, Any]:
    """A `provider_stats` row; the per-second history is left out of the stored JSON (the snapshots
    themselves are per second)."""
    counts = _mapping(stats.get("requests"))
    by_outcome = _mapping(counts.get("by_outcome"))
    total = counts.get("total") if isinstance(counts.get("total"), int) else None
    head = stats.get("head")  # the head the provider serves (behind the chain's when lagging)
    return {
        "ts": ts,
        "provider": provider,
        "head": quantity(head),
        "requests": total,
        "errors": None if total is None else total - int(by_outcome.get("ok", 0)),
        "stats_json": orjson.dumps({k: v for k, v in stats.items() if k != "served_per_second"}).decode(),
    }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


class MetricsPoller(Poller):
    """The gateway's Prometheus metrics, one row per sample, into `metrics`."""

    name = "metrics"

    def __init__(self, run_dir: RunDir, url: str, *, interval: float = 5.0) -> None:
        super().__init__(interval)
        self.url = url
        self.writer: TableWriter = run_dir.table_writer("metrics", writer_id="orchestrator")
        self.session = _session()

    def poll(self) -> None:
        response = self.session.get(self.url, timeout=min(5.0, self.interval))
        response.raise_for_status()
        now = time.time()
        for row in metric_rows(response.text, now):
            self.writer.append(row)

    def finish(self) -> None:
        self.writer.close()
        self.session.close()


def metric_rows(text: str, ts: float) -> list[dict[str, Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        {
            "ts": ts,
            "name": sample.name,
            "labels": orjson.dumps(sample.labels).decode(),
            "value": float(sample.value),
        }
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


class GatewayEventsRecorder(Poller):
    """Copies the gateway's event stream (`/admin/events`, followed by the lab's GatewayEventStream,
    which reconnects after a gateway restart) into `gateway_events.jsonl` as events arrive."""

    name = "gateway-events"

    def __init__(self, run_dir: RunDir, open_stream: Callable[[], Any], *, interval: float = 0.25) -> None:
        super().__init__(interval)
        self.log: EventLog = run_dir.event_log("gateway_events")
        self._open_stream = open_stream
        self._stream: Any = None
        self._position = 0
        self.events = 0

    def start(self) -> GatewayEventsRecorder:
        try:
            self._stream = self._open_stream()
        except Exception as exc:  # no event stream: the run goes on without it, and says so
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return self
        super().start()
        return self

    def poll(self) -> None:
        stream = self._stream
        if stream is None:
            return
        end = stream.mark()
        for event in stream.events[self._position : end]:
            self.log.append(event)
        self.events += end - self._position
        self._position = end

    def finish(self) -> None:
        self.poll()
        if self._stream is not None:
            self._stream.close()
        self.log.close()

    def report(self) -> dict[str, Any]:
        return {**super().report(), "events": self.events}
