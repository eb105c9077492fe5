"""The lab's container images: build them, or reuse what an earlier call built (`lab images`).

Four images, one Dockerfile each under `lab/images/<name>/`, each taking its base as `ARG BASE_IMAGE`:

  provider, gateway, locust  the project installed into a venv from wheels built on this host
  toxiproxy                  Toxiproxy's REST API on 8474

Two paths to the bases. "official": the default of each Dockerfile's `ARG BASE_IMAGE` (a slim Python
image, Shopify's Toxiproxy image), pulled from a registry. "bootstrap", for machines with no registry: a
Debian base made here (debootstrap + `docker import`) for all four, with the lab's Toxiproxy-compatible
server (`lab/images/toxiproxy/server`, built by cargo) as the toxiproxy binary. "auto" pulls once and
falls back to bootstrap. Each image is tagged `lab-<name>:<content hash>` (and `:latest`); the hash
covers every input, so a call with nothing changed only looks the tags up.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

MODES = ("auto", "official", "bootstrap")
MODE_ENV = "LAB_IMAGE_MODE"
IMAGE_NAMES = ("provider", "gateway", "locust", "toxiproxy")
# Python images -> the extras of the project they install besides its runtime dependencies.
PYTHON_IMAGES: dict[str, tuple[str, ...]] = {"provider": (), "gateway": (), "locust": ("load",)}

BASE_REF = "lab-base:bookworm-py311"
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11, the version the project requires
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"

LABEL_MANAGED = "lab.managed"
LABEL_IMAGE = "lab.image"
LABEL_HASH = "lab.content-hash"

# Bump to rebuild every image when the way contexts are assembled changes.
_RECIPE_VERSION = "1"
_HASH_TAG_LENGTH = 12
_PULL_TIMEOUT_S = 20.0  # no progress from the registry for this long: give up
# After a failed pull, auto mode goes straight to bootstrap for this long: a registry that drops packets
# would otherwise cost every call the pull timeout.
_NO_REGISTRY_MEMO_S = 3600.0
_DOCKER_TIMEOUT_S = 900.0
_LOG_TAIL_LINES = 40

_PACKAGE_DIR = Path(__file__).resolve().parent
IMAGES_DIR = _PACKAGE_DIR / "images"


class ImageError(RuntimeError):
    """An image could not be pulled, built or found (the lab itself failed)."""


class BadImageMode(ValueError):
    """An unknown image mode was asked for (bad input)."""


@dataclass(frozen=True)
class ImageSet:
    """Image references usable in `docker run` (the content-hashed tags)."""

    provider: str
    gateway: str
    locust: str
    toxiproxy: str
    mode: str  # "official" | "bootstrap"


# --- pure helpers --------------------------------------------------------------------------------------


def resolve_mode(mode: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The requested mode: the argument, else $LAB_IMAGE_MODE, else "auto"."""
    source = "--mode"
    if mode is None:
        mode, source = environ.get(MODE_ENV) or "auto", MODE_ENV
    normalized = mode.strip().lower()
    if normalized not in MODES:
        raise BadImageMode(f"{source}: unknown image mode {mode!r} (expected one of: {', '.join(MODES)})")
    return normalized


def dockerfile_base_default(dockerfile: Path) -> str:
    """The default of `ARG BASE_IMAGE=...` declared before the first FROM, which must use it."""
    default: str | None = None
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, sep, value = rest.strip().partition("=")
            if name.strip() == "BASE_IMAGE" and sep:
                default = value.strip().strip("\"'")
        elif keyword == "FROM":
            image = rest.split()[0] if rest.split() else ""
            if default is None or image not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
                raise ImageError(
                    f"{dockerfile}: expected `ARG BASE_IMAGE=<image>` before a first `FROM ${{BASE_IMAGE}}`"
                )
            return default
    raise ImageError(f"{dockerfile}: no FROM line")


