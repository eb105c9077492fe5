"""`lab run SCENARIO`: one fault-injection experiment, end to end, leaving a run record.

    validate -> images -> lab up -> observers + Locust (own process) -> nemesis beside the load
    -> live view -> faults lifted, Locust stopped, lab torn down -> analysis -> run dir and verdict

Fault offsets count from the moment Locust reports the load started (its `test_start`). Everything
started is stopped on every path: the end of the load, an error, Ctrl-C or SIGTERM. Exit codes are the
CLI's (see lab.cli): 0 every SLO held, 1 an SLO missed, 2 bad input, 3 the lab failed, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import orjson
from pydantic import ValidationError

from lab import __version__
from lab.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_LAB_FAILED, EXIT_OK, EXIT_VERDICT_FAILED
from lab.load import LOCUSTFILE
from lab.scenario import Plan, Scenario, ScenarioError, format_duration, load_scenario, parse_duration
from lab.scenario.timeline import plan_timeline

PROJECT = Path(__file__).resolve().parents[1]
STARTED_MARKER = "locust/started.json"  # written by locustfiles/scenario.py at Locust's test_start
LOAD_START_TIMEOUT_S = 90.0
GRACE_S = 30.0  # past the scenario's duration before Locust is stopped regardless
LOCUST_STOP_TIMEOUT_S = 20.0


class BadInput(ValueError):
    """A problem with what was asked for, found before anything started."""


class LabFailed(RuntimeError):
    """The lab itself failed (images, containers, Locust)."""


@dataclass
class RunOptions:
    scenario: Path
    duration: float | None = None
    users: int | None = None
    gateway: str | None = None
    seed: int | None = None
    out: Path = PROJECT / "reports"
    workers: int = 1
    report: bool = True


@dataclass
class Prepared:
    scenario: Scenario
    plan: Plan
    topology: Any  # lab.topology.TopologySpec
    manifest: dict[str, Any] = field(default_factory=dict)


# --- preparing: everything that can be checked before a container starts -----------------------------------


def prepare(options: RunOptions) -> Prepared:
    """The scenario with its overrides, its plan and the lab's topology; BadInput on any problem."""
    try:
        scenario = load_scenario(options.scenario).with_overrides(
            duration=options.duration, users=options.users, seed=options.seed
        )
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None
    except ValidationError as exc:  # an override out of range
        raise BadInput(f"{options.scenario}: overrides: {exc.errors()[0]['msg']}") from None
    if options.workers < 1:
        raise BadInput("--workers must be at least 1")
    return Prepared(
        scenario, plan_timeline(scenario), lab_topology(scenario, options.gateway, str(options.scenario))
    )


def lab_topology(scenario: Scenario, gateway: str | None, source: str) -> Any:
    """The scenario's topology as the lab's TopologySpec (`--gateway` replaces the scenario's gateway)."""
    from lab.provider.specs import dump_behavior
    from lab.topology import ProviderSpec, SpecError, TopologySpec, load_gateway_spec

    topology = scenario.topology
    try:
        gateway_spec = load_gateway_spec(gateway or topology.gateway.spec)
    except SpecError as exc:
        raise BadInput(
            f"{source}: topology.gateway.spec: {exc}" if gateway is None else f"--gateway: {exc}"
        ) from None
    settings = {**gateway_spec.settings, **topology.gateway.settings}
    if settings and gateway_spec.kind == "reference":
        from lab.gateway.config import GatewaySettings

        try:
            GatewaySettings.model_validate(settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"topology.gateway.settings.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise BadInput(f"{source}: {problems}") from None
    providers = [
        ProviderSpec(
            id=p.id,
            behavior=dump_behavior(p.behavior),
            block_time=p.block_time or topology.block_time,
            seed=zlib.crc32(f"{scenario.seed}/{p.id}".encode()),  # reproducible behaviours per scenario seed
        )
        for p in topology.providers
    ]
    try:
        return TopologySpec(
            chain=topology.chain,
            chain_id=topology.chain_id,
            providers=providers,
            gateway=gateway_spec.model_copy(update={"settings": settings}),
        )
    except ValidationError as exc:
        raise BadInput(f"{source}: topology: {exc.errors()[0]['msg']}") from None


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"[:54] + f"-{uuid.uuid4().hex[:6]}"


# --- the manifest -------------------------------------------------------------------------------------------


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"revision": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"lab": __version__, "python": platform.python_version()}
    for package in ("locust", "pydantic", "pyarrow", "docker", "testcontainers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine() -> dict[str, Any]:
    memory = None
    with contextlib.suppress(OSError, ValueError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_bytes": memory,
    }


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "fault_id": f.fault_id,
            "name": f.name,
            "kind": f.kind,
            "target": f.target,
            "start": f.start,
            "end": f.end,
        }
        for f in plan.faults
    ] + [{"name": s.name, "start": s.start, "skipped": s.reason} for s in plan.skipped]


