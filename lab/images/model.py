"""The images' vocabulary: their names, labels and modes, the image set a build returns, the errors, and
how the inputs of an image are snapshotted and hashed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[str], None]

MODES = ("auto", "official", "bootstrap")
MODE_ENV = "LAB_IMAGE_MODE"
IMAGE_NAMES = ("provider", "gateway", "locust", "toxiproxy")
# Gateways under test that the lab builds from its own Dockerfiles (on demand, when an adapter names one
# with `build:`): the official image as the base where a registry is reachable, else Debian's package.
GATEWAY_IMAGES = ("haproxy", "nginx")
# Python images -> the extras of the project they install besides its runtime dependencies. All three are
# targets of one Dockerfile (python/Dockerfile); the image's name is its build target.
PYTHON_IMAGES: dict[str, tuple[str, ...]] = {
    "provider": (),
    "gateway": (),
    "locust": ("load", "analysis"),  # the Faults tab's Report button analyses the session in the master
}

LABEL_MANAGED = "lab.managed"
LABEL_IMAGE = "lab.image"
LABEL_HASH = "lab.content-hash"

# Bump to rebuild every image when the way contexts are assembled changes.
RECIPE_VERSION = "1"
HASH_TAG_LENGTH = 12
LOG_TAIL_LINES = 40

# The Dockerfiles and the Toxiproxy server's sources live beside this code (package data when installed).
IMAGES_DIR = Path(__file__).resolve().parent


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


def resolve_mode(mode: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The requested mode: the argument, else $LAB_IMAGE_MODE, else "auto"."""
    source = "--mode"
    if mode is None:
        mode, source = environ.get(MODE_ENV) or "auto", MODE_ENV
    normalized = mode.strip().lower()
    if normalized not in MODES:
        raise BadImageMode(f"{source}: unknown image mode {mode!r} (expected one of: {', '.join(MODES)})")
    return normalized


def dockerfile_dir(name: str) -> str:
    """The folder (under the images directory) of the Dockerfile that builds image `name`."""
    return "python" if name in PYTHON_IMAGES else name


def build_target(name: str) -> str | None:
    """The Dockerfile target that builds image `name` (None: the Dockerfile's last stage)."""
    return name if name in PYTHON_IMAGES else None


def image_ref(name: str, digest: str) -> str:
    return f"lab-{name}:{digest[:HASH_TAG_LENGTH]}"


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


# --- inputs: snapshots and hashes ----------------------------------------------------------------------


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


def tree_parts(label: str, snapshot: Mapping[Path, bytes]) -> Iterator[tuple[str, bytes]]:
    for rel, data in snapshot.items():
        yield f"{label}/{rel.as_posix()}", data


def write_tree(snapshot: Mapping[Path, bytes], target: Path) -> None:
    for rel, data in snapshot.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