def debian_mirror(sources: Iterable[str], suite: str = DEBIAN_SUITE) -> str:
    """The first `deb` mirror serving `suite` in apt source texts (one-line or deb822 format)."""
    for text in sources:
        for uri, suites in _apt_entries(text):
            if suite in suites:
                return uri.rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def _apt_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    if re.search(r"^Types:", text, re.MULTILINE):  # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split():
                for uri in fields.get("URIs", "").split():
                    yield uri, fields.get("Suites", "").split()
        return
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def project_requirements(pyproject: Path, extras: Sequence[str] = ()) -> list[str]:
    """The project's runtime requirements plus those of `extras` (self-references expanded)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise ImageError(f"{pyproject}: [project.optional-dependencies] has no extra {extra!r}")
        seen.add(extra)
        for requirement in optional[extra]:
            self_ref = re.match(rf"^\s*{re.escape(project['name'])}\s*\[([^\]]*)\]", requirement)
            if self_ref:
                pending.extend(name.strip() for name in self_ref.group(1).split(","))
            else:
                requirements.append(requirement)
    return sorted(dict.fromkeys(requirements))


def content_hash(parts: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over named parts, each length-prefixed so that no two different inputs collide."""
    digest = hashlib.sha256()
    for name, data in parts:
        for field in (name.encode(), data):
            digest.update(len(field).to_bytes(8, "big"))
            digest.update(field)
    return digest.hexdigest()


def tree_files(root: Path, *, skip_dirs: Sequence[Path] = ()) -> list[Path]:
    """Files under `root`, sorted, relative; leaving out caches, hidden files and `skip_dirs`."""
    if not root.is_dir():
        return []
    skipped = {root / d for d in skip_dirs}
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and d != "__pycache__" and here / d not in skipped
        ]
        found.extend(
            (here / f).relative_to(root)
            for f in filenames
            if not f.startswith(".") and not f.endswith(".pyc")
        )
    return sorted(found)


def snapshot_tree(root: Path, *, skip_dirs: Sequence[Path] = ()) -> dict[Path, bytes]:
    """The contents of `tree_files`, read once: what is hashed is exactly what goes into the image, even
    while someone edits the tree."""
    return {rel: (root / rel).read_bytes() for rel in tree_files(root, skip_dirs=skip_dirs)}


def _tree_parts(label: str, snapshot: Mapping[Path, bytes]) -> Iterator[tuple[str, bytes]]:
    for rel, data in snapshot.items():
        yield f"{label}/{rel.as_posix()}", data


def _write_tree(snapshot: Mapping[Path, bytes], target: Path) -> None:
    for rel, data in snapshot.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)


def image_ref(name: str, digest: str) -> str:
    return f"lab-{name}:{digest[:_HASH_TAG_LENGTH]}"


# --- the outside world: Docker and the host's commands --------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: Mapping[str, str]


class ImageStore(Protocol):
    """The Docker operations the builder needs (a fake one in unit tests)."""

    def inspect(self, ref: str) -> ImageInfo | None: ...
    def pull(self, ref: str, timeout: float) -> None: ...
    def build(
        self,
        context: Path,
        tag: str,
        *,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        nocache: bool,
        on_step: Progress,
    ) -> str: ...
    def tag(self, image_id: str, ref: str) -> None: ...
    def import_tarball(self, tarball: Path, ref: str, changes: Sequence[str]) -> str: ...
    def managed_tags(self) -> dict[str, list[str]]: ...
    def untag(self, ref: str) -> bool: ...


