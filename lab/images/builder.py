"""The builder: decide the mode, hash each image's inputs, build what is stale, tag `:<hash>` and `:latest`.

`ensure_images()` and `prune_images()` are its entry points; `Layout.discover()` finds the inputs, in a
source checkout or in an installed distribution (see lab.images.wheels).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.images import cargo, debootstrap
from lab.images.model import (
    GATEWAY_IMAGES,
    IMAGE_NAMES,
    IMAGES_DIR,
    LABEL_HASH,
    PYTHON_IMAGES,
    RECIPE_VERSION,
    ImageError,
    ImageSet,
    Progress,
    build_target,
    content_hash,
    dockerfile_base_default,
    dockerfile_dir,
    first_line,
    image_ref,
    resolve_mode,
    short_id,
    snapshot_tree,
    tree_parts,
)
from lab.images.shell import Shell
from lab.images.store import DockerImageStore, ImageInfo, ImageStore, docker_errors
from lab.images.wheels import (
    CheckoutMetadata,
    InstalledMetadata,
    ProjectMetadata,
    build_lab_wheel,
    python_tag,
    wheelhouse,
)

log = logging.getLogger(__name__)

PULL_TIMEOUT_S = 20.0  # no progress from the registry for this long: give up
# After a failed pull, auto mode goes straight to bootstrap for this long: a registry that drops packets
# would otherwise cost every call the pull timeout.
NO_REGISTRY_MEMO_S = 3600.0

_PACKAGE_DIR = IMAGES_DIR.parent  # the lab package this code runs from


@dataclass(frozen=True)
class Layout:
    """Where the builder reads its inputs and keeps its build products."""

    package: Path  # the lab package: its files go into the Python images (lab/images/ stays out)
    project: ProjectMetadata  # its requirements and how its own wheel is made
    cache: Path  # wheels, build contexts, the lock
    cargo_target: Path  # cargo's build output for the bootstrap toxiproxy
    images: Path = IMAGES_DIR  # the Dockerfiles and the Toxiproxy server's sources

    @classmethod
    def checkout(cls, root: Path, *, cache: Path | None = None, images: Path = IMAGES_DIR) -> Layout:
        """A source checkout: pyproject.toml and lab/ in `root`."""
        return cls(
            package=root / "lab",
            project=CheckoutMetadata(root / "pyproject.toml"),
            cache=cache or root / ".cache" / "images",
            cargo_target=images / "toxiproxy" / "server" / "target",
            images=images,
        )

    @classmethod
    def installed(cls, *, cache: Path, project: ProjectMetadata | None = None) -> Layout:
        """An installed distribution: the package's own directory, its dist-info, a cache outside it."""
        return cls(
            package=_PACKAGE_DIR,
            project=project or InstalledMetadata.find(),
            cache=cache,
            cargo_target=cache / "toxiproxy-target",  # never into site-packages
        )

    @classmethod
    def discover(cls, environ: Mapping[str, str] = os.environ) -> Layout:
        """The checkout this code runs from (or LAB_PROJECT_DIR), else the installed distribution."""
        explicit = environ.get("LAB_PROJECT_DIR")
        root = Path(explicit) if explicit else _PACKAGE_DIR.parent
        cache = Path(environ["LAB_CACHE_DIR"]) if environ.get("LAB_CACHE_DIR") else None
        if (root / "pyproject.toml").is_file() and (root / "lab").is_dir():
            return cls.checkout(root, cache=cache)
        if explicit:
            raise ImageError(f"LAB_PROJECT_DIR: {root} is not a lab source checkout (pyproject.toml, lab/)")
        user_cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls.installed(cache=cache or user_cache / "lab" / "images")

    @property
    def server(self) -> Path:
        return self.images / "toxiproxy" / "server"

    def dockerfile(self, name: str) -> Path:
        return self.images / dockerfile_dir(name) / "Dockerfile"


