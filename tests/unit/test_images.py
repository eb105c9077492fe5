"""lab.images without Docker: mode selection, hashing and cache decisions against a fake image store and
a fake shell that records commands and makes the files the real ones would; the Python images' one
Dockerfile; the installed-distribution path (no pyproject.toml)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import lab.images.cli as images_cli
from lab.cli import EXIT_BAD_INPUT, EXIT_LAB_FAILED, main
from lab.images import (
    BASE_REF,
    IMAGE_NAMES,
    IMAGES_DIR,
    LABEL_HASH,
    PYTHON_IMAGES,
    BadImageMode,
    CheckoutMetadata,
    DockerImageStore,
    ImageBuilder,
    ImageError,
    ImageInfo,
    ImageSet,
    InstalledMetadata,
    Layout,
    Shell,
    content_hash,
    debian_mirror,
    dockerfile_base_default,
    project_requirements,
    resolve_mode,
    tree_files,
)
from lab.images.model import dockerfile_dir

OFFICIAL_PYTHON = "python:3.11-slim"
OFFICIAL_TOXIPROXY = "ghcr.io/shopify/toxiproxy:2.12.0"

PYPROJECT = """\
[project]
name = "lab"
version = "0.1.0"
readme = "README.md"
dependencies = ["aiohttp>=3.9", "orjson>=3.9"]

