"""What a run's manifest.json says besides the scenario: the plan, the code, the images and the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lab import __version__
from lab.scenario import Plan

PROJECT = Path(__file__).resolve().parents[2]
# Run directories go to the checkout's reports/ (where `make lab` and the docs look), or, for an
# installed lab, to ./reports like the analysis commands' defaults.
DEFAULT_OUT = PROJECT / "reports" if (PROJECT / "pyproject.toml").is_file() else Path("reports")


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
    """Each of the lab's images: its reference and id as Docker has it (None when it cannot tell), and
    Docker's version. The lab's own gateway image is `reference_gateway`: `gateway` is set only to what
    actually ran (the run adds it once the gateway under test is resolved)."""
    import docker

    client = docker.from_env()
    found: dict[str, dict[str, str | None]] = {}
    try:
        for name, key in (
            ("provider", "provider"),
            ("gateway", "reference_gateway"),
            ("toxiproxy", "toxiproxy"),
            ("locust", "locust"),
        ):
            ref = getattr(images, name)
            try:
                found[key] = {"ref": ref, "id": client.images.get(ref).id}
            except Exception:
                found[key] = {"ref": ref, "id": None}
        found["docker"] = {"ref": "server", "id": client.version().get("Version")}
    finally:
        client.close()
    return found
