"""One `lab run`, in order: prepare (everything checked before a container starts), create the run
directory, images, lab, observers and Locust, the nemesis beside the load, the live view; then faults
lifted, Locust stopped, the lab torn down, the analysis.

Fault offsets count from the moment Locust reports the load started (its `test_start`). Everything
started is stopped on every path: the end of the load, an error, a run record that cannot be written
(the disk is full), Ctrl-C or SIGTERM. Exit codes are the CLI's (see lab.cli): 0 every SLO held, 1 an
SLO missed, 2 bad input, 3 the lab failed, 4 INCOMPLETE (the record is not whole: records lost, the load
cut short, a fault not applied; see lab.analysis.completeness), 130 interrupted (INCOMPLETE too: the
terminal says so, and `lab report` on its record exits 4).

The manifest's `outcome`: running (until the end: a killed run keeps it), completed, interrupted,
record_lost (a writer of the record failed: `record_failure` says which), failed (the lab's own failure).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.markup import escape

from lab.cli import (
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_LAB_FAILED,
    EXIT_OK,
    EXIT_VERDICT_FAILED,
)
from lab.record import RunDir, new_run_id
from lab.run.errors import BadInput, LabFailed, RecordFailed
from lab.run.locust_process import LocustProcess
from lab.run.manifest import DEFAULT_OUT, git_revision, image_ids, machine, plan_rows, versions
from lab.scenario import Plan, Scenario, ScenarioError, format_duration, load_scenario, plan_timeline
from lab.scenario.loader import with_overrides
from lab.scenario.topology import ScenarioTopologyError, to_topology_spec

if TYPE_CHECKING:
    from rich.console import Console

    from lab.faults.nemesis import Nemesis
    from lab.topology import Lab, TopologySpec

LOAD_START_TIMEOUT_S = 90.0
GRACE_S = 30.0  # past the scenario's duration before Locust is stopped regardless
# Space kept in the run directory so the manifest can still say how the run ended when the disk fills.
RESERVE = ".reserve"
RESERVE_BYTES = 1 << 20


@dataclass
class RunOptions:
    scenario: Path
    duration: float | None = None
    users: int | None = None
    gateway: str | None = None
    seed: int | None = None
    out: Path = DEFAULT_OUT
    workers: int = 1
    report: bool = True
    gateway_vars: dict[str, Any] = field(default_factory=dict)
    gateway_url: str | None = None  # a gateway the user runs, in front of the `lab_id` lab's providers
    lab_id: str | None = None


@dataclass
class Prepared:
    scenario: Scenario
    plan: Plan
    topology: TopologySpec


def prepare(options: RunOptions) -> Prepared:
    """The scenario with its overrides, its plan and the lab's topology; BadInput on any problem."""
    source = str(options.scenario)
    try:
        scenario = with_overrides(
            load_scenario(options.scenario),
            source,
            duration=options.duration,
            users=options.users,
            seed=options.seed,
        )
        topology = to_topology_spec(scenario, options.gateway, source, options.gateway_vars)
        check_gateway(scenario, topology)
    except (ScenarioError, ScenarioTopologyError) as exc:
        raise BadInput(str(exc)) from None
    if options.workers < 1:
        raise BadInput("--workers must be at least 1")
    plan = plan_timeline(scenario)
    if options.gateway_url is not None:
        check_external(options, plan)
    return Prepared(scenario, plan, topology)


def check_external(options: RunOptions, plan: Plan) -> None:
    """An external gateway (--gateway-url) is the user's process: the lab can neither start, kill, pause
    nor squeeze it, nor read breakers it does not publish. BadInput before anything starts."""
    from urllib.parse import urlsplit

    url = urlsplit(options.gateway_url or "")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise BadInput(f"--gateway-url {options.gateway_url!r}: expected http://127.0.0.1:PORT/PATH")
    if options.lab_id is None:
        raise BadInput(
            "--gateway-url needs --lab RUN_ID: the `lab up --expose-providers` lab it is pointed at"
        )
    for fault in plan.faults:
        if fault.target == "gateway":
            raise BadInput(
                f"{options.scenario}: fault {fault.name} ({fault.kind}) targets the gateway, which is "
                f"external (--gateway-url): the lab cannot do that to a process it did not start; "
                "remove the fault or run the gateway through an adapter"
            )


