"""The lab from its wheel, outside any source checkout: `pip install` of the project's wheel into a fresh
venv in a temporary directory, then, from there, the commands, the packaged locustfile and the inputs of
`lab images` (Dockerfiles, Toxiproxy server sources, a lab wheel repacked from the installed package);
and, with Docker, a `lab run` of the smoke scenario.

Only the lab itself comes from the wheel: the fresh venv sees this environment's third-party packages
through a .pth line (no index needed, and no editable-install hook: a .pth line adds a path without
running that directory's own .pth files). Every command runs with a temporary directory as its working
directory and without PYTHONPATH or LAB_PROJECT_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


class Installed:
    def __init__(self, root: Path, venv: Path, wheel: Path) -> None:
        self.root, self.venv, self.wheel = root, venv, wheel
        self.site = next(venv.glob("lib/python3.*/site-packages"))
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAB_PROJECT_DIR")}
        self.env["LAB_CACHE_DIR"] = str(root / "cache")

    def run(self, *argv: str | Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(self, code: str, **env: str) -> Any:
        result = self.run(self.venv / "bin" / "python", "-c", code, **env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(ROOT)
    source = root / "source"  # a clean copy: an in-tree build would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "lab", source / "lab", ignore=shutil.ignore_patterns("target", "__pycache__"))
    dist = root / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("lab-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    installed = Installed(root, venv, wheel)
    (installed.site / "zz-outer-site-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = installed.run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", wheel)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return installed


def test_the_lab_and_its_locustfile_come_from_the_install(installed: Installed) -> None:
    found = installed.python(
        "import json, lab, lab.load; print(json.dumps([lab.__file__, str(lab.load.LOCUSTFILE)]))"
    )
    package, locustfile = (Path(p) for p in found)
    assert package.is_relative_to(installed.site)
    assert locustfile == installed.site / "lab" / "load" / "locustfile.py"
    assert locustfile.is_file()


def test_lab_help_and_scenario_validate_work_from_the_install(installed: Installed) -> None:
    lab = installed.venv / "bin" / "lab"
    shown = installed.run(lab, "--help")
    assert shown.returncode == 0, shown.stderr
    assert all(command in shown.stdout for command in ("images", "run", "scenario", "report"))
    scenario = shutil.copy(ROOT / "toxics" / "smoke.yml", installed.root / "smoke.yml")
    checked = installed.run(lab, "scenario", "validate", scenario)
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_locust_loads_the_packaged_locustfile(installed: Installed) -> None:
    locustfile = installed.site / "lab" / "load" / "locustfile.py"
    env = {k: v for k, v in installed.env.items() if not k.startswith("LAB_")}
    listing = subprocess.run(
        [installed.venv / "bin" / "python", "-m", "locust", "-f", locustfile, "--list"],
        cwd=installed.root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr[-3000:]
    # The open model (the default) sends from its dispatcher: Locust's users are the subscribers.
    assert "NewHeadsSubscriber" in listing.stdout
    closed = subprocess.run(
        [installed.venv / "bin" / "python", "-m", "locust", "-f", locustfile, "--list"],
        cwd=installed.root, env={**env, "LAB_LOAD": '{"model": "closed"}'}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert closed.returncode == 0 and "JsonRpcUser" in closed.stdout, closed.stderr[-3000:]


INSPECT_IMAGE_INPUTS = """
import json, time
from pathlib import Path
from lab.images import ImageBuilder, InstalledMetadata, Layout, Shell, Sources
from lab.images.wheels import build_lab_wheel

layout = Layout.discover()
assert isinstance(layout.project, InstalledMetadata), layout.project
wheel = build_lab_wheel(
    layout.project, Sources.read(layout).lab, layout.cache, Shell(), progress=print, clock=time.monotonic
)
deps = layout.cache / "no-deps"
deps.mkdir(exist_ok=True)
context = ImageBuilder(layout, None, Shell(), print).python_context("locust", deps, wheel)
print(json.dumps({
    "package": str(layout.package),
    "python_dockerfile": str(layout.dockerfile("locust")),
    "toxiproxy_dockerfile": str(layout.dockerfile("toxiproxy")),
    "server": str(layout.server),
    "cargo_target": str(layout.cargo_target),
    "load_requirements": layout.project.requirements(("load",)),
    "wheel": str(wheel),
    "context": sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()),
}))
"""


def test_lab_images_finds_its_inputs_in_the_install_and_repacks_an_installable_lab_wheel(
    installed: Installed,
) -> None:
    found = installed.python(INSPECT_IMAGE_INPUTS)
    site, cache = installed.site, installed.root / "cache"
    assert Path(found["package"]) == site / "lab"
    assert Path(found["python_dockerfile"]) == site / "lab" / "images" / "python" / "Dockerfile"
    assert (
        Path(found["python_dockerfile"]).read_bytes() == (ROOT / "lab/images/python/Dockerfile").read_bytes()
    )
    assert Path(found["toxiproxy_dockerfile"]).is_file()
    assert (Path(found["server"]) / "Cargo.toml").is_file() and (
        Path(found["server"]) / "Cargo.lock"
    ).is_file()
    assert Path(found["cargo_target"]).is_relative_to(cache)  # never into site-packages
    assert any(r.startswith("locust==") for r in found["load_requirements"])
    assert found["context"] == ["Dockerfile", f"wheels/lab/{Path(found['wheel']).name}"]

    with zipfile.ZipFile(found["wheel"]) as archive:
        names = archive.namelist()
    assert "lab/load/locustfile.py" in names and "lab/webui/faults.html" in names
    assert [n for n in names if n.startswith("lab/images/")] == []
    target = installed.root / "image-root"
    pip = installed.run(
        installed.venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--target", target,
        found["wheel"],
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert (target / "bin" / "lab").is_file()  # the console script of the entry points
    assert (target / "lab" / "load" / "locustfile.py").is_file()


@pytest.mark.containers
def test_lab_run_of_the_smoke_scenario_from_the_install(installed: Installed, lab_images: Any) -> None:
    """The images built from the installed distribution (they share the checkout's wheel cache and its
    toxiproxy image, whose inputs are the same files), then a short smoke run. Afterwards the
    `:latest` tags point at the checkout's images again and the installed variants are untagged."""
    from lab.images import PYTHON_IMAGES, DockerImageStore, Layout, ensure_images

    scenario = shutil.copy(ROOT / "toxics" / "smoke.yml", installed.root / "smoke-run.yml")
    out = installed.root / "reports"
    result = installed.run(
        installed.venv / "bin" / "lab", "run", scenario, "--duration", "15s", "--out", out,
        timeout=850, LAB_CACHE_DIR=str(Layout.discover().cache),
    )  # fmt: skip
    runs = list(out.iterdir()) if out.is_dir() else []
    manifest = orjson.loads((runs[0] / "manifest.json").read_bytes()) if len(runs) == 1 else {}
    current = ensure_images(lab_images.mode)
    store = DockerImageStore()
    for name in PYTHON_IMAGES:
        ref = (manifest.get("images", {}).get(name) or {}).get("ref")
        if ref and ref != getattr(current, name):
            store.untag(ref)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    [run_dir] = runs
    assert manifest["outcome"] == "completed" and manifest["verdict"] == "pass"
    assert (run_dir / "requests").is_dir()
