"""Whether a run's evidence is complete: only a run that ran its whole duration, applied every planned
fault and kept its whole record gets PASS or FAIL; any other run is INCOMPLETE, with its reasons.

Each reason has a `cause` (one of CAUSES) and a one-line `detail`:
- interrupted: `lab run` was interrupted (Ctrl-C, SIGTERM) — the manifest's outcome says so;
- killed: the manifest still says `running` (the lab process was killed, or the run is still going);
- record_lost: a writer of the run record failed (e.g. the disk is full), so records are missing;
- lab_failed: the lab itself failed during the run (the manifest's outcome `failed`, with its error);
- cut_short: the load ran for less than the planned duration, or the record stops before its end;
- load_failed: the load generator (Locust) exited with an error code;
- fault_not_applied: a planned fault could not be applied, or was never attempted.

The planned duration is the scenario's `load.duration` as run (overrides applied), from the manifest.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

CAUSES = (
    "interrupted",
    "killed",
    "record_lost",
    "lab_failed",
    "cut_short",
    "load_failed",
    "fault_not_applied",
)

# How much shorter than planned a run may be and still count as whole: Locust's run time and the lab's
# start/end marks differ by scheduling and shutdown, not by seconds.
DURATION_SLACK_S = 1.0
DURATION_SLACK_SHARE = 0.02
# How long before the planned end the last recorded request or head may be: a gateway that hangs every
# request still gets requests recorded (failed), so a silent tail means the load or its record stopped.
RECORD_TAIL_SLACK_S = 5.0
RECORD_TAIL_SLACK_SHARE = 0.10


@dataclass(frozen=True)
class Reason:
    cause: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def planned_duration(manifest: dict[str, Any]) -> float | None:
    """The load's planned duration in seconds (None: the manifest does not say)."""
    scenario = manifest.get("scenario")
    load = scenario.get("load") if isinstance(scenario, dict) else None
    value = load.get("duration") if isinstance(load, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def assess(
    manifest: dict[str, Any],
    *,
    ran_s: float,
    has_end: bool,
    last_record_s: float | None,
    failed_faults: list[dict[str, Any]],
    attempted_fault_ids: set[str],
) -> dict[str, Any]:
    """The completeness of one run: {"complete", "reasons": [{cause, detail}], "planned_s", "ran_s",
    "outcome"}. `ran_s`: seconds from the load's start to the run's end (or its last record when the
    manifest has no end); `last_record_s`: the last request or head, in seconds from the start (None: none);
    `attempted_fault_ids`: fault ids with a start or failed event in faults.jsonl."""
    planned = planned_duration(manifest)
    outcome = manifest.get("outcome")
    reasons: list[Reason] = []
    of_planned = f" of {planned:g} s planned" if planned is not None else ""
    if outcome == "interrupted":
        reasons.append(Reason("interrupted", f"the run was interrupted after {ran_s:.1f} s{of_planned}"))
    elif outcome == "running" or (outcome is None and not has_end):
        reasons.append(Reason("killed", _never_finished(manifest, ran_s, of_planned)))
    elif outcome == "record_lost" or manifest.get("record_failure"):
        what = manifest.get("record_failure") or manifest.get("error") or "a writer failed"
        reasons.append(Reason("record_lost", f"the run record could not be written: {what}"))
    elif outcome == "failed":
        reasons.append(Reason("lab_failed", f"the lab failed during the run: {manifest.get('error')}"))
    elif outcome is None:
        reasons.append(Reason("killed", "the manifest has no outcome: the run never finished"))
    elif outcome != "completed":
        reasons.append(Reason("lab_failed", f"the manifest's outcome is {outcome!r}, not 'completed'"))
    if planned is not None:
        slack = DURATION_SLACK_S + DURATION_SLACK_SHARE * planned
        if ran_s < planned - slack and not any(r.cause in ("interrupted", "killed") for r in reasons):
            reasons.append(Reason("cut_short", f"the load ran {ran_s:.1f} s of {planned:g} s planned"))
        tail = RECORD_TAIL_SLACK_S + RECORD_TAIL_SLACK_SHARE * planned
        if last_record_s is not None and last_record_s < min(ran_s, planned) - tail:
            reasons.append(
                Reason(
                    "cut_short",
                    f"the record stops at {last_record_s:.1f} s of {min(ran_s, planned):.1f} s: nothing was "
                    "recorded after it (the load or its record stopped)",
                )
            )
    exit_code = (manifest.get("locust") or {}).get("exit_code")
    if outcome == "completed" and isinstance(exit_code, int) and exit_code != 0:  # else the lab stopped it
        reasons.append(Reason("load_failed", f"Locust exited with code {exit_code}"))
    for fault in failed_faults:
        reasons.append(
            Reason(
                "fault_not_applied",
                f"fault {fault['fault_id']} ({fault['action']} → {fault['target']}) could not be applied: "
                f"{fault['error']}",
            )
        )
    for row in manifest.get("plan") or []:
        if not isinstance(row, dict) or row.get("skipped") or "fault_id" not in row:
            continue
        if str(row["fault_id"]) not in attempted_fault_ids:
            start = row.get("start")
            at = f" at {start:g} s" if isinstance(start, int | float) else ""
            reasons.append(
                Reason(
                    "fault_not_applied",
                    f"fault {row['fault_id']} ({row.get('kind')} → {row.get('target')}), planned{at}, was "
                    "never applied",
                )
            )
    return {
        "complete": not reasons,
        "reasons": [r.to_dict() for r in reasons],
        "planned_s": planned,
        "ran_s": ran_s,
        "outcome": outcome,
    }


def _never_finished(manifest: dict[str, Any], ran_s: float, of_planned: str) -> str:
    recorded = f"records reach {ran_s:.1f} s{of_planned}"
    pid, host = manifest.get("pid"), manifest.get("hostname")
    if isinstance(pid, int) and host == socket.gethostname() and _alive(pid):
        return f"the run is still going (lab run, pid {pid}); {recorded}"
    return f"the run never finished (its manifest still says running: the lab was killed?); {recorded}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summary_line(completeness: dict[str, Any]) -> str:
    """The reasons in one line, for the terminal and the top of every report."""
    return "; ".join(r["detail"] for r in completeness["reasons"])
