"""The wheels the Python images install, built on the host (no index is used inside a build): the
third-party wheelhouse of a requirement set, cached by that set, and the lab's own wheel.

Where the project's metadata comes from depends on how the lab is installed:

- a source checkout (pyproject.toml beside lab/): the requirements are read from pyproject.toml and the lab
  wheel is built with `pip wheel` from a staged copy of pyproject.toml and the lab's files;
- an installed distribution (`pip install lab-*.whl`, no checkout anywhere): the requirements come from the
  installed METADATA (its Requires-Dist, markers evaluated for this host, as `pip wheel` would), and the
  lab wheel is the installed package repacked: its files plus its dist-info's METADATA and entry points.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol

from lab.images.model import ImageError, Progress, content_hash, write_tree
from lab.images.shell import Shell

PACKAGE = "lab"  # the import package the wheel carries, and the distribution's name


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}"


class ProjectMetadata(Protocol):
    """The project's requirements and its own wheel, from whichever source the lab runs from."""

    @property
    def origin(self) -> str: ...
    def requirements(self, extras: Sequence[str]) -> list[str]: ...
    def hash_parts(self) -> list[tuple[str, bytes]]: ...
    def build_lab_wheel(self, lab_files: Mapping[Path, bytes], out: Path, shell: Shell) -> None: ...


def included_extras(
    extras: Sequence[str], includes: Callable[[str], list[str] | None], where: str
) -> list[str]:
    """`extras` and those they pull in through self-references (`lab[a,b]`), each once, in order.
    `includes(extra)` lists the extras `extra` includes, or is None for an extra that does not exist."""
    pending, found = list(extras), []
    while pending:
        extra = pending.pop(0)
        if extra in found:
            continue
        included = includes(extra)
        if included is None:
            raise ImageError(f"{where} has no extra {extra!r}")
        found.append(extra)
        pending.extend(included)
    return found