class Shell:
    """Runs the host commands the builder needs (pip, cargo, debootstrap, tar, apt-get)."""

    # Where tools land that are often not on PATH: rustup's default place (a service's PATH lacks it),
    # and the sbin directories debootstrap is installed into (a `su` or `sudo` without `-` lacks them).
    fallback_dirs: Sequence[Path] = (Path.home() / ".cargo" / "bin", Path("/usr/sbin"), Path("/sbin"))

    def which(self, name: str) -> str | None:
        return shutil.which(name) or shutil.which(name, path=os.pathsep.join(map(str, self.fallback_dirs)))

    def run(self, cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None) -> None:
        argv = [str(a) for a in cmd]
        try:
            done = subprocess.run(
                argv,
                env={**os.environ, **env} if env else None,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as exc:
            raise ImageError(f"cannot run {argv[0]}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).splitlines()[-_LOG_TAIL_LINES:]
            raise ImageError(
                f"`{' '.join(argv)}` failed with exit code {done.returncode}:\n" + "\n".join(output)
            )


class DockerImageStore:
    """ImageStore on the Docker SDK (classic builder: no BuildKit needed)."""

    def __init__(self) -> None:
        import docker

        try:
            self._client = docker.from_env(timeout=int(_DOCKER_TIMEOUT_S))
        except docker.errors.DockerException as exc:
            raise ImageError(f"cannot reach Docker: {exc}") from exc
        self._api = self._client.api

    def inspect(self, ref: str) -> ImageInfo | None:
        import docker

        try:
            attrs = self._api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(id=attrs["Id"], labels=(attrs.get("Config") or {}).get("Labels") or {})

    def pull(self, ref: str, timeout: float) -> None:
        import docker
        import requests
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(ref)
        client = docker.from_env(timeout=int(timeout))
        try:
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ImageError(f"pulling {ref}: {event['error']}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ImageError(f"pulling {ref}: {exc}") from exc
        finally:
            client.close()

    def build(
        self,
        context: Path,
        tag: str,
        *,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        nocache: bool,
        on_step: Progress,
    ) -> str:
        import docker

        output: list[str] = []
        image_id: str | None = None
        try:
            stream = self._api.build(
                path=str(context),
                tag=tag,
                buildargs=dict(buildargs),
                labels=dict(labels),
                nocache=nocache,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            pending_step: str | None = None  # reported once it turns out not to be cached
            for chunk in stream:
                for line in chunk.get("stream", "").splitlines():
                    if not line.strip():
                        continue
                    output.append(line)
                    if pending_step is not None and "Using cache" not in line:
                        on_step(pending_step)
                    pending_step = line if line.startswith("Step ") else None
                if "error" in chunk:
                    tail = "\n".join(output[-_LOG_TAIL_LINES:])
                    raise ImageError(f"docker build of {tag} failed: {chunk['error'].strip()}\n{tail}")
                image_id = (chunk.get("aux") or {}).get("ID", image_id)
        except docker.errors.DockerException as exc:
            raise ImageError(f"docker build of {tag} failed: {exc}") from exc
        found = self.inspect(tag)
        if found is None:
            raise ImageError(f"docker build of {tag} finished without an image")
        return image_id or found.id

    def tag(self, image_id: str, ref: str) -> None:
        repository, _, tag = ref.rpartition(":")
        self._api.tag(image_id, repository, tag, force=True)

    def import_tarball(self, tarball: Path, ref: str, changes: Sequence[str]) -> str:
        repository, _, tag = ref.rpartition(":")
        self._api.import_image(src=str(tarball), repository=repository, tag=tag, changes=list(changes))
        found = self.inspect(ref)
        if found is None:
            raise ImageError(f"docker import of {ref} finished without an image")
        return found.id

    def managed_tags(self) -> dict[str, list[str]]:
        images = self._api.images(filters={"label": f"{LABEL_MANAGED}=true"})
        return {
            image["Id"]: [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] for image in images
        }

    def untag(self, ref: str) -> bool:
        import docker

        try:
            self._api.remove_image(ref)
        except docker.errors.APIError:  # in use by a container (or gone): keep it
            return False
        return True


# --- the builder -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """The project's files that go into the Python images, read once per call."""

    lab: Mapping[Path, bytes]  # lab/ without lab/images/ (Dockerfiles, the Rust server and its target/)
    locustfiles: Mapping[Path, bytes]

    @classmethod
    def read(cls, project: Path) -> Sources:
        return cls(
            lab=snapshot_tree(project / "lab", skip_dirs=[Path("images")]),
            locustfiles=snapshot_tree(project / "locustfiles"),
        )


@dataclass(frozen=True)
class Layout:
    """Where the builder reads its inputs and keeps its build products."""

    project: Path  # the checkout: pyproject.toml, lab/, locustfiles/
    cache: Path  # wheels, build contexts, the lock
    images: Path = IMAGES_DIR

    @classmethod
    def discover(cls, environ: Mapping[str, str] = os.environ) -> Layout:
        project = Path(environ.get("LAB_PROJECT_DIR") or _PACKAGE_DIR.parent)
        if not (project / "pyproject.toml").is_file():
            raise ImageError(
                f"{project}: no pyproject.toml; `lab images` builds from the lab's source checkout "
                "(set LAB_PROJECT_DIR to it)"
            )
        return cls(project=project, cache=Path(environ.get("LAB_CACHE_DIR") or project / ".cache" / "images"))

    @property
    def server(self) -> Path:
        return self.images / "toxiproxy" / "server"

    def dockerfile(self, name: str) -> Path:
        return self.images / name / "Dockerfile"


class ImageBuilder:
    def __init__(
        self,
        layout: Layout,
        store: ImageStore,
        shell: Shell,
        progress: Progress,
        *,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.store = store
        self.shell = shell
        self.progress = progress
        self.environ = environ
        self.clock = clock
        self.wall_clock = wall_clock

    # The whole job ----------------------------------------------------------------------------------

    def ensure(self, requested: str, *, force: bool = False) -> ImageSet:
        official = {name: dockerfile_base_default(self.layout.dockerfile(name)) for name in IMAGE_NAMES}
        mode = self.select_mode(requested, sorted(set(official.values())))
        bases = official if mode == "official" else dict.fromkeys(IMAGE_NAMES, self.ensure_base(force=force))
        base_ids = {ref: self._inspect_required(ref).id for ref in set(bases.values())}

        sources = Sources.read(self.layout.project)
        hashes = {
            name: self.image_hash(name, mode, bases[name], base_ids[bases[name]], sources)
            for name in IMAGE_NAMES
        }
        stale = [name for name in IMAGE_NAMES if force or not self._is_built(name, hashes[name])]
        for name in IMAGE_NAMES:
            if name not in stale:
                self.progress(f"{name}: up to date ({image_ref(name, hashes[name])})")

        lab_wheel = None
        if any(name in PYTHON_IMAGES for name in stale):
            lab_wheel = self.build_lab_wheel(sources.lab)
        wheelhouses: dict[tuple[str, ...], Path] = {}  # one per extras set, made at most once per call
        for name in stale:
            if name in PYTHON_IMAGES:
                assert lab_wheel is not None
                extras = PYTHON_IMAGES[name]
                if extras not in wheelhouses:
                    wheelhouses[extras] = self.wheelhouse(extras, force=force)
                context = self.python_context(name, wheelhouses[extras], lab_wheel, sources.locustfiles)
            else:
                context = self.toxiproxy_context(self.toxiproxy_binary() if mode == "bootstrap" else None)
            self.docker_build(name, context, bases[name], hashes[name], nocache=force)

        for name in IMAGE_NAMES:
            self.store.tag(image_ref(name, hashes[name]), f"lab-{name}:latest")
        return ImageSet(mode=mode, **{name: image_ref(name, hashes[name]) for name in IMAGE_NAMES})

    # Mode --------------------------------------------------------------------------------------------

    def select_mode(self, requested: str, official_bases: Sequence[str]) -> str:
        if requested == "bootstrap":
            self.progress("mode: bootstrap (forced)")
            return "bootstrap"
        missing = [ref for ref in official_bases if self.store.inspect(ref) is None]
        failed_ago = self._no_registry_age() if missing and requested == "auto" else None
        if failed_ago is not None:
            self.progress(
                f"mode: auto -> bootstrap (a pull failed {failed_ago / 60:.0f} min ago; retried after "
                f"{_NO_REGISTRY_MEMO_S / 60:.0f} min, or now with --mode official)"
            )
            return "bootstrap"
        for ref in missing:
            started = self.clock()
            self.progress(f"mode: pulling {ref} ...")
            try:
                self.store.pull(ref, _PULL_TIMEOUT_S)
            except ImageError as exc:
                if requested == "official":
                    raise ImageError(f"official mode: {exc} (use --mode bootstrap with no registry)") from exc
                self.progress(f"mode: auto -> bootstrap (no registry: {_first_line(exc)})")
                self.layout.cache.mkdir(parents=True, exist_ok=True)
                self._no_registry_memo.write_text(f"{self.wall_clock()}\n")
                return "bootstrap"
            self._no_registry_memo.unlink(missing_ok=True)
            self.progress(f"mode: pulled {ref} in {self.clock() - started:.1f}s")
        self.progress(f"mode: official ({requested}; bases {', '.join(official_bases)})")
        return "official"

    @property
    def _no_registry_memo(self) -> Path:
        return self.layout.cache / "no-registry"

    def _no_registry_age(self) -> float | None:
        """Seconds since auto mode last failed to pull, if that is recent enough to skip pulling."""
        try:
            age = self.wall_clock() - float(self._no_registry_memo.read_text())
        except (OSError, ValueError):
            return None
        return age if 0 <= age < _NO_REGISTRY_MEMO_S else None

    # Hashing -----------------------------------------------------------------------------------------

    def image_hash(self, name: str, mode: str, base_ref: str, base_id: str, sources: Sources) -> str:
        parts: list[tuple[str, bytes]] = [
            ("recipe", _RECIPE_VERSION.encode()),
            ("mode", mode.encode()),
            ("base", f"{base_ref}@{base_id}".encode()),
            ("Dockerfile", self.layout.dockerfile(name).read_bytes()),
        ]
        project = self.layout.project
        if name in PYTHON_IMAGES:
            parts.append(("python", _python_tag().encode()))
            parts.append(("pyproject.toml", (project / "pyproject.toml").read_bytes()))
            parts.extend(_tree_parts("lab", sources.lab))
            if name == "locust":
                parts.extend(_tree_parts("locustfiles", sources.locustfiles))
        elif mode == "bootstrap":
            binary = self._binary_override()
            if binary is not None:
                parts.append(("toxiproxy-binary", binary.read_bytes()))
            else:
                server = self._server_manifest().parent
                parts.extend(_tree_parts("server", snapshot_tree(server, skip_dirs=[Path("target")])))
        return content_hash(parts)

    def _is_built(self, name: str, digest: str) -> bool:
        found = self.store.inspect(image_ref(name, digest))
        return found is not None and found.labels.get(LABEL_HASH) == digest

    # Bootstrap base ----------------------------------------------------------------------------------

    def ensure_base(self, *, force: bool) -> str:
        recipe = content_hash(
            [
                ("suite", DEBIAN_SUITE.encode()),
                ("packages", " ".join(BASE_PACKAGES).encode()),
                ("recipe", _RECIPE_VERSION.encode()),
            ]
        )
        found = self.store.inspect(BASE_REF)
        if found is not None and found.labels.get(LABEL_HASH) == recipe and not force:
            self.progress(f"base: reusing {BASE_REF} ({_short_id(found.id)})")
            return BASE_REF
        debootstrap = self._debootstrap()
        mirror = self.environ.get("LAB_DEBIAN_MIRROR") or debian_mirror(_read_apt_sources())
        started = self.clock()
        self.progress(f"base: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} ...")
        self.layout.cache.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="base-", dir=self.layout.cache))
        rootfs, tarball = workdir / "rootfs", workdir / "rootfs.tar"
        try:
            self.shell.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    rootfs,
                    mirror,
                ]
            )
            _slim_rootfs(rootfs)
            self.shell.run(["tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."])
            self.progress(f"base: debootstrap done in {self.clock() - started:.1f}s; docker import ...")
            changes = [
                "ENV LANG=C.UTF-8",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"LABEL {LABEL_MANAGED}=true {LABEL_IMAGE}=base {LABEL_HASH}={recipe}",
                'CMD ["/bin/bash"]',
            ]
            image_id = self.store.import_tarball(tarball, BASE_REF, changes)
        finally:
            _remove_rootfs_workdir(workdir)
        self.progress(f"base: built {BASE_REF} ({_short_id(image_id)}) in {self.clock() - started:.1f}s")
        return BASE_REF

    def _debootstrap(self) -> str:
        found = self.shell.which("debootstrap")
        if found:
            return found
        if os.geteuid() != 0:
            raise ImageError("bootstrap mode needs debootstrap and root: sudo apt-get install debootstrap")
        started = self.clock()
        self.progress(
            "base: debootstrap is not installed; apt-get update && apt-get install -y debootstrap ..."
        )
        apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
        self.shell.run(["apt-get", "update", "-q"], env=apt_env)
        self.shell.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], env=apt_env
        )
        found = self.shell.which("debootstrap")
        if not found:
            raise ImageError("apt-get installed debootstrap but it is not on PATH")
        self.progress(f"base: installed debootstrap in {self.clock() - started:.1f}s")
        return found

    # Wheels ------------------------------------------------------------------------------------------

    def wheelhouse(self, extras: tuple[str, ...], *, force: bool) -> Path:
        """Third-party wheels for the runtime (plus `extras`), cached by the requirement list."""
        requirements = project_requirements(self.layout.project / "pyproject.toml", extras)
        label = "+".join(("runtime", *extras))
        key = content_hash(
            [("python", _python_tag().encode()), ("requirements", "\n".join(requirements).encode())]
        )
        root = self.layout.cache / "wheels"
        target = root / f"{label}-{key[:16]}"
        if target.is_dir() and not force:
            return target
        started = self.clock()
        self.progress(f"wheels: building ({len(requirements)} requirements, {label}) ...")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.shell.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", partial, *requirements]
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        for old in root.glob(f"{label}-*"):  # superseded requirement sets
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        count = len(list(target.glob("*.whl")))
        self.progress(f"wheels: {count} packages ({label}) in {self.clock() - started:.1f}s")
        return target

    def build_lab_wheel(self, lab_source: Mapping[Path, bytes]) -> Path:
        """The project's own wheel, built from exactly the hashed files (no docs, no image sources)."""
        started = self.clock()
        self.progress("wheels: building the lab wheel ...")
        out = self.layout.cache / "lab-wheel"
        shutil.rmtree(out, ignore_errors=True)
        self.layout.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lab-src-", dir=self.layout.cache) as tmp:
            stage = Path(tmp)
            pyproject = self.layout.project / "pyproject.toml"
            shutil.copy2(pyproject, stage / "pyproject.toml")
            readme = tomllib.loads(pyproject.read_text())["project"].get("readme")
            if isinstance(readme, str):  # setuptools needs the file; the images do not need the docs
                (stage / readme).write_text("lab\n")
            _write_tree(lab_source, stage / "lab")
            self.shell.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, stage]
            )
        wheels = list(out.glob("*.whl"))
        if len(wheels) != 1:
            raise ImageError(f"pip wheel made {len(wheels)} wheels of the lab in {out}, expected 1")
        self.progress(f"wheels: {wheels[0].name} in {self.clock() - started:.1f}s")
        return wheels[0]

    # Toxiproxy binary --------------------------------------------------------------------------------

    def _binary_override(self) -> Path | None:
        value = self.environ.get("LAB_TOXIPROXY_BINARY")
        if not value:
            return None
        path = Path(value)
        if not path.is_file():
            raise ImageError(f"LAB_TOXIPROXY_BINARY: {path} is not a file")
        return path

    def _server_manifest(self) -> Path:
        manifest = self.layout.server / "Cargo.toml"
        if not manifest.is_file():
            raise ImageError(
                f"bootstrap mode needs the lab's Toxiproxy server ({manifest} is missing) "
                "or a Toxiproxy-compatible binary in LAB_TOXIPROXY_BINARY"
            )
        return manifest

    def toxiproxy_binary(self) -> Path:
        override = self._binary_override()
        if override is not None:
            self.progress(f"toxiproxy: using LAB_TOXIPROXY_BINARY={override}")
            return override
        manifest = self._server_manifest()
        cargo = self.shell.which("cargo")
        if cargo is None:
            raise ImageError(
                "bootstrap mode builds the Toxiproxy server with cargo, which is not installed (rustup.rs)"
            )
        target_dir = manifest.parent / "target"
        started = self.clock()
        self.progress(f"toxiproxy: cargo build --release --manifest-path {manifest} ...")
        self.shell.run(
            [cargo, "build", "--release", "--manifest-path", manifest],
            env={"CARGO_TARGET_DIR": str(target_dir)},
        )
        binary = target_dir / "release" / "toxiproxy"
        if not binary.is_file():
            raise ImageError(f"cargo build finished but {binary} does not exist")
        self.progress(f"toxiproxy: cargo build done in {self.clock() - started:.1f}s")
        return binary

    # Contexts and docker build -----------------------------------------------------------------------

    def _fresh_context(self, name: str) -> Path:
        context = self.layout.cache / "context" / name
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        shutil.copy2(self.layout.dockerfile(name), context / "Dockerfile")
        return context

    def python_context(
        self, name: str, deps: Path, lab_wheel: Path, locustfiles: Mapping[Path, bytes]
    ) -> Path:
        context = self._fresh_context(name)
        _link_files(deps, sorted(p.name for p in deps.glob("*.whl")), context / "wheels" / "deps")
        _link_files(lab_wheel.parent, [lab_wheel.name], context / "wheels" / "lab")
        if name == "locust":
            (context / "locustfiles").mkdir()
            _write_tree(locustfiles, context / "locustfiles")
        return context

    def toxiproxy_context(self, binary: Path | None) -> Path:
        context = self._fresh_context("toxiproxy")
        (context / "bin").mkdir()
        if binary is not None:
            shutil.copyfile(binary, context / "bin" / "toxiproxy")
            (context / "bin" / "toxiproxy").chmod(0o755)
        return context

    def docker_build(self, name: str, context: Path, base_ref: str, digest: str, *, nocache: bool) -> str:
        ref = image_ref(name, digest)
        started = self.clock()
        self.progress(f"{name}: docker build {ref} (FROM {base_ref}) ...")
        # lab.managed and lab.image are static LABEL lines of the Dockerfiles; each build label costs a step.
        labels = {LABEL_HASH: digest}
        image_id = self.store.build(
            context,
            ref,
            buildargs={"BASE_IMAGE": base_ref},
            labels=labels,
            nocache=nocache,
            on_step=lambda line: self.progress(f"{name}: {line}"),
        )
        self.progress(f"{name}: built {ref} ({_short_id(image_id)}) in {self.clock() - started:.1f}s")
        return image_id

    def _inspect_required(self, ref: str) -> ImageInfo:
        found = self.store.inspect(ref)
        if found is None:
            raise ImageError(f"base image {ref} is not present")
        return found

    # Housekeeping ------------------------------------------------------------------------------------

    def prune(self, keep: ImageSet) -> list[str]:
        """Untag the lab's images other than `keep` and the base; images in use by containers stay."""
        kept = (
            {getattr(keep, name) for name in IMAGE_NAMES}
            | {f"lab-{n}:latest" for n in IMAGE_NAMES}
            | {BASE_REF}
        )
        removed = []
        for tags in self.store.managed_tags().values():
            if kept.intersection(tags):
                continue
            removed.extend(ref for ref in tags if self.store.untag(ref))
        for ref in removed:
            self.progress(f"prune: removed {ref}")
        return removed