[project.optional-dependencies]
load = ["locust==2.47.0", "websocket-client>=1.7"]
analysis = ["pandas==3.1.1"]
extra = ["lab[load]", "rich>=13"]
"""


# --- fakes ----------------------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, *, pullable: Sequence[str] = ()) -> None:
        self.images: dict[str, ImageInfo] = {}
        self.pullable = set(pullable)
        self.pulls: list[str] = []
        self.builds: list[dict[str, object]] = []
        self.in_use: set[str] = set()
        self._ids = itertools.count(1)

    def add(self, ref: str, labels: Mapping[str, str] | None = None) -> str:
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[ref] = ImageInfo(id=image_id, labels=dict(labels or {}))
        return image_id

    def inspect(self, ref: str) -> ImageInfo | None:
        return self.images.get(ref)

    def pull(self, ref: str, timeout: float) -> None:
        self.pulls.append(ref)
        if ref not in self.pullable:
            raise ImageError(f"pulling {ref}: dial tcp: lookup registry: no such host")
        self.add(ref)

    def build(self, context: Path, tag: str, *, target, buildargs, labels, nocache, on_step) -> str:
        files = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
        self.builds.append(
            {
                "tag": tag,
                "name": tag.split(":")[0].removeprefix("lab-"),
                "target": target,
                "buildargs": dict(buildargs),
                "nocache": nocache,
                "files": files,
                "context": context,
            }
        )
        on_step("Step 1/1 : FROM ${BASE_IMAGE}")
        return self.add(tag, {"lab.managed": "true", **labels})

    def tag(self, image_id: str, ref: str) -> None:
        self.images[ref] = next(info for r, info in self.images.items() if image_id in (r, info.id))

    def import_tarball(self, tarball: Path, ref: str, changes: Sequence[str]) -> str:
        assert tarball.is_file()
        label_line = next(c for c in changes if c.startswith("LABEL "))
        return self.add(ref, dict(word.split("=", 1) for word in label_line.split()[1:]))

    def managed_tags(self) -> dict[str, list[str]]:
        tags: dict[str, list[str]] = {}
        for ref, info in self.images.items():
            if info.labels.get("lab.managed") == "true":
                tags.setdefault(info.id, []).append(ref)
        return tags

    def untag(self, ref: str) -> bool:
        if ref in self.in_use:
            return False
        del self.images[ref]
        return True

    def built_names(self) -> list[str]:
        return [str(b["name"]) for b in self.builds]


class FakeShell:
    """Records commands; makes the outputs of pip wheel, cargo, debootstrap, tar and apt-get."""

    def __init__(self, installed: Sequence[str] = ("debootstrap", "cargo", "tar")) -> None:
        self.installed = set(installed)
        self.commands: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.installed else None

    def run(self, cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None) -> None:
        argv = [str(a) for a in cmd]
        self.commands.append(argv)
        tool = Path(argv[0]).name
        if argv[1:3] == ["-m", "pip"]:
            out = Path(argv[argv.index("--wheel-dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            if "--no-deps" in argv:
                (out / "lab-0.1.0-py3-none-any.whl").write_bytes(b"lab wheel")
            else:
                for requirement in argv[argv.index("--wheel-dir") + 2 :]:
                    name = re.split(r"[^A-Za-z0-9_.-]", requirement)[0].replace("-", "_")
                    (out / f"{name}-1.0-py3-none-any.whl").write_bytes(requirement.encode())
        elif tool == "cargo":
            assert env is not None
            binary = Path(env["CARGO_TARGET_DIR"]) / "release" / "toxiproxy"
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_bytes(b"\x7fELF toxiproxy")
            binary.with_name("toxiproxy-cli").write_bytes(b"\x7fELF toxiproxy-cli")
        elif tool == "debootstrap":
            rootfs = Path(argv[-2])
            (rootfs / "usr/share/doc/python3").mkdir(parents=True)
            (rootfs / "usr/share/doc/python3/changelog.gz").write_bytes(b"x")
            (rootfs / "usr/share/doc/python3/copyright").write_text("x")
        elif tool == "tar":
            Path(argv[argv.index("-cf") + 1]).write_bytes(b"tar")
        elif tool == "apt-get" and "install" in argv:
            self.installed.add("debootstrap")

    def tools(self) -> list[str]:
        """The commands run, by tool (pip wheel of the lab / of dependencies told apart)."""
        names = []
        for argv in self.commands:
            if argv[1:3] == ["-m", "pip"]:
                names.append("pip-lab" if "--no-deps" in argv else "pip-deps")
            else:
                names.append(Path(argv[0]).name)
        return names


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "lab" / "provider").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "lab" / "__init__.py").write_text("")
    (root / "lab" / "provider" / "server.py").write_text("PORT = 8545\n")
    (root / "lab" / "load").mkdir()
    (root / "lab" / "load" / "locustfile.py").write_text("# users\n")
    shutil.copytree(
        IMAGES_DIR, root / "lab" / "images", ignore=shutil.ignore_patterns("server", "target", "__pycache__")
    )
    server = root / "lab" / "images" / "toxiproxy" / "server"
    (server / "src").mkdir(parents=True)
    (server / "Cargo.toml").write_text('[package]\nname = "toxiproxy-lab"\n')
    (server / "Cargo.lock").write_text("# lock\n")
    (server / "src" / "main.rs").write_text("fn main() {}\n")
    (root / "locustfiles").mkdir()
    (root / "locustfiles" / "scenario.py").write_text("from lab.load.locustfile import *\n")
    return root


class Harness:
    def __init__(self, project: Path, store: FakeStore, shell: FakeShell, environ: dict[str, str]) -> None:
        self.project, self.store, self.shell, self.environ = project, store, shell, environ
        self.lines: list[str] = []
        self.layout = Layout.checkout(project, cache=project / ".cache", images=project / "lab" / "images")

    def builder(self) -> ImageBuilder:
        return ImageBuilder(
            self.layout, self.store, self.shell, self.lines.append, environ=self.environ, clock=lambda: 0.0
        )

    def ensure(self, mode: str = "bootstrap", *, force: bool = False) -> ImageSet:
        self.store.builds.clear()
        self.shell.commands.clear()
        self.lines.clear()
        return self.builder().ensure(mode, force=force)


@pytest.fixture
def harness(project: Path) -> Harness:
    return Harness(project, FakeStore(), FakeShell(), {"LAB_DEBIAN_MIRROR": "http://mirror.test/debian"})


# --- pure helpers ---------------------------------------------------------------------------------------


def test_resolve_mode_prefers_the_argument_then_the_environment_then_auto() -> None:
    assert resolve_mode("Official", {"LAB_IMAGE_MODE": "bootstrap"}) == "official"
    assert resolve_mode(None, {"LAB_IMAGE_MODE": "bootstrap"}) == "bootstrap"
    assert resolve_mode(None, {}) == "auto"
    assert resolve_mode(None, {"LAB_IMAGE_MODE": ""}) == "auto"


def test_resolve_mode_names_where_a_bad_mode_came_from() -> None:
    with pytest.raises(BadImageMode, match=r"LAB_IMAGE_MODE: unknown image mode 'offline'"):
        resolve_mode(None, {"LAB_IMAGE_MODE": "offline"})
    with pytest.raises(BadImageMode, match=r"--mode: unknown image mode 'pull'"):
        resolve_mode("pull", {})


def test_the_shipped_dockerfiles_default_to_the_official_bases() -> None:
    defaults = {
        name: dockerfile_base_default(IMAGES_DIR / dockerfile_dir(name) / "Dockerfile")
        for name in IMAGE_NAMES
    }
    assert defaults == {
        "provider": OFFICIAL_PYTHON,
        "gateway": OFFICIAL_PYTHON,
        "locust": OFFICIAL_PYTHON,
        "toxiproxy": OFFICIAL_TOXIPROXY,
    }


def dockerfile_stages(text: str) -> dict[str, tuple[str, str]]:
    """Stage name -> (what it is FROM, its lines); the last stage also as "" (what a build without a
    target makes)."""
    stages: dict[str, tuple[str, str]] = {}
    for chunk in re.split(r"^(?=FROM )", text, flags=re.MULTILINE)[1:]:
        head = re.match(r"FROM (\S+)(?: AS (\S+))?", chunk)
        assert head is not None
        stages[head.group(2) or ""] = stages[""] = (head.group(1), chunk)
    return stages


def stage_chain(stages: dict[str, tuple[str, str]], name: str) -> str:
    """The lines of stage `name` and of the stages it is built FROM, base first."""
    parent, lines = stages[name]
    return (stage_chain(stages, parent) if parent in stages else "") + lines


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_the_shipped_dockerfiles_label_their_images_and_run_as_non_root(name: str) -> None:
    stages = dockerfile_stages((IMAGES_DIR / dockerfile_dir(name) / "Dockerfile").read_text())
    target = name if name in PYTHON_IMAGES else ""
    assert f"LABEL lab.managed=true lab.image={name}\n" in stages[target][1]
    users = re.findall(r"^USER (\S+)", stage_chain(stages, target), re.MULTILINE)
    assert users, "no USER line"
    assert users[-1].split(":")[0] not in ("0", "root")


def test_the_python_images_are_targets_of_one_dockerfile_that_differ_in_their_entry_point() -> None:
    dockerfile = IMAGES_DIR / "python" / "Dockerfile"
    stages = dockerfile_stages(dockerfile.read_text())
    entrypoints = {}
    for name in PYTHON_IMAGES:
        parent, lines = stages[name]
        assert parent == "runtime"
        entrypoints[name] = re.findall(r"^ENTRYPOINT (.+)$", lines, re.MULTILINE)
        # the one step that depends on the lab's source comes last: a source edit rebuilds only it
        assert lines.rstrip().splitlines()[-1] == "COPY --from=lab /staged/ /"
    assert entrypoints == {
        "provider": ['["lab", "provider"]'],
        "gateway": ['["lab", "gateway"]'],
        "locust": ['["locust"]'],
    }
    assert "lab/load/locustfile.py" in stages["locust"][1]
    assert not [p for p in IMAGES_DIR.glob("*/Dockerfile") if p.parent.name in PYTHON_IMAGES]


def test_dockerfile_base_default_reads_the_arg_before_from(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        '# comment\nARG OTHER=1\narg BASE_IMAGE="debian:12"\nFROM $BASE_IMAGE AS x\nARG BASE_IMAGE=no\n'
    )
    assert dockerfile_base_default(dockerfile) == "debian:12"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("FROM python:3.11\n", "expected `ARG BASE_IMAGE"),
        ("ARG BASE_IMAGE=python:3.11\nFROM python:3.11\n", "expected `ARG BASE_IMAGE"),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", "expected `ARG BASE_IMAGE"),
        ("ARG BASE_IMAGE=x\n", "no FROM line"),
    ],
)
def test_dockerfile_base_default_rejects_dockerfiles_without_a_base_argument(
    tmp_path: Path, text: str, problem: str
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    with pytest.raises(ImageError, match=re.escape(str(dockerfile)) + ".*" + re.escape(problem)):
        dockerfile_base_default(dockerfile)


def test_debian_mirror_reads_one_line_and_deb822_sources() -> None:
    deb822 = (
        "Types: deb\nURIs: http://deb.example.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example.org/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://deb.example.org/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    one_line = (
        "# deb http://old.example.org/debian bookworm main\n"
        "deb [arch=amd64] http://one.example.org/debian bookworm main\n"
    )
    cloud = "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    assert debian_mirror([cloud, deb822]) == "http://deb.example.org/debian"
    assert debian_mirror([one_line]) == "http://one.example.org/debian"
    assert debian_mirror([cloud]) == "http://deb.debian.org/debian"


def test_project_requirements_expand_extras_and_self_references(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PYPROJECT)
    assert project_requirements(pyproject) == ["aiohttp>=3.9", "orjson>=3.9"]
    assert project_requirements(pyproject, ["extra"]) == [
        "aiohttp>=3.9",
        "locust==2.47.0",
        "orjson>=3.9",
        "rich>=13",
        "websocket-client>=1.7",
    ]
    with pytest.raises(ImageError, match="no extra 'nope'"):
        project_requirements(pyproject, ["nope"])


def test_content_hash_keeps_part_boundaries() -> None:
    assert content_hash([("a", b"bc")]) != content_hash([("ab", b"c")])
    assert content_hash([("a", b"b"), ("c", b"")]) != content_hash([("a", b"bc")])
    assert content_hash([("a", b"x")]) == content_hash([("a", b"x")])


def test_tree_files_leave_out_caches_hidden_files_and_skipped_directories(tmp_path: Path) -> None:
    for rel in ("a.py", "pkg/b.py", "pkg/__pycache__/b.pyc", "c.pyc", ".hidden", ".git/x", "skip/d.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert tree_files(tmp_path, skip_dirs=[Path("skip")]) == [Path("a.py"), Path("pkg/b.py")]
    assert tree_files(tmp_path / "missing") == []


# --- the builder: what is built, and when -----------------------------------------------------------------


def test_a_cold_bootstrap_call_builds_everything_and_tags_hashed_and_latest(harness: Harness) -> None:
    result = harness.ensure()

    assert result.mode == "bootstrap"
    assert harness.shell.tools() == ["debootstrap", "tar", "pip-lab", "pip-deps", "pip-deps", "cargo"]
    assert harness.store.built_names() == list(IMAGE_NAMES)
    for name in IMAGE_NAMES:
        ref = getattr(result, name)
        assert re.fullmatch(rf"lab-{name}:[0-9a-f]{{12}}", ref)
        info = harness.store.inspect(ref)
        assert info is not None
        assert info.labels[LABEL_HASH].startswith(ref.split(":")[1])
        assert harness.store.inspect(f"lab-{name}:latest") == info
    assert {b["buildargs"]["BASE_IMAGE"] for b in harness.store.builds} == {BASE_REF}
    base = harness.store.inspect(BASE_REF)
    assert base is not None
    assert base.labels["lab.image"] == "base"
    assert any("base: debootstrap" in line and "http://mirror.test/debian" in line for line in harness.lines)


def test_build_contexts_hold_the_wheels_and_the_binary_and_python_images_build_their_target(
    harness: Harness,
) -> None:
    harness.ensure()
    files = {b["name"]: b["files"] for b in harness.store.builds}
    targets = {b["name"]: b["target"] for b in harness.store.builds}
    assert targets == {"provider": "provider", "gateway": "gateway", "locust": "locust", "toxiproxy": None}
    assert files["provider"] == [
        "Dockerfile",
        "wheels/deps/aiohttp-1.0-py3-none-any.whl",
        "wheels/deps/orjson-1.0-py3-none-any.whl",
        "wheels/lab/lab-0.1.0-py3-none-any.whl",
    ]
    assert "wheels/deps/locust-1.0-py3-none-any.whl" in files["locust"]
    assert [f for f in files["locust"] if not f.startswith("wheels/")] == ["Dockerfile"]  # locustfile: in lab
    assert files["toxiproxy"] == ["Dockerfile", "bin/toxiproxy", "bin/toxiproxy-cli"]  # the healthcheck's
    toxiproxy_context = next(b["context"] for b in harness.store.builds if b["name"] == "toxiproxy")
    for binary in ("toxiproxy", "toxiproxy-cli"):
        assert os.access(Path(str(toxiproxy_context)) / "bin" / binary, os.X_OK)


def test_a_second_call_with_nothing_changed_builds_nothing(harness: Harness) -> None:
    first = harness.ensure()
    second = harness.ensure()
    assert second == first
    assert harness.shell.commands == []
    assert harness.store.builds == []
    assert f"base: reusing {BASE_REF}" in "\n".join(harness.lines)
    assert sum("up to date" in line for line in harness.lines) == len(IMAGE_NAMES)


def test_a_lab_source_edit_rebuilds_the_python_images_only(harness: Harness) -> None:
    first = harness.ensure()
    (harness.project / "lab" / "provider" / "server.py").write_text("PORT = 8546\n")
    second = harness.ensure()
    assert harness.store.built_names() == ["provider", "gateway", "locust"]
    assert harness.shell.tools() == ["pip-lab"]  # dependency wheels are cached by requirement set
    assert second.toxiproxy == first.toxiproxy
    assert {second.provider, second.gateway, second.locust}.isdisjoint(
        {first.provider, first.gateway, first.locust}
    )


def test_a_new_file_in_the_lab_source_counts_as_a_change(harness: Harness) -> None:
    harness.ensure()
    (harness.project / "lab" / "provider" / "new.py").write_text("")
    (harness.project / "lab" / "provider" / "__pycache__").mkdir()
    (harness.project / "lab" / "provider" / "__pycache__" / "x.pyc").write_text("")
    harness.ensure()
    assert harness.store.built_names() == ["provider", "gateway", "locust"]


def test_compose_files_and_cargo_output_are_not_image_inputs(harness: Harness) -> None:
    harness.ensure()
    (harness.project / "lab" / "images" / "compose").mkdir(exist_ok=True)
    (harness.project / "lab" / "images" / "compose" / "gateway.yml").write_text("x")
    (harness.project / "lab" / "images" / "toxiproxy" / "server" / "target" / "junk").write_text("x")
    harness.ensure()
    assert harness.store.builds == []


def test_a_server_edit_rebuilds_only_toxiproxy_with_cargo(harness: Harness) -> None:
    harness.ensure()
    (harness.project / "lab" / "images" / "toxiproxy" / "server" / "src" / "main.rs").write_text(
        "fn main() { }\n"
    )
    harness.ensure()
    assert harness.store.built_names() == ["toxiproxy"]
    assert harness.shell.tools() == ["cargo"]
    cargo = harness.shell.commands[0]
    assert cargo[1:4] == ["build", "--release", "--manifest-path"]
    assert cargo[4].endswith("lab/images/toxiproxy/server/Cargo.toml")


def test_the_packaged_locustfile_is_an_image_input_and_the_checkouts_entry_points_are_not(
    harness: Harness,
) -> None:
    harness.ensure()
    (harness.project / "locustfiles" / "scenario.py").write_text("# by hand\n")
    harness.ensure()
    assert harness.store.builds == []
    (harness.project / "lab" / "load" / "locustfile.py").write_text("# other users\n")
    harness.ensure()
    assert harness.store.built_names() == ["provider", "gateway", "locust"]  # each carries the lab package


def test_an_edit_of_the_python_dockerfile_rebuilds_the_python_images_only(harness: Harness) -> None:
    first = harness.ensure()
    dockerfile = harness.project / "lab" / "images" / "python" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# a comment\n")
    second = harness.ensure()
    assert harness.store.built_names() == ["provider", "gateway", "locust"]
    assert second.toxiproxy == first.toxiproxy


def test_the_image_code_is_not_an_image_input(harness: Harness) -> None:
    harness.ensure()
    (harness.project / "lab" / "images" / "builder.py").write_text("# edited\n")
    harness.ensure()
    assert harness.store.builds == []


def test_a_dependency_change_rebuilds_the_wheels_of_that_set(harness: Harness) -> None:
    harness.ensure()
    pyproject = harness.project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"websocket-client>=1.7"', '"websocket-client>=1.8"'))
    harness.ensure()
    assert harness.shell.tools() == ["pip-lab", "pip-deps"]  # the runtime set is unchanged
    assert len(list((harness.layout.cache / "wheels").glob("runtime+load+analysis-*"))) == 1


def test_force_rebuilds_everything_without_the_docker_cache(harness: Harness) -> None:
    harness.ensure()
    harness.ensure(force=True)
    assert harness.store.built_names() == list(IMAGE_NAMES)
    assert all(b["nocache"] for b in harness.store.builds)
    assert harness.shell.tools() == ["debootstrap", "tar", "pip-lab", "pip-deps", "pip-deps", "cargo"]


def test_a_tag_whose_label_does_not_match_its_hash_is_rebuilt(harness: Harness) -> None:
    result = harness.ensure()
    harness.store.add(result.provider, {"lab.managed": "true", LABEL_HASH: "something else"})
    harness.ensure()
    assert "provider" in harness.store.built_names()


def test_the_base_is_rebuilt_when_its_recipe_label_differs(harness: Harness) -> None:
    harness.store.add(BASE_REF, {"lab.managed": "true", LABEL_HASH: "an older recipe"})
    harness.ensure()
    assert harness.shell.tools()[0] == "debootstrap"


def test_a_missing_debootstrap_is_installed_with_apt(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.shell.installed.discard("debootstrap")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    harness.ensure()
    assert harness.shell.tools()[:3] == ["apt-get", "apt-get", "debootstrap"]
    assert harness.shell.commands[1][-1] == "debootstrap"
    assert any("debootstrap is not installed" in line for line in harness.lines)


def test_a_missing_debootstrap_without_root_is_a_clear_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.shell.installed.discard("debootstrap")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="apt-get install debootstrap"):
        harness.ensure()


def test_bootstrap_without_the_server_or_a_binary_names_both(harness: Harness) -> None:
    shutil.rmtree(harness.project / "lab" / "images" / "toxiproxy" / "server")
    with pytest.raises(ImageError, match=r"Cargo\.toml is missing.*LAB_TOXIPROXY_BINARY"):
        harness.ensure()


def test_a_toxiproxy_binary_from_the_environment_replaces_cargo(harness: Harness, tmp_path: Path) -> None:
    binary = tmp_path / "toxiproxy"
    binary.write_bytes(b"stand-in")
    harness.environ["LAB_TOXIPROXY_BINARY"] = str(binary)
    first = harness.ensure()
    assert "cargo" not in harness.shell.tools()
    binary.write_bytes(b"another stand-in")
    second = harness.ensure()
    assert harness.store.built_names() == ["toxiproxy"]
    assert second.toxiproxy != first.toxiproxy


def test_cargo_missing_is_a_clear_error(harness: Harness) -> None:
    harness.shell.installed.discard("cargo")
    with pytest.raises(ImageError, match="cargo, which is not installed"):
        harness.ensure()


# --- mode selection -------------------------------------------------------------------------------------


def test_auto_uses_official_bases_already_present_without_pulling(harness: Harness) -> None:
    harness.store.add(OFFICIAL_PYTHON)
    harness.store.add(OFFICIAL_TOXIPROXY)
    result = harness.ensure("auto")
    assert result.mode == "official"
    assert harness.store.pulls == []
    assert "debootstrap" not in harness.shell.tools()
    assert "cargo" not in harness.shell.tools()
    args = {b["name"]: b["buildargs"]["BASE_IMAGE"] for b in harness.store.builds}
    assert args == {
        "provider": OFFICIAL_PYTHON,
        "gateway": OFFICIAL_PYTHON,
        "locust": OFFICIAL_PYTHON,
        "toxiproxy": OFFICIAL_TOXIPROXY,
    }
    files = {b["name"]: b["files"] for b in harness.store.builds}
    assert files["toxiproxy"] == ["Dockerfile"]  # bin/ stays empty on the official path


def test_auto_pulls_missing_official_bases(harness: Harness) -> None:
    harness.store.pullable = {OFFICIAL_PYTHON, OFFICIAL_TOXIPROXY}
    assert harness.ensure("auto").mode == "official"
    assert sorted(harness.store.pulls) == sorted([OFFICIAL_PYTHON, OFFICIAL_TOXIPROXY])


def test_auto_falls_back_to_bootstrap_after_one_failed_pull(harness: Harness) -> None:
    result = harness.ensure("auto")
    assert result.mode == "bootstrap"
    assert len(harness.store.pulls) == 1
    assert any(line.startswith("mode: auto -> bootstrap (no registry: pulling") for line in harness.lines)


def test_auto_remembers_a_failed_pull_for_an_hour(harness: Harness) -> None:
    now = [1_000_000.0]
    harness.builder = lambda: ImageBuilder(  # type: ignore[method-assign]
        harness.layout,
        harness.store,
        harness.shell,
        harness.lines.append,
        environ=harness.environ,
        clock=lambda: 0.0,
        wall_clock=lambda: now[0],
    )
    harness.ensure("auto")
    assert len(harness.store.pulls) == 1
    now[0] += 3000
    assert harness.ensure("auto").mode == "bootstrap"
    assert len(harness.store.pulls) == 1  # no second pull within the hour
    assert any("a pull failed 50 min ago" in line for line in harness.lines)
    now[0] += 700  # past the hour: pull again, and a registry that now answers is used
    harness.store.pullable = {OFFICIAL_PYTHON, OFFICIAL_TOXIPROXY}
    assert harness.ensure("auto").mode == "official"
    assert not (harness.layout.cache / "no-registry").exists()


def test_official_mode_without_a_registry_fails_and_points_at_bootstrap(harness: Harness) -> None:
    with pytest.raises(ImageError, match=r"official mode: pulling .*--mode bootstrap"):
        harness.ensure("official")
    assert harness.store.builds == []


def test_bootstrap_mode_never_pulls(harness: Harness) -> None:
    harness.store.pullable = {OFFICIAL_PYTHON, OFFICIAL_TOXIPROXY}
    harness.ensure("bootstrap")
    assert harness.store.pulls == []


def test_the_two_modes_give_different_images_for_the_same_source(harness: Harness) -> None:
    bootstrap = harness.ensure("bootstrap")
    harness.store.add(OFFICIAL_PYTHON)
    harness.store.add(OFFICIAL_TOXIPROXY)
    official = harness.ensure("official")
    for name in IMAGE_NAMES:
        assert getattr(bootstrap, name) != getattr(official, name)
        assert harness.store.inspect(f"lab-{name}:latest") == harness.store.inspect(getattr(official, name))


# --- prune ----------------------------------------------------------------------------------------------


def test_prune_untags_older_lab_images_except_those_in_use(harness: Harness) -> None:
    first = harness.ensure()
    (harness.project / "lab" / "provider" / "server.py").write_text("PORT = 1\n")
    second = harness.ensure()
    harness.store.in_use.add(first.gateway)
    harness.store.add("unrelated:1")
    removed = harness.builder().prune(second)
    assert sorted(removed) == sorted([first.provider, first.locust])
    assert harness.store.inspect(first.gateway) is not None
    assert harness.store.inspect("unrelated:1") is not None
    assert harness.store.inspect(BASE_REF) is not None
    for name in IMAGE_NAMES:
        assert harness.store.inspect(getattr(second, name)) is not None


# --- the command ----------------------------------------------------------------------------------------


SAMPLE = ImageSet(
    provider="lab-provider:aaaaaaaaaaaa",
    gateway="lab-gateway:bbbbbbbbbbbb",
    locust="lab-locust:cccccccccccc",
    toxiproxy="lab-toxiproxy:dddddddddddd",
    mode="bootstrap",
)


def test_the_command_prints_the_image_set_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_ensure(mode, *, progress=None, force=False):
        calls.append((mode, force))
        assert progress is not None
        progress("base: reusing lab-base:bookworm-py311")
        return SAMPLE

    monkeypatch.setattr(images_cli, "ensure_images", fake_ensure)
    result = CliRunner().invoke(main, ["images", "--mode", "bootstrap", "--force", "--json"])
    assert result.exit_code == 0, result.output
    assert calls == [("bootstrap", True)]
    assert orjson.loads(result.stdout) == {
        "provider": SAMPLE.provider,
        "gateway": SAMPLE.gateway,
        "locust": SAMPLE.locust,
        "toxiproxy": SAMPLE.toxiproxy,
        "mode": "bootstrap",
    }
    assert "base: reusing" in result.stderr


def test_the_command_reports_a_bad_mode_in_the_environment_as_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_IMAGE_MODE", "sideways")
    result = CliRunner().invoke(main, ["images"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "LAB_IMAGE_MODE: unknown image mode 'sideways'" in result.stderr


def test_the_command_reports_a_failed_build_as_a_lab_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(mode, *, progress=None, force=False):
        raise ImageError("docker build of lab-provider:x failed: no space left on device")

    monkeypatch.setattr(images_cli, "ensure_images", failing)
    result = CliRunner().invoke(main, ["images", "--json"])
    assert result.exit_code == EXIT_LAB_FAILED
    assert "no space left on device" in result.stderr
    assert result.stdout == ""


# --- the Docker SDK adapter -----------------------------------------------------------------------------


class FakeApi:
    def __init__(self, chunks: list[dict[str, object]]) -> None:
        self.chunks = chunks

    def build(self, **kwargs: object) -> list[dict[str, object]]:
        return self.chunks

    def inspect_image(self, ref: str) -> dict[str, object]:
        return {"Id": "sha256:" + "e" * 64, "Config": {"Labels": {"lab.image": "toxiproxy"}}}


def store_with(chunks: list[dict[str, object]]) -> DockerImageStore:
    store = DockerImageStore.__new__(DockerImageStore)
    store._api = FakeApi(chunks)  # type: ignore[attr-defined]
    return store


def test_docker_build_reports_only_the_steps_that_are_not_cached(tmp_path: Path) -> None:
    chunks: list[dict[str, object]] = [
        {"stream": "Step 1/3 : FROM ${BASE_IMAGE}"},
        {"stream": "\n"},
        {"stream": " ---> fd4d69aa59ca\n"},
        {"stream": "Step 2/3 : USER 65534:65534"},
        {"stream": "\n"},
        {"stream": " ---> Using cache\n"},
        {"stream": " ---> b345ae41b672\n"},
        {"stream": "Step 3/3 : COPY bin/ /"},
        {"stream": "\n"},
        {"stream": " ---> c030a2f974f6\n"},
        {"aux": {"ID": "sha256:" + "c" * 64}},
    ]
    steps: list[str] = []
    image_id = store_with(chunks).build(
        tmp_path,
        "lab-toxiproxy:x",
        target=None,
        buildargs={},
        labels={},
        nocache=False,
        on_step=steps.append,
    )
    assert steps == ["Step 1/3 : FROM ${BASE_IMAGE}", "Step 3/3 : COPY bin/ /"]
    assert image_id == "sha256:" + "c" * 64


def test_a_failed_docker_build_says_why_with_the_end_of_its_log(tmp_path: Path) -> None:
    chunks: list[dict[str, object]] = [
        {"stream": "Step 4/9 : RUN useradd lab\n"},
        {"stream": " ---> Running in 0123\n"},
        {"stream": "useradd: command not found\n"},
        {"error": "The command '/bin/sh -c useradd lab' returned a non-zero code: 127"},
    ]
    with pytest.raises(
        ImageError, match=r"(?s)lab-provider:x failed: The command .* 127.*useradd: command not found"
    ):
        store_with(chunks).build(
            tmp_path,
            "lab-provider:x",
            target="provider",
            buildargs={},
            labels={},
            nocache=False,
            on_step=lambda _: None,
        )


def test_shell_finds_tools_outside_path_in_its_fallback_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "debootstrap").write_text("#!/bin/sh\n")
    (sbin / "debootstrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    shell = Shell()
    shell.fallback_dirs = (sbin,)
    assert shell.which("debootstrap") == str(sbin / "debootstrap")
    assert shell.which("no-such-tool") is None


# --- an installed distribution: no pyproject.toml, the dist-info instead ------------------------------------

METADATA = """\
Metadata-Version: 2.4
Name: lab
Version: 0.1.0
Provides-Extra: load
Provides-Extra: analysis
Provides-Extra: all
Requires-Dist: aiohttp>=3.9
Requires-Dist: uvloop>=0.19; sys_platform != "win32"
Requires-Dist: locust==2.47.0; extra == "load"
Requires-Dist: pandas==3.1.1; extra == "analysis"
Requires-Dist: rich>=13; extra == "all"
Requires-Dist: lab[load]; extra == "all"

