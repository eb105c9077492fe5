"""Real `pip wheel` runs: neither the lab wheel built for the images nor the project's own wheel carries
the Rust server's cargo output (`lab/images/toxiproxy/server/target/`, hundreds of MB once built)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lab.images import Layout, Shell, Sources
from lab.images.wheels import build_lab_wheel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path("lab/images/toxiproxy/server/target")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the project's packaging inputs with a cargo target directory like a real build's."""
    project = tmp_path / "checkout"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "lab", project / "lab", ignore=shutil.ignore_patterns("target", "__pycache__"))
    (project / TARGET / "release").mkdir(parents=True)
    (project / TARGET / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (project / TARGET / "release" / "toxiproxy").write_bytes(b"\x7fELF binary")
    return project


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_lab_wheel_for_the_images_has_no_image_sources(checkout: Path, tmp_path: Path) -> None:
    layout = Layout.checkout(checkout, cache=tmp_path / "cache")
    wheel = build_lab_wheel(
        layout.project,
        Sources.read(layout).lab,
        layout.cache,
        Shell(),
        progress=lambda _: None,
        clock=time.monotonic,
    )
    names = wheel_names(wheel)
    assert "lab/load/locustfile.py" in names
    assert "lab/topology/lab.py" in names
    assert [n for n in names if n.startswith("lab/images/")] == []


def test_the_projects_own_wheel_keeps_the_server_sources_but_not_its_target(
    checkout: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, checkout],
        check=True,
        timeout=240,
    )
    (wheel,) = out.glob("*.whl")
    names = wheel_names(wheel)
    assert "lab/images/toxiproxy/server/Cargo.toml" in names
    assert [n for n in names if n.startswith(TARGET.as_posix())] == []