@dataclass(frozen=True)
class Sources:
    """The lab's files that go into the Python images, read once per call."""

    lab: Mapping[Path, bytes]  # the lab package without lab/images/ (Dockerfiles, the Rust server, this code)

    @classmethod
    def read(cls, layout: Layout) -> Sources:
        return cls(lab=snapshot_tree(layout.package, skip_dirs=[Path("images")]))


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
        bases = official if mode == "official" else dict.fromkeys(IMAGE_NAMES, self._bootstrap_base(force))
        base_ids = {ref: self._inspect_required(ref).id for ref in set(bases.values())}

        sources = Sources.read(self.layout)
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
            lab_wheel = build_lab_wheel(
                self.layout.project,
                sources.lab,
                self.layout.cache,
                self.shell,
                progress=self.progress,
                clock=self.clock,
            )
        wheelhouses: dict[tuple[str, ...], Path] = {}  # one per extras set, made at most once per call
        for name in stale:
            if name in PYTHON_IMAGES:
                assert lab_wheel is not None
                extras = PYTHON_IMAGES[name]
                if extras not in wheelhouses:
                    wheelhouses[extras] = wheelhouse(
                        self.layout.project.requirements(extras),
                        "+".join(("runtime", *extras)),
                        self.layout.cache,
                        self.shell,
                        progress=self.progress,
                        clock=self.clock,
                        force=force,
                    )
                context = self.python_context(name, wheelhouses[extras], lab_wheel)
            else:
                context = self.toxiproxy_context(self.toxiproxy_binary() if mode == "bootstrap" else None)
            self.docker_build(name, context, bases[name], hashes[name], nocache=force)

        for name in IMAGE_NAMES:
            self.store.tag(image_ref(name, hashes[name]), f"lab-{name}:latest")
        return ImageSet(mode=mode, **{name: image_ref(name, hashes[name]) for name in IMAGE_NAMES})

    def ensure_gateway(self, name: str, requested: str, *, force: bool = False) -> str:
        """A gateway image of the lab's Dockerfiles (lab/images/<name>/): FROM the official image where
        a registry is reachable, else the lab's Debian base with the gateway from Debian's package."""
        if name not in GATEWAY_IMAGES:
            raise ImageError(f"no lab Dockerfile builds a gateway named {name!r} (known: {GATEWAY_IMAGES})")
        official = dockerfile_base_default(self.layout.dockerfile(name))
        mode = self.select_mode(requested, [official])
        base = official if mode == "official" else self._bootstrap_base(force)
        digest = self.image_hash(name, mode, base, self._inspect_required(base).id, Sources({}))
        if force or not self._is_built(name, digest):
            self.docker_build(name, self._fresh_context(name), base, digest, nocache=force)
        else:
            self.progress(f"{name}: up to date ({image_ref(name, digest)})")
        self.store.tag(image_ref(name, digest), f"lab-{name}:latest")
        return image_ref(name, digest)

    def _bootstrap_base(self, force: bool) -> str:
        """The lab's own Debian base (built offline once), for when no official base can be pulled."""
        return debootstrap.ensure_base(
            self.store,
            self.shell,
            cache=self.layout.cache,
            progress=self.progress,
            environ=self.environ,
            clock=self.clock,
            force=force,
        )

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
                f"{NO_REGISTRY_MEMO_S / 60:.0f} min, or now with --mode official)"
            )
            return "bootstrap"
        for ref in missing:
            started = self.clock()
            self.progress(f"mode: pulling {ref} ...")
            try:
                self.store.pull(ref, PULL_TIMEOUT_S)
            except ImageError as exc:
                if requested == "official":
                    raise ImageError(f"official mode: {exc} (use --mode bootstrap with no registry)") from exc
                self.progress(f"mode: auto -> bootstrap (no registry: {first_line(exc)})")
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
        return age if 0 <= age < NO_REGISTRY_MEMO_S else None

    # Hashing -----------------------------------------------------------------------------------------

    def image_hash(self, name: str, mode: str, base_ref: str, base_id: str, sources: Sources) -> str:
        """Everything that goes into image `name`: a change to any of it gives a new tag."""
        parts: list[tuple[str, bytes]] = [
            ("recipe", RECIPE_VERSION.encode()),
            ("mode", mode.encode()),
            ("base", f"{base_ref}@{base_id}".encode()),
            ("Dockerfile", self.layout.dockerfile(name).read_bytes()),
        ]
        if name in PYTHON_IMAGES:
            parts.append(("target", name.encode()))  # one Dockerfile, one target per image
            parts.append(("python", python_tag().encode()))
            parts.extend(self.layout.project.hash_parts())
            parts.extend(tree_parts("lab", sources.lab))
        elif name == "toxiproxy" and mode == "bootstrap":
            parts.extend(cargo.binary_hash_parts(self.layout.server, self.environ))
        return content_hash(parts)

    def _is_built(self, name: str, digest: str) -> bool:
        found = self.store.inspect(image_ref(name, digest))
        return found is not None and found.labels.get(LABEL_HASH) == digest

    # Toxiproxy binary --------------------------------------------------------------------------------

    def toxiproxy_binary(self) -> Path:
        return cargo.toxiproxy_binary(
            self.shell,
            self.layout.server,
            self.layout.cargo_target,
            environ=self.environ,
            progress=self.progress,
            clock=self.clock,
        )

    # Contexts and docker build -----------------------------------------------------------------------

    def _fresh_context(self, name: str) -> Path:
        context = self.layout.cache / "context" / name
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        shutil.copy2(self.layout.dockerfile(name), context / "Dockerfile")
        return context

    def python_context(self, name: str, deps: Path, lab_wheel: Path) -> Path:
        context = self._fresh_context(name)
        _link_files(deps, sorted(p.name for p in deps.glob("*.whl")), context / "wheels" / "deps")
        _link_files(lab_wheel.parent, [lab_wheel.name], context / "wheels" / "lab")
        return context

    def toxiproxy_context(self, binary: Path | None) -> Path:
        context = self._fresh_context("toxiproxy")
        (context / "bin").mkdir()
        if binary is not None:
            # the server, and beside it the client whose `list` is the compose healthcheck (the official
            # image ships Shopify's at the same path); a LAB_TOXIPROXY_BINARY override may come without one
            for name, source in (("toxiproxy", binary), ("toxiproxy-cli", binary.with_name("toxiproxy-cli"))):
                if source.is_file():
                    shutil.copyfile(source, context / "bin" / name)
                    (context / "bin" / name).chmod(0o755)
        return context

    def docker_build(self, name: str, context: Path, base_ref: str, digest: str, *, nocache: bool) -> str:
        ref = image_ref(name, digest)
        target = build_target(name)
        started = self.clock()
        via = f"FROM {base_ref}, target {target}" if target else f"FROM {base_ref}"
        self.progress(f"{name}: docker build {ref} ({via}) ...")
        # lab.managed and lab.image are static LABEL lines of the Dockerfiles; each build label costs a step.
        image_id = self.store.build(
            context,
            ref,
            target=target,
            buildargs={"BASE_IMAGE": base_ref},
            labels={LABEL_HASH: digest},
            nocache=nocache,
            on_step=lambda line: self.progress(f"{name}: {line}"),
        )
        self.progress(f"{name}: built {ref} ({short_id(image_id)}) in {self.clock() - started:.1f}s")
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
            | {f"lab-{n}:latest" for n in (*IMAGE_NAMES, *GATEWAY_IMAGES)}
            | {debootstrap.BASE_REF}
        )
        removed: list[str] = []
        for tags in self.store.managed_tags().values():
            if kept.intersection(tags):
                continue
            removed.extend(ref for ref in tags if self.store.untag(ref))
        for ref in removed:
            self.progress(f"prune: removed {ref}")
        return removed