def image_ids(images: Any) -> dict[str, dict[str, str | None]]:
    import docker

    client = docker.from_env()
    found: dict[str, dict[str, str | None]] = {}
    try:
        for name in ("provider", "gateway", "toxiproxy", "locust"):
            ref = getattr(images, name)
            try:
                found[name] = {"ref": ref, "id": client.images.get(ref).id}
            except Exception:
                found[name] = {"ref": ref, "id": None}
        found["docker"] = {"ref": "server", "id": client.version().get("Version")}
    finally:
        client.close()
    return found


# --- Locust ------------------------------------------------------------------------------------------------


class LocustProcess:
    """Locust headless in its own process group (it monkey-patches with gevent; never imported here)."""

    def __init__(self, run_dir: Path, scenario: Scenario, endpoints: Any, workers: int) -> None:
        self.run_dir = run_dir
        self.log_path = run_dir / "locust" / "locust.log"
        strategy = scenario.load.strategy
        rpc_url = endpoints.rpc_url(strategy=strategy) if strategy else endpoints.gateway_rpc_url
        self.env = {
            **os.environ,
            "LAB_RUN_DIR": str(run_dir),
            "LAB_LOAD": scenario.load.model_dump_json(),
            "LAB_CHAIN": scenario.topology.chain,
            "LAB_RPC_PATH": rpc_url.removeprefix(endpoints.gateway_url),
            "LAB_WS_URL": endpoints.gateway_ws_url,
            "LAB_SEED": str(scenario.seed),
            "LAB_TOXIPROXY_URL": endpoints.toxiproxy_url,
            "LAB_PROVIDERS": provider_env(endpoints),
        }
        self.command = [
            sys.executable, "-m", "locust",
            "-f", os.environ.get("LAB_LOCUSTFILE", str(LOCUSTFILE)),
            "--headless", "-H", endpoints.gateway_url,
            "--exit-code-on-error", "0",  # failures under faults are the point; the analysis judges
            "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        if workers > 1:
            self.command += ["--processes", str(workers)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocustProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the orchestrator only; it stops Locust in order
            )  # fmt: skip
        return self

    def wait_started(self, timeout: float) -> float:
        """Unix time at which the load started (Locust's test_start); LabFailed if it never does."""
        marker = self.run_dir / STARTED_MARKER
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if marker.exists():
                with contextlib.suppress(orjson.JSONDecodeError, OSError, KeyError):
                    return float(orjson.loads(marker.read_bytes())["ts"])
            if self.process.poll() is not None:
                raise LabFailed(
                    f"Locust exited with {self.process.returncode} before the load started:\n{self.tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.1)  # the poll interval: returns early if Locust exits
        raise LabFailed(f"Locust did not start the load within {timeout:.0f}s:\n{self.tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for Locust to exit; True once it has."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> int | None:
        """SIGTERM to the whole group (Locust shuts down gracefully, flushing its records), then SIGKILL."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            if not self.wait(LOCUST_STOP_TIMEOUT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.wait(5)
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no Locust log)"


def provider_env(endpoints: Any) -> str:
    """LAB_PROVIDERS for the web UI's Faults tab: `id=http_proxy,ws_proxy,control_url;...`."""
    return ";".join(
        f"{p.id}={p.proxies.get('http', '')},{p.proxies.get('ws', '')},{p.control_url}"
        for p in endpoints.providers.values()
    )


# --- the run -----------------------------------------------------------------------------------------------


class Run:
    """One `lab run`: owns the run directory and its manifest, and tears down what it started."""

    def __init__(self, options: RunOptions, prepared: Prepared, console: Any) -> None:
        from lab.record import RunDir

        self.options = options
        self.prepared = prepared
        self.console = console
        self.scenario = prepared.scenario
        self.run_id = new_run_id(self.scenario.name)
        self.run_dir = RunDir.create(options.out, self.run_id)
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
                "workers": options.workers,
            },
            "plan": plan_rows(prepared.plan),
            "command": sys.argv,
            "versions": versions(),
            "git": git_revision(),
            "machine": machine(),
            "gateway": prepared.topology.gateway.model_dump(mode="json"),
            "outcome": "running",
            "started": None,
            "ended": None,
        }
        self.save()

    def save(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.run_dir.write_manifest(self.manifest)

    def progress(self, message: str) -> None:
        self.console.print(f"[dim]lab:[/] {message}", highlight=False)

    def execute(self) -> None:
        from lab.images import ensure_images
        from lab.topology import Lab

        started = time.time()
        images = ensure_images(progress=self.progress)
        self.save(images=image_ids(images), lab_started=started)
        with Lab(self.prepared.topology, images=images, run_id=self.run_id, progress=self.progress) as lab:
            self.save(endpoints=lab.endpoints.model_dump(mode="json"), lab_timings=dict(lab.timings))
            self.under_load(lab)

    def under_load(self, lab: Any) -> None:
        from lab.cleanup import TerminationGuard
        from lab.live import LiveView, RecordTail, snapshot
        from lab.nemesis import InjectorTarget, MonotonicClock, Nemesis
        from lab.observers import GatewayEventsRecorder, MetricsPoller, ProviderStatsPoller

        endpoints = lab.endpoints
        observers: list[Any] = [
            ProviderStatsPoller(self.run_dir, {pid: p.control_url for pid, p in endpoints.providers.items()}),
            MetricsPoller(self.run_dir, f"{endpoints.gateway_url}/metrics"),
        ]
        if endpoints.gateway_events_url:
            from lab.gateway_events import GatewayEventStream

            url = endpoints.gateway_events_url
            observers.append(GatewayEventsRecorder(self.run_dir, lambda: GatewayEventStream(url).start()))
        locust = LocustProcess(self.run_dir.path, self.scenario, endpoints, self.options.workers)
        faults_log = self.run_dir.event_log("faults")
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
            nemesis = Nemesis(self.prepared.plan, InjectorTarget(lab.faults), faults_log.append, clock=clock)
            nemesis.start()
            tail = RecordTail(self.run_dir.path)
            with LiveView(f"{self.scenario.name} · {self.run_id}", console=self.console) as view:
                while not locust.wait(1.0) and clock.now() < duration + GRACE_S:
                    view.show(snapshot(tail, clock.now(), duration, lambda: _describe_active(nemesis)))
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


def _describe_active(nemesis: Any) -> list[str]:
    now = time.time()
    return [
        f"{a.planned.fault_id}: {a.planned.kind} on {a.planned.target} ({now - a.since:.0f}s)"
        for a in nemesis.active()
    ]


def analyse(run_dir: Path, console: Any) -> str | None:
    """Run `lab report RUN_DIR` when the analysis is installed: "pass", "fail", "error" (it did not
    produce a verdict), or None (no analysis). The verdict is read from the summary it writes, since a
    crashing Python also exits with 1."""
    try:
        import lab.analysis.cli  # noqa: F401
    except ImportError:
        console.print("[yellow]no analysis installed (pip install 'lab[analysis]'): no verdict[/]")
        return None
    code = subprocess.run([sys.executable, "-m", "lab", "report", str(run_dir)], check=False).returncode
    try:
        passed = orjson.loads((run_dir / "summary.json").read_bytes())["slo"]["passed"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        passed = None
    if code not in (EXIT_OK, EXIT_VERDICT_FAILED) or not isinstance(passed, bool):
        console.print(f"[bold red]the analysis failed[/] (exit {code}); re-run it with: lab report {run_dir}")
        return "error"
    return "pass" if passed else "fail"


def execute(options: RunOptions, console: Any) -> int:
    from lab.cleanup import termination_guard
    from lab.images import BadImageMode, ImageError
    from lab.topology import LabError

    try:
        prepared = prepare(options)
    except BadInput as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_BAD_INPUT
    scenario = prepared.scenario
    console.print(
        f"[bold]{scenario.name}[/]: {len(scenario.topology.providers)} providers, "
        f"{scenario.load.users} users, {format_duration(prepared.plan.duration)}, "
        f"{len(prepared.plan.faults)} planned faults, seed {scenario.seed}",
        highlight=False,
    )
    run = Run(options, prepared, console)
    code = EXIT_OK
    try:
        with termination_guard:  # SIGTERM is a Ctrl-C from here on, also while the images build
            run.execute()
        run.save(outcome="completed")
    except KeyboardInterrupt:
        run.save(outcome="interrupted")
        console.print(f"[yellow]interrupted[/]; what was recorded is in {run.run_dir.path}")
        return EXIT_INTERRUPTED
    except BadImageMode as exc:
        run.save(outcome="failed", error=str(exc))
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_BAD_INPUT
    except (LabFailed, LabError, ImageError) as exc:
        run.save(outcome="failed", error=str(exc))
        console.print(f"[bold red]the lab failed:[/] {exc}", highlight=False)
        code = EXIT_LAB_FAILED
    except Exception as exc:  # a bug or an unforeseen failure: still the lab's, never a verdict
        run.save(outcome="failed", error=f"{type(exc).__name__}: {exc}")
        console.print_exception()
        code = EXIT_LAB_FAILED
    if code == EXIT_OK and options.report:
        verdict = analyse(run.run_dir.path, console)
        if verdict is not None:
            run.save(verdict=verdict)
        code = {"fail": EXIT_VERDICT_FAILED, "error": EXIT_LAB_FAILED}.get(verdict or "", EXIT_OK)
    console.print(f"run record: {run.run_dir.path}", highlight=False)
    return code


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be positive")
    return seconds


@click.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--duration", callback=_duration, help="Run this long instead (e.g. 20s, 5m); faults keep their offsets."
)
@click.option("--users", type=click.IntRange(min=1), help="HTTP users instead of the scenario's.")
@click.option(
    "--gateway", "gateway", metavar="SPEC", help="Gateway profile (reference, lasso) or GatewaySpec file."
)
@click.option(
    "--seed", type=int, help="Seed instead of the scenario's (random targets, probabilities, behaviours)."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=PROJECT / "reports",
              show_default="reports/", help="Where the run directory goes.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Locust processes generating load (Locust's --processes).")  # fmt: skip
@click.option("--no-report", is_flag=True, help="Skip the analysis at the end.")
def run_command(
    scenario: Path,
    duration: float | None,
    users: int | None,
    gateway: str | None,
    seed: int | None,
    out: Path,
    workers: int,
    no_report: bool,
) -> None:
    """Run SCENARIO against a fresh lab and record everything under reports/<run-id>/.

    Exit codes: 0 every SLO held, 1 an SLO missed, 2 bad input, 3 the lab failed, 130 interrupted.
    """
    from rich.console import Console

    options = RunOptions(scenario, duration, users, gateway, seed, out, workers, report=not no_report)
    sys.exit(execute(options, Console(stderr=True, soft_wrap=True)))  # messages stay whole lines
