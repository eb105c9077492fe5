"""The bootstrap base for machines with no registry: a Debian rootfs made with debootstrap from the host's
apt mirror, slimmed, and `docker import`ed as lab-base:bookworm-py311 (python3 is 3.11 there)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from lab.images.model import (
    LABEL_HASH,
    LABEL_IMAGE,
    LABEL_MANAGED,
    RECIPE_VERSION,
    ImageError,
    Progress,
    content_hash,
    short_id,
)
from lab.images.shell import Shell
from lab.images.store import ImageStore

log = logging.getLogger(__name__)

BASE_REF = "lab-base:bookworm-py311"
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11, the version the project requires
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"


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


def ensure_base(
    store: ImageStore,
    shell: Shell,
    *,
    cache: Path,
    progress: Progress,
    environ: Mapping[str, str],
    clock: Callable[[], float],
    force: bool,
) -> str:
    """The bootstrap base's reference, made unless an image of the same recipe is present."""
    recipe = content_hash(
        [
            ("suite", DEBIAN_SUITE.encode()),
            ("packages", " ".join(BASE_PACKAGES).encode()),
            ("recipe", RECIPE_VERSION.encode()),
        ]
    )
    found = store.inspect(BASE_REF)
    if found is not None and found.labels.get(LABEL_HASH) == recipe and not force:
        progress(f"base: reusing {BASE_REF} ({short_id(found.id)})")
        return BASE_REF
    debootstrap = _debootstrap(shell, progress, clock)
    mirror = environ.get("LAB_DEBIAN_MIRROR") or debian_mirror(_read_apt_sources())
    started = clock()
    progress(f"base: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} ...")
    cache.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="base-", dir=cache))
    rootfs, tarball = workdir / "rootfs", workdir / "rootfs.tar"
    try:
        shell.run(
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
        shell.run(["tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."])
        progress(f"base: debootstrap done in {clock() - started:.1f}s; docker import ...")
        changes = [
            "ENV LANG=C.UTF-8",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"LABEL {LABEL_MANAGED}=true {LABEL_IMAGE}=base {LABEL_HASH}={recipe}",
            'CMD ["/bin/bash"]',
        ]
        image_id = store.import_tarball(tarball, BASE_REF, changes)
    finally:
        _remove_rootfs_workdir(workdir)
    progress(f"base: built {BASE_REF} ({short_id(image_id)}) in {clock() - started:.1f}s")
    return BASE_REF


def _debootstrap(shell: Shell, progress: Progress, clock: Callable[[], float]) -> str:
    """debootstrap's path, installed with apt-get when missing (root only)."""
    found = shell.which("debootstrap")
    if found:
        return found
    if os.geteuid() != 0:
        raise ImageError("bootstrap mode needs debootstrap and root: sudo apt-get install debootstrap")
    started = clock()
    progress("base: debootstrap is not installed; apt-get update && apt-get install -y debootstrap ...")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    shell.run(["apt-get", "update", "-q"], env=apt_env)
    shell.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], env=apt_env)
    found = shell.which("debootstrap")
    if not found:
        raise ImageError("apt-get installed debootstrap but it is not on PATH")
    progress(f"base: installed debootstrap in {clock() - started:.1f}s")
    return found


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