def check_gateway(scenario: Scenario, topology: TopologySpec) -> None:
    """What the gateway's adapter must support for this scenario, and its configuration rendered once for
    a lab of this shape (template errors name the line): ScenarioTopologyError before anything starts."""
    from lab.topology import SpecError
    from lab.topology.gateway_config import render_gateway_config
    from lab.topology.ports import plan_ports

    gateway = topology.gateway
    if scenario.load.strategy is not None and gateway.paths.strategy is None:
        raise ScenarioTopologyError(
            f"load.strategy: the {gateway.name} gateway ({gateway.source}) has no strategy routes "
            "(paths.strategy); leave the strategy out"
        )
    try:
        render_gateway_config(
            topology, plan_ports(topology, allocate=lambda n: list(range(20000, 20000 + n)))
        )
    except SpecError as exc:
        raise ScenarioTopologyError(str(exc)) from None


class Run:
    """One `lab run`: owns the run directory and its manifest, and tears down what it started."""

    def __init__(self, options: RunOptions, prepared: Prepared, console: Console) -> None:
        self.options = options
        self.prepared = prepared
        self.console = console
        self.scenario = prepared.scenario
        self.run_id = new_run_id(self.scenario.name)
        self.run_dir = create_run_dir(options.out, self.run_id)
        self.manifest: dict[str, Any] = {
            "run_id": self.run_id,
            "scenario": self.scenario.model_dump(mode="json"),
            "scenario_file": str(options.scenario),
            "seed": self.scenario.seed,
            "overrides": {
                "duration": options.duration,
                "users": options.users,
                "seed": options.seed,
                "gateway": options.gateway,
                "gateway_vars": options.gateway_vars,
                "workers": options.workers,
            },
            "plan": plan_rows(prepared.plan),
            "command": sys.argv,
            "versions": versions(),
            "git": git_revision(),
            "machine": machine(),
            "gateway": gateway_record(prepared.topology.gateway),
            "outcome": "running",
            "pid": os.getpid(),  # with the hostname: `lab report` tells a killed run from a running one
            "hostname": socket.gethostname(),
            "started": None,
            "ended": None,
        }
        try:
            self.run_dir.write_manifest(self.manifest)
            (self.run_dir.path / RESERVE).write_bytes(b"\0" * RESERVE_BYTES)
        except OSError as exc:  # --out is there but cannot take a file (read-only, full)
            shutil.rmtree(self.run_dir.path, ignore_errors=True)
            raise BadInput(
                f"--out {options.out}: cannot write the run record: {exc.strerror or exc}"
            ) from None

    def save(self, **fields: Any) -> None:
        """Update the manifest; a failed write is noted (the run stops on it), the last good one kept. On
        a full disk the reserve is given up once, so the manifest can still say how the run ended."""
        self.manifest.update(fields)
        try:
            self.run_dir.write_manifest(self.manifest)
        except OSError as exc:
            self.run_dir.failure.note(self.run_dir.manifest_path, exc)
            if exc.errno == errno.ENOSPC and self.release_reserve():
                with contextlib.suppress(OSError):
                    self.run_dir.write_manifest(self.manifest)

    def release_reserve(self) -> bool:
        """Remove the reserve file; True if it was there."""
        try:
            (self.run_dir.path / RESERVE).unlink()
        except OSError:
            return False
        return True

    def progress(self, message: str) -> None:
        self.console.print(f"[dim]lab:[/] {escape(message)}", highlight=False)

    def execute(self) -> None:
        from lab.images import ensure_images
        from lab.topology import Lab

        started = time.time()
        if self.options.gateway_url is not None:
            self.execute_external(started)
            return
        images = ensure_images(progress=self.progress)
        self.save(images=image_ids(images), lab_started=started)
        with Lab(self.prepared.topology, images=images, run_id=self.run_id, progress=self.progress) as lab:
            gateway_image = {"ref": lab.gateway_image, "id": lab.image_id(lab.gateway_image or "")}
            self.save(
                images={**self.manifest["images"], "gateway": gateway_image},
                gateway={**self.manifest["gateway"], "image": gateway_image},
                endpoints=lab.endpoints.model_dump(mode="json"),
                lab_timings=dict(lab.timings),
            )
            self.under_load(lab)
        self.check_record()

    def execute_external(self, started: float) -> None:
        """Load and faults through the user's gateway, in front of a `lab up --expose-providers` lab's
        providers: the providers are set to the scenario's behaviours and reset first; the lab stays up."""
        from lab.topology import Lab

        assert self.options.gateway_url is not None and self.options.lab_id is not None
        lab = Lab.attach(self.options.lab_id, gateway_url=self.options.gateway_url, progress=self.progress)
        try:
            lab_ids = [p.id for p in lab.spec.providers]
            wanted = [p.id for p in self.prepared.topology.providers]
            if lab_ids != wanted:
                raise BadInput(
                    f"lab {lab.run_id} has providers {', '.join(lab_ids)}; the scenario declares "
                    f"{', '.join(wanted)} (start it with: lab up --expose-providers --scenario FILE)"
                )
            lab.faults.lift_all()
            lab.toxiproxy.reset()
            for provider in self.prepared.topology.providers:
                url = lab.endpoints.providers[provider.id].control_url
                lab.control.set_behavior(url, provider.behavior)
                lab.control.reset_provider(url)
            lab.wait_external_gateway(self.prepared.topology.startup_timeout_s)
            gateway = {**self.manifest["gateway"], "external": True, "url": self.options.gateway_url}
            gateway["image"] = {"ref": None, "id": None}
            self.save(
                lab_started=started,
                gateway=gateway,
                lab_id=lab.run_id,
                endpoints=lab.endpoints.model_dump(mode="json"),
            )
            self.under_load(lab)
        finally:
            lab.stop()
        self.check_record()

    def check_record(self) -> None:
        """RecordFailed when a writer of the run record failed (the run stopped on it)."""
        if self.run_dir.failure.is_set():
            raise RecordFailed(
                f"the run record cannot be written: {self.run_dir.failure.describe()}; the run was stopped, "
                "its faults lifted and the lab torn down"
            )

    def ran_line(self) -> str:
        """How long the load ran, of how long planned (for the terminal's INCOMPLETE line)."""
        started = self.manifest.get("started")
        planned = f" of {format_duration(self.prepared.plan.duration)} planned"
        if not isinstance(started, int | float):
            return "before the load started"
        ended = self.manifest.get("ended") or time.time()
        return f"after {ended - started:.1f} s{planned}"

    def under_load(self, lab: Lab) -> None:
        from lab.faults.nemesis import MonotonicClock, Nemesis
        from lab.run.live import LiveView, RecordTail, snapshot
        from lab.run.observers import GatewayEventsRecorder, MetricsPoller, Poller, ProviderStatsPoller
        from lab.topology.cleanup import TerminationGuard

        endpoints = lab.endpoints
        observers: list[Poller] = [
            ProviderStatsPoller(self.run_dir, {pid: p.control_url for pid, p in endpoints.providers.items()}),
            MetricsPoller(self.run_dir, f"{endpoints.gateway_url}/metrics"),
        ]
        if endpoints.gateway_events_url:
            from lab.topology.event_stream import GatewayEventStream

            url = endpoints.gateway_events_url
            observers.append(GatewayEventsRecorder(self.run_dir, lambda: GatewayEventStream(url).start()))
        locust = LocustProcess(self.run_dir.path, self.scenario, endpoints, self.options.workers)
        faults_log = self.run_dir.event_log("faults")
        failure = self.run_dir.failure
        nemesis: Nemesis | None = None
        duration = self.prepared.plan.duration
        try:
            for observer in observers:
                observer.start()
            locust.start()
            self.save(locust={"command": locust.command, "workers": self.options.workers})
            load_started = locust.wait_started(LOAD_START_TIMEOUT_S)
            self.save(started=load_started)
            clock = MonotonicClock(time.monotonic() - (time.time() - load_started))
            nemesis = Nemesis(self.prepared.plan, lab.faults, faults_log.append, clock=clock)
            nemesis.start()
            tail = RecordTail(self.run_dir.path)
            running = nemesis
            with LiveView(f"{self.scenario.name} · {self.run_id}", console=self.console) as view:
                while not locust.wait(1.0) and clock.now() < duration + GRACE_S and not failure.is_set():
                    view.show(snapshot(tail, clock.now(), duration, lambda: describe_active(running)))
                view.show(snapshot(tail, min(clock.now(), duration), duration, lambda: []))
            self.save(ended=time.time())
        finally:
            with TerminationGuard.deferred():  # a second Ctrl-C must not leave faults applied
                summary = nemesis.stop() if nemesis is not None else None
                exit_code = locust.stop()
                for observer in observers:
                    observer.close()
                faults_log.close()
            self.save(
                ended=self.manifest.get("ended") or time.time(),
                nemesis=summary.to_dict() if summary else None,
                locust={**self.manifest.get("locust", {}), "exit_code": exit_code},
                observers={o.name: o.report() for o in observers},
            )


