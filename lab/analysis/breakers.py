"""Circuit-breaker activity from the gateway's event stream (gateway_events.jsonl).

Breaker events are `{"type": "breaker", "provider", "transport", "from", "to", "ts"}` with states
closed / open / half_open. Per (provider, transport): opens = transitions to open, half_opens = to
half_open, closes = to closed; time_open_s = time spent open (a breaker whose first event leaves "open"
was open since the run start; one still open at the end stays open until the run end), as intervals for
the plots. Other event types are counted by type and otherwise ignored.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

STATES = ("closed", "open", "half_open")


def analyse_breakers(events: list[dict[str, Any]] | None, run_end: float) -> dict[str, Any]:
    if events is None:
        return {"opens": None, "half_opens": None, "closes": None, "breakers": [], "event_types": {}}
    types = Counter(str(e.get("type")) for e in events)
    transitions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("type") == "breaker" and event.get("to") in STATES and not math.isnan(event["t"]):
            key = (str(event.get("provider") or "?"), str(event.get("transport") or ""))
            transitions[key].append(event)
    breakers = []
    for (provider, transport), items in sorted(transitions.items()):
        items.sort(key=lambda e: e["t"])
        state = items[0].get("from") if items[0].get("from") in STATES else "closed"
        since = 0.0
        open_intervals: list[tuple[float, float]] = []
        for event in items:
            if state == "open":
                open_intervals.append((since, event["t"]))
            state, since = event["to"], event["t"]
        if state == "open":
            open_intervals.append((since, max(run_end, since)))
        breakers.append(
            {
                "provider": provider,
                "transport": transport,
                "opens": sum(e["to"] == "open" for e in items),
                "half_opens": sum(e["to"] == "half_open" for e in items),
                "closes": sum(e["to"] == "closed" for e in items),
                "time_open_s": sum(b - a for a, b in open_intervals),
                "open_intervals": open_intervals,
                "final_state": state,
            }
        )
    return {
        "opens": sum(b["opens"] for b in breakers),
        "half_opens": sum(b["half_opens"] for b in breakers),
        "closes": sum(b["closes"] for b in breakers),
        "breakers": breakers,
        "event_types": dict(types),
    }