def _python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _link_files(source: Path, names: Iterable[str], target: Path) -> None:
    """Hard-link (else copy) files into a build context; the classic builder hashes content, not inodes."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copy2(source / name, target / name)


def _read_apt_sources() -> list[str]:
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return [p.read_text(errors="replace") for p in paths if p.suffix in (".list", ".sources") and p.is_file()]


def _slim_rootfs(rootfs: Path) -> None:
    """Drop what a container base does not need: package caches, manuals, docs (copyright files stay)."""
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*_*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "var/log/*.log",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for path in rootfs.glob("usr/share/doc/*/*"):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts if line.strip()]
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _remove_rootfs_workdir(workdir: Path) -> None:
    """Remove a debootstrap work directory, never following a mount left behind (a failed run's /proc)."""
    for point in _mounts_under(workdir):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if _mounts_under(workdir):
        log.warning("leaving %s in place: something is still mounted under it", workdir)
        return
    shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _build_lock(cache: Path, progress: Progress) -> Iterator[None]:
    """One builder at a time per cache (parallel test sessions share contexts and wheels)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"images: waiting for another `lab images` ({cache / 'lock'}) ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- public API ----------------------------------------------------------------------------------------


def ensure_images(
    mode: str | None = None, *, progress: Progress | None = None, force: bool = False
) -> ImageSet:
    """Build (or reuse) the lab's four images and return their content-hashed references.

    `mode`: "auto" (default; also from $LAB_IMAGE_MODE), "official" or "bootstrap". `progress` gets one
    line per step. `force` rebuilds everything, the bootstrap base and the wheels included.
    Raises BadImageMode for an unknown mode and ImageError when an image cannot be made.
    """
    requested = resolve_mode(mode)
    report: Progress = progress or log.info
    layout = Layout.discover()
    with _build_lock(layout.cache, report), _docker_errors():
        return ImageBuilder(layout, DockerImageStore(), Shell(), report).ensure(requested, force=force)


def prune_images(keep: ImageSet, *, progress: Progress | None = None) -> list[str]:
    """Untag the lab's images other than `keep`; images used by a container stay. Returns what went."""
    report: Progress = progress or log.info
    layout = Layout.discover()
    with _build_lock(layout.cache, report), _docker_errors():
        return ImageBuilder(layout, DockerImageStore(), Shell(), report).prune(keep)


@contextmanager
def _docker_errors() -> Iterator[None]:
    """Docker's own exceptions (a daemon gone mid-build, a refused tag) as ImageError."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ImageError(f"Docker failed: {exc}") from exc


# --- `lab images` ----------------------------------------------------------------------------------------


@click.command("images")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help=f"Base images to use (default: ${MODE_ENV} or auto).",
)
@click.option("--force", is_flag=True, help="Rebuild everything, even what is up to date.")
@click.option("--prune", is_flag=True, help="Afterwards, remove the lab's older images no container uses.")
@click.option("--json", "as_json", is_flag=True, help="Print the image set as one JSON object.")
def command(mode: str | None, force: bool, prune: bool, as_json: bool) -> None:
    """Build or reuse the lab's images (provider, gateway, locust, toxiproxy) and print them."""
    import orjson
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lab.cli import EXIT_BAD_INPUT, EXIT_LAB_FAILED

    errors = Console(stderr=True)
    started = time.monotonic()

    def report(line: str) -> None:
        errors.print(Text.assemble((f"{time.monotonic() - started:6.1f}s ", "dim"), line), soft_wrap=True)

    try:
        images = ensure_images(mode, progress=report, force=force)
        if prune:
            prune_images(images, progress=report)
    except BadImageMode as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_BAD_INPUT)
    except ImageError as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_LAB_FAILED)
    report(f"images: ready ({images.mode})")
    if as_json:
        click.echo(orjson.dumps(dataclasses.asdict(images)).decode())
        return
    table = Table("image", "reference", title=f"lab images ({images.mode})")
    for name in IMAGE_NAMES:
        table.add_row(name, getattr(images, name))
    Console().print(table)