def _link_files(source: Path, names: Iterable[str], target: Path) -> None:
    """Hard-link (else copy) files into a build context; the classic builder hashes content, not inodes."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copy2(source / name, target / name)


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


# --- entry points ----------------------------------------------------------------------------------------


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
    with _build_lock(layout.cache, report), docker_errors():
        return ImageBuilder(layout, DockerImageStore(), Shell(), report).ensure(requested, force=force)


def ensure_gateway_image(
    name: str, mode: str | None = None, *, progress: Progress | None = None, force: bool = False
) -> str:
    """Build (or reuse) the gateway image `name` of the lab's Dockerfiles (haproxy, nginx); its reference."""
    requested = resolve_mode(mode)
    report: Progress = progress or log.info
    layout = Layout.discover()
    with _build_lock(layout.cache, report), docker_errors():
        return ImageBuilder(layout, DockerImageStore(), Shell(), report).ensure_gateway(
            name, requested, force=force
        )


def prune_images(keep: ImageSet, *, progress: Progress | None = None) -> list[str]:
    """Untag the lab's images other than `keep`; images used by a container stay. Returns what went."""
    report: Progress = progress or log.info
    layout = Layout.discover()
    with _build_lock(layout.cache, report), docker_errors():
        return ImageBuilder(layout, DockerImageStore(), Shell(), report).prune(keep)