def project_requirements(pyproject: Path, extras: Sequence[str] = ()) -> list[str]:
    """The project's runtime requirements plus those of `extras` (self-references expanded)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    self_ref = re.compile(rf"^\s*{re.escape(project['name'])}\s*\[([^\]]*)\]")

    def includes(extra: str) -> list[str] | None:
        if extra not in optional:
            return None
        refs = [m.group(1) for r in optional[extra] if (m := self_ref.match(r))]
        return [name.strip() for ref in refs for name in ref.split(",")]

    requirements: list[str] = list(project.get("dependencies", []))
    for extra in included_extras(extras, includes, f"{pyproject}: [project.optional-dependencies]"):
        requirements.extend(r for r in optional[extra] if not self_ref.match(r))
    return sorted(dict.fromkeys(requirements))


def for_this_host(requirements: Iterable[str]) -> list[str]:
    """Requirements with their environment markers evaluated here, as `pip wheel` would (the images are
    built from wheels made on this host), and dropped: the same list whichever way it was declared."""
    from packaging.requirements import Requirement

    kept = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None:
            if not req.marker.evaluate({"extra": ""}):
                continue
            req.marker = None
        kept.append(str(req))
    return sorted(dict.fromkeys(kept))


class CheckoutMetadata:
    """A source checkout: pyproject.toml is the single place for dependencies."""

    def __init__(self, pyproject: Path) -> None:
        self.pyproject = pyproject

    @property
    def origin(self) -> str:
        return str(self.pyproject)

    def requirements(self, extras: Sequence[str]) -> list[str]:
        return for_this_host(project_requirements(self.pyproject, extras))

    def hash_parts(self) -> list[tuple[str, bytes]]:
        return [("pyproject.toml", self.pyproject.read_bytes())]

    def build_lab_wheel(self, lab_files: Mapping[Path, bytes], out: Path, shell: Shell) -> None:
        """`pip wheel` of exactly the hashed files (no docs, no image sources) beside pyproject.toml."""
        with tempfile.TemporaryDirectory(prefix="lab-src-", dir=out.parent) as tmp:
            stage = Path(tmp)
            shutil.copy2(self.pyproject, stage / "pyproject.toml")
            readme = tomllib.loads(self.pyproject.read_text())["project"].get("readme")
            if isinstance(readme, str):  # setuptools needs the file; the images do not need the docs
                (stage / readme).write_text("lab\n")
            write_tree(lab_files, stage / PACKAGE)
            shell.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, stage]
            )


class InstalledMetadata:
    """An installed distribution of the lab (no checkout): its dist-info stands in for pyproject.toml."""

    def __init__(self, dist: metadata.Distribution) -> None:
        self.dist = dist

    @classmethod
    def find(cls) -> InstalledMetadata:
        try:
            return cls(metadata.distribution(PACKAGE))
        except metadata.PackageNotFoundError as exc:
            raise ImageError(
                f"the {PACKAGE!r} distribution is not installed and there is no source checkout "
                "(set LAB_PROJECT_DIR to one)"
            ) from exc

    @property
    def origin(self) -> str:
        return f"the installed {self.dist.metadata['Name']} {self.dist.version}"

    def requirements(self, extras: Sequence[str]) -> list[str]:
        """Requires-Dist of the runtime plus `extras` (self-references expanded), markers evaluated."""
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        def applies(req: Requirement, extra: str) -> bool:
            return req.marker is None or req.marker.evaluate({"extra": extra})

        own = canonicalize_name(self.dist.metadata["Name"])
        provided = {canonicalize_name(e) for e in self.dist.metadata.get_all("Provides-Extra") or []}
        parsed = [Requirement(text) for text in self.dist.requires or []]
        others = [req for req in parsed if canonicalize_name(req.name) != own]
        self_refs = [req for req in parsed if canonicalize_name(req.name) == own and req.marker is not None]

        def includes(extra: str) -> list[str] | None:  # `lab[a,b]; extra == "all"`
            if extra not in provided:
                return None
            return [canonicalize_name(e) for req in self_refs if applies(req, extra) for e in req.extras]

        wanted = included_extras([canonicalize_name(e) for e in extras], includes, f"{self.origin}:")
        chosen = []
        for req in others:
            if any(applies(req, extra) for extra in (*sorted(wanted), "")):
                req.marker = None  # evaluated: for these extras, on this host
                chosen.append(str(req))
        return for_this_host(chosen)

    def _dist_info_files(self) -> dict[str, bytes]:
        found = {}
        for name in ("METADATA", "entry_points.txt"):
            text = self.dist.read_text(name)
            if text is not None:
                found[name] = text.encode()
        if "METADATA" not in found:
            raise ImageError(f"{self.origin}: its dist-info has no METADATA")
        return found

    def hash_parts(self) -> list[tuple[str, bytes]]:
        return [(f"dist-info/{name}", data) for name, data in self._dist_info_files().items()]

    def build_lab_wheel(self, lab_files: Mapping[Path, bytes], out: Path, shell: Shell) -> None:
        """The installed package repacked as a wheel (PEP 427): no build backend, no index."""
        name = re.sub(r"[-_.]+", "_", self.dist.metadata["Name"]).lower()
        stem = f"{name}-{self.dist.version}"
        dist_info = f"{stem}.dist-info"
        files = {f"{PACKAGE}/{rel.as_posix()}": data for rel, data in sorted(lab_files.items())}
        files.update({f"{dist_info}/{n}": data for n, data in self._dist_info_files().items()})
        files[f"{dist_info}/WHEEL"] = (
            b"Wheel-Version: 1.0\nGenerator: lab.images\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        record = [f"{path},sha256={_urlsafe_digest(data)},{len(data)}" for path, data in files.items()]
        files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
        with zipfile.ZipFile(out / f"{stem}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as wheel:
            for path, data in files.items():
                wheel.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_lab_wheel(
    project: ProjectMetadata,
    lab_files: Mapping[Path, bytes],
    cache: Path,
    shell: Shell,
    *,
    progress: Progress,
    clock: Callable[[], float],
) -> Path:
    """The project's own wheel in `<cache>/lab-wheel`, made of exactly the hashed files."""
    started = clock()
    progress("wheels: building the lab wheel ...")
    out = cache / "lab-wheel"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    project.build_lab_wheel(lab_files, out, shell)
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1:
        raise ImageError(f"made {len(wheels)} wheels of the lab in {out}, expected 1")
    progress(f"wheels: {wheels[0].name} in {clock() - started:.1f}s")
    return wheels[0]


def wheelhouse(
    requirements: Sequence[str],
    label: str,
    cache: Path,
    shell: Shell,
    *,
    progress: Progress,
    clock: Callable[[], float],
    force: bool,
) -> Path:
    """Third-party wheels of `requirements` in `<cache>/wheels/<label>-<key>`, kept while the set and
    this Python are the same."""
    listed = "\n".join(requirements).encode()
    key = content_hash([("python", python_tag().encode()), ("requirements", listed)])
    root = cache / "wheels"
    target = root / f"{label}-{key[:16]}"
    if target.is_dir() and not force:
        return target
    started = clock()
    progress(f"wheels: building ({len(requirements)} requirements, {label}) ...")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shell.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", partial, *requirements])
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    for old in root.glob(f"{label}-*"):  # superseded requirement sets
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    count = len(list(target.glob("*.whl")))
    progress(f"wheels: {count} packages ({label}) in {clock() - started:.1f}s")
    return target