def gateway_record(gateway: Any) -> dict[str, Any]:
    """What the manifest says of the gateway under test: the adapter, its variables and its rendered
    paths. `image` is what actually ran, added once the lab has resolved it (until then, and for a run
    that never got that far, its ref and id are None); `declared_image` is what the adapter names."""
    return {
        "adapter": gateway.name,
        "adapter_file": gateway.source,
        "description": gateway.description,
        "tested": gateway.tested,
        "admin_api": gateway.admin_api,
        "variables": gateway.values,
        "external": False,
        "image": {"ref": None, "id": None},
        "declared_image": gateway.image or (f"lab-{gateway.build}" if gateway.build else None),
        "spec": gateway.model_dump(mode="json"),
    }


def create_run_dir(out: Path, run_id: str) -> RunDir:
    """The run's directory under `--out`; BadInput (one line) when it cannot be made."""
    try:
        return RunDir.create(out, run_id)
    except OSError as exc:  # read-only, not a directory, no such filesystem, full
        raise BadInput(f"--out {out}: cannot create the run directory: {exc.strerror or exc}") from None


def describe_active(nemesis: Nemesis) -> list[str]:
    now = time.time()
    return [
        f"{a.planned.fault_id}: {a.planned.kind} on {a.planned.target} ({now - a.since:.0f}s)"
        for a in nemesis.active()
    ]


