"""Play a shipped scenario's fault timeline beside the running swarm, from the Faults tab.

The scenario file is loaded and planned as `lab run` does (`load_scenario`, `plan_timeline`: the same
validation and wording), and the lab's nemesis runs the plan from now on against the web UI's injector,
writing its start/end/failed events into the running session's `faults.jsonl` (source `webui-play`) and
the plan into the session's manifest (`played`). Only the fault timeline is played: the scenario's load and
its providers' start-up behaviours are the compose lab's own. Fault ids get the play's prefix (`play1-`),
so they stay unique within the session however often a scenario is played; the scenario's providers
stand for the lab's in their order (primary → p1, ...), the mapping recorded with the plan. Stopping the
swarm (or "lift all") stops the play and lifts what it applied.

Scenarios come from LAB_SCENARIOS_DIR (the compose lab mounts the repository's toxics/ there), else the
repository's toxics/ beside the package in a source checkout.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.faults.journal import Fault, FaultJournal

if TYPE_CHECKING:
    from lab.faults.nemesis import Nemesis
    from lab.webui.faults import FaultAPI
    from lab.webui.session import Sessions

SOURCE = "webui-play"


def scenarios_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    if env.get("LAB_SCENARIOS_DIR"):
        return Path(env["LAB_SCENARIOS_DIR"])
    checkout = Path(__file__).resolve().parents[2] / "toxics"
    return checkout if checkout.is_dir() else None


class Player:
    """At most one scenario playing at a time, within the running session."""

    def __init__(self, api: FaultAPI, sessions: Sessions, directory: Path | None) -> None:
        from lab.webui.faults import FaultRequestError

        self._request_error = FaultRequestError
        self.api = api
        self.sessions = sessions
        self.directory = directory
        self.journal = FaultJournal(id_prefix="played-", source=SOURCE)  # the nemesis records, not this
        self.injector = copy.copy(api.injector)
        self.injector.journal = self.journal
        self.nemesis: Nemesis | None = None
        self.playing: dict[str, Any] | None = None
        self._plays = itertools.count(1)
        self._lock = threading.Lock()

    def scenarios(self) -> list[dict[str, Any]]:
        """The shipped scenarios: file, name, description, planned faults (unreadable ones say why)."""
        from lab.scenario import ScenarioError, load_scenario, plan_timeline

        if self.directory is None:
            return []
        found = []
        for path in sorted(self.directory.glob("*.yml")):
            try:
                scenario = load_scenario(path)
                faults = len(plan_timeline(scenario).faults)
                found.append(
                    {"file": path.name, "name": scenario.name, "description": scenario.description,
                     "duration": scenario.load.duration, "faults": faults}
                )  # fmt: skip
            except (ScenarioError, ValueError) as exc:
                found.append({"file": path.name, "error": str(exc)})
        return found

    def play(self, file: str) -> dict[str, Any]:
        from lab.faults.nemesis import MonotonicClock, Nemesis
        from lab.run.manifest import plan_rows
        from lab.scenario import Plan, ScenarioError, load_scenario, plan_timeline

        session = self.sessions.current
        if session is None:
            raise self._request_error("no session: start a swarm first, then play a scenario beside it")
        if self.directory is None or Path(file).name != file or not (self.directory / file).is_file():
            known = ", ".join(s["file"] for s in self.scenarios()) or "none (LAB_SCENARIOS_DIR)"
            raise self._request_error(f"no shipped scenario {file!r}; known: {known}")
        try:
            scenario = load_scenario(self.directory / file)
            plan = plan_timeline(scenario)
        except (ScenarioError, ValueError) as exc:
            raise self._request_error(str(exc)) from None
        # The scenario's providers stand for this lab's in their order (primary → p1, ...).
        ours = list(self.api.providers)
        theirs = [p.id for p in scenario.topology.providers]
        mapping = {"gateway": "gateway", **dict(zip(theirs, ours, strict=False))}
        if set(theirs) <= set(ours):
            mapping = {"gateway": "gateway", **{p: p for p in theirs}}
        strangers = sorted({f.target for f in plan.faults} - set(mapping))
        if strangers:
            raise self._request_error(
                f"{file}: its faults target {', '.join(strangers)}; this lab has {len(ours)} providers "
                f"({', '.join(ours)}), standing for the scenario's first {len(ours)} "
                f"({', '.join(theirs[: len(ours)])})"
            )
        with self._lock:
            if self.nemesis is not None and not self.nemesis.done:
                raise self._request_error(
                    f"{self.playing and self.playing['file']} is playing: stop it first"
                )
            play_id = f"play{next(self._plays)}"
            plan = Plan(
                duration=plan.duration,
                faults=tuple(
                    dataclasses.replace(f, fault_id=f"{play_id}-{f.fault_id}", target=mapping[f.target])
                    for f in plan.faults
                ),
                skipped=plan.skipped,
            )
            started = time.time()
            self.playing = {
                "play_id": play_id,
                "file": file,
                "scenario": scenario.name,
                "at": started,
                "offset_s": round(started - float(session.manifest["started"]), 3),
                "duration": plan.duration,
                "plan": plan_rows(plan),
                "providers": {theirs_id: mapping[theirs_id] for theirs_id in theirs if theirs_id in mapping},
                "note": "only the fault timeline is played: the load and the providers are the lab's own",
            }
            session.save(played=[*session.manifest.get("played", []), self.playing])
            self.nemesis = Nemesis(
                plan, self.injector, self.sessions.record, clock=MonotonicClock(), source=SOURCE
            )
            self.nemesis.start()
        return {"play_id": play_id, "faults": len(plan.faults), "duration": plan.duration}

    def stop(self) -> None:
        """Stop the timeline and lift what it applied (end events into the session)."""
        with self._lock:
            nemesis, self.nemesis = self.nemesis, None
        if nemesis is not None:
            nemesis.stop()

    def active(self) -> list[Fault]:
        return self.journal.active()

    def state(self) -> dict[str, Any] | None:
        nemesis, playing = self.nemesis, self.playing
        if nemesis is None or playing is None:
            return None
        return {
            "play_id": playing["play_id"],
            "file": playing["file"],
            "elapsed": round(nemesis.clock.now(), 1),
            "duration": playing["duration"],
            "done": nemesis.done,
            "applied": nemesis.summary.applied,
            "failed": nemesis.summary.failed,
        }