A description.
"""


@pytest.fixture
def installed(tmp_path: Path) -> InstalledMetadata:
    dist_info = tmp_path / "site-packages" / "lab-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(METADATA)
    (dist_info / "entry_points.txt").write_text("[console_scripts]\nlab = lab.cli:main\n")
    return InstalledMetadata(metadata.PathDistribution(dist_info))


def test_installed_metadata_gives_the_requirements_of_each_extra(installed: InstalledMetadata) -> None:
    assert installed.requirements(()) == ["aiohttp>=3.9", "uvloop>=0.19"]  # markers evaluated (Linux)
    assert installed.requirements(("load",)) == ["aiohttp>=3.9", "locust==2.47.0", "uvloop>=0.19"]
    assert installed.requirements(("all",)) == ["aiohttp>=3.9", "locust==2.47.0", "rich>=13", "uvloop>=0.19"]
    with pytest.raises(ImageError, match=r"installed lab 0\.1\.0: has no extra 'nope'"):
        installed.requirements(("nope",))


@pytest.fixture
def installed_harness(project: Path, installed: InstalledMetadata) -> Harness:
    (project / "pyproject.toml").unlink()
    harness = Harness(project, FakeStore(), FakeShell(), {"LAB_DEBIAN_MIRROR": "http://mirror.test/debian"})
    cache = project.parent / "user-cache"
    harness.layout = Layout(
        package=project / "lab",
        project=installed,
        cache=cache,
        cargo_target=cache / "toxiproxy-target",
        images=project / "lab" / "images",
    )
    return harness


def test_an_installed_distribution_builds_the_images_from_its_files_and_dist_info(
    installed_harness: Harness,
) -> None:
    harness = installed_harness
    harness.ensure()
    assert harness.store.built_names() == list(IMAGE_NAMES)
    assert harness.shell.tools() == ["debootstrap", "tar", "pip-deps", "pip-deps", "cargo"]  # no pip-lab
    deps = [argv for argv in harness.shell.commands if argv[1:3] == ["-m", "pip"]]
    # locust: the load and analysis extras
    assert deps[1][-4:] == ["aiohttp>=3.9", "locust==2.47.0", "pandas==3.1.1", "uvloop>=0.19"]
    cargo = next(argv for argv in harness.shell.commands if Path(argv[0]).name == "cargo")
    assert cargo[4].endswith("lab/images/toxiproxy/server/Cargo.toml")
    assert (harness.layout.cache / "toxiproxy-target" / "release" / "toxiproxy").is_file()

    context = Path(str(next(b["context"] for b in harness.store.builds if b["name"] == "locust")))
    (wheel,) = (context / "wheels" / "lab").glob("*.whl")
    assert wheel.name == "lab-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("lab-0.1.0.dist-info/RECORD").decode()
        entry_points = archive.read("lab-0.1.0.dist-info/entry_points.txt").decode()
        assert archive.read("lab/load/locustfile.py") == b"# users\n"
    assert "lab/provider/server.py" in names
    assert [n for n in names if n.startswith("lab/images/")] == []
    assert "lab = lab.cli:main" in entry_points
    recorded = {line.split(",")[0] for line in record.splitlines()}
    assert recorded == set(names)
    assert all(re.fullmatch(r"[^,]+,sha256=[\w-]{43},\d+", line) for line in record.splitlines()[:-1])


def test_an_installed_distribution_reuses_its_images_until_its_files_or_metadata_change(
    installed_harness: Harness, installed: InstalledMetadata
) -> None:
    harness = installed_harness
    first = harness.ensure()
    assert harness.ensure() == first
    assert harness.store.builds == []
    metadata_file = Path(str(installed.dist.locate_file("lab-0.1.0.dist-info/METADATA")))
    metadata_file.write_text(METADATA.replace("Version: 0.1.0", "Version: 0.1.1"))
    second = harness.ensure()
    assert harness.store.built_names() == ["provider", "gateway", "locust"]
    assert second.toxiproxy == first.toxiproxy


def test_discover_uses_the_checkout_this_code_runs_from(tmp_path: Path) -> None:
    layout = Layout.discover({"LAB_CACHE_DIR": str(tmp_path / "cache")})
    assert isinstance(layout.project, CheckoutMetadata)
    assert layout.package == IMAGES_DIR.parent
    assert layout.cache == tmp_path / "cache"
    assert layout.cargo_target == IMAGES_DIR / "toxiproxy" / "server" / "target"


def test_discover_names_a_project_dir_that_is_not_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=rf"LAB_PROJECT_DIR: {re.escape(str(tmp_path))} is not a lab source"):
        Layout.discover({"LAB_PROJECT_DIR": str(tmp_path)})


def test_a_checkout_and_its_installed_distribution_ask_for_the_same_wheels(
    tmp_path: Path, installed: InstalledMetadata
) -> None:
    """The same list either way (markers evaluated here), so both share a cached wheelhouse."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "lab"\nversion = "0.1.0"\n'
        'dependencies = ["aiohttp>=3.9", "uvloop>=0.19; sys_platform != \'win32\'"]\n'
        "[project.optional-dependencies]\n"
        'load = ["locust==2.47.0"]\nall = ["rich>=13", "lab[load]"]\n'
    )
    checkout = CheckoutMetadata(pyproject)
    for extras in [(), ("load",), ("all",)]:
        assert checkout.requirements(extras) == installed.requirements(extras)