def analyse(run_dir: Path, console: Console) -> str | None:
    """Run `lab report RUN_DIR` when the analysis is installed: "pass", "fail", "incomplete", "error" (it
    did not produce a verdict), or None (no analysis). The verdict is read from the summary it writes,
    since a crashing Python also exits with 1."""
    try:
        import lab.analysis.cli  # noqa: F401
    except ImportError:
        console.print("[yellow]no analysis installed (pip install 'lab[analysis]'): no verdict[/]")
        return None
    code = subprocess.run([sys.executable, "-m", "lab", "report", str(run_dir)], check=False).returncode
    try:
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        verdict = summary.get("verdict") or ("pass" if summary["slo"]["passed"] is True else "fail")
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        verdict = None
    expected = {"pass": EXIT_OK, "fail": EXIT_VERDICT_FAILED, "incomplete": EXIT_INCOMPLETE}
    if verdict not in expected or code != expected[verdict]:
        again = escape(f"lab report {run_dir}")
        console.print(f"[bold red]the analysis failed[/] (exit {code}); re-run it with: {again}")
        return "error"
    return str(verdict)


def execute(options: RunOptions, console: Console) -> int:
    """The whole run; the exit code."""
    from lab.images import BadImageMode, ImageError
    from lab.topology import LabError
    from lab.topology.cleanup import termination_guard

    def error(prefix: str, message: str) -> None:
        console.print(f"[bold red]{prefix}[/] {escape(message)}", highlight=False)

    try:
        prepared = prepare(options)
        scenario = prepared.scenario
        console.print(
            escape(
                f"{scenario.name}: {len(scenario.topology.providers)} providers, "
                f"{scenario.load.users} users, {format_duration(prepared.plan.duration)}, "
                f"{len(prepared.plan.faults)} planned faults, seed {scenario.seed}"
            ),
            highlight=False,
        )
        run = Run(options, prepared, console)
    except BadInput as exc:
        error("error:", str(exc))
        return EXIT_BAD_INPUT
    code = EXIT_OK
    try:
        with termination_guard:  # SIGTERM is a Ctrl-C from here on, also while the images build
            run.execute()
        run.save(outcome="completed")
    except KeyboardInterrupt:
        run.save(outcome="interrupted")
        run.release_reserve()
        console.print(
            f"[bold yellow]INCOMPLETE:[/] interrupted {escape(run.ran_line())}; no verdict "
            f"(`lab report` on it says INCOMPLETE); what was recorded is in {escape(str(run.run_dir.path))}"
        )
        return EXIT_INTERRUPTED
    except RecordFailed as exc:
        run.save(outcome="record_lost", record_failure=run.run_dir.failure.describe(), error=str(exc))
        run.release_reserve()
        error("INCOMPLETE:", str(exc))
        console.print(escape(f"run record: {run.run_dir.path}"), highlight=False)
        return EXIT_INCOMPLETE
    except (BadImageMode, BadInput) as exc:
        run.save(outcome="failed", error=str(exc))
        error("error:", str(exc))
        return EXIT_BAD_INPUT
    except (LabFailed, LabError, ImageError, OSError) as exc:
        message = str(exc) if not isinstance(exc, OSError) else f"{exc.strerror or exc} ({exc.filename})"
        run.save(outcome="failed", error=message)
        error("the lab failed:", message)
        code = EXIT_LAB_FAILED
    except Exception as exc:  # a bug or an unforeseen failure: still the lab's, never a verdict
        run.save(outcome="failed", error=f"{type(exc).__name__}: {exc}")
        console.print_exception()
        code = EXIT_LAB_FAILED
    run.release_reserve()
    if code == EXIT_OK and options.report:
        verdict = analyse(run.run_dir.path, console)
        if verdict is not None:
            run.save(verdict=verdict)
        code = {
            "fail": EXIT_VERDICT_FAILED,
            "incomplete": EXIT_INCOMPLETE,
            "error": EXIT_LAB_FAILED,
        }.get(verdict or "", EXIT_OK)
    console.print(escape(f"run record: {run.run_dir.path}"), highlight=False)
    return code
