"""Build a session's report, as `lab report` does, in a process of its own (the web UI runs it with
`python -m lab.webui.report RUN_DIR`: pandas and matplotlib stay out of Locust's gevent process, and a
failure cannot take the web UI down). A session still running is reported as far as it is recorded,
and the report says so (rather than the "killed run?" guess of a run without an end time).

Exit codes as `lab report`'s: 0 written (every SLO held or none), 1 written (an SLO missed), 2 the record
is unreadable, 3 the report could not be written.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from lab.cli import EXIT_BAD_INPUT, EXIT_LAB_FAILED, EXIT_OK, EXIT_VERDICT_FAILED

NO_END = "the manifest has no end time"


def build(run_dir: Path) -> int:
    from lab.analysis.loading import RecordError, load_run
    from lab.analysis.report import write_report
    from lab.analysis.summary import analyse, recovery_settings

    try:
        run = load_run(run_dir)
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if run.manifest.get("ended") is None and run.manifest.get("outcome") == "running":
        so_far = time.strftime("%H:%M:%S", time.localtime(run.t0 + run.duration))
        warnings = [
            f"the session is still running: this report covers its record up to {so_far}"
            if w.startswith(NO_END)
            else w
            for w in run.warnings
        ]
        run = dataclasses.replace(run, warnings=warnings)
    analysis = analyse(run, recovery_settings(run, 10.0, 1.0, 30.0))
    try:
        write_report(analysis, run_dir)
    except OSError as exc:
        print(f"error: the report could not be written: {exc}", file=sys.stderr)
        return EXIT_LAB_FAILED
    return EXIT_OK if analysis.slo.passed else EXIT_VERDICT_FAILED


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.webui.report RUN_DIR", file=sys.stderr)
        return EXIT_BAD_INPUT
    return build(Path(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
