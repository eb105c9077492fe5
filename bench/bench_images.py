"""How long `lab images` takes: warm (nothing changed), after a one-line source edit, and cold (--cold:
everything rebuilt, the bootstrap base and the wheels included; minutes, and the CPU is busy meanwhile).

    .venv/bin/python bench/bench_images.py [--mode bootstrap] [--cold]

Prints each phase's total and the steps the builder timed. Targets: warm in seconds; a source edit
rebuilds only the last steps of the three Python images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab.images import (
    IMAGE_NAMES,
    CheckoutMetadata,
    DockerImageStore,
    ImageSet,
    Layout,
    ensure_images,
    resolve_mode,
)


def timed(label: str, run: Callable[[Callable[[str], None]], ImageSet]) -> None:
    started = time.monotonic()
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(f"{time.monotonic() - started:7.1f}s  {line}")

    result = run(progress)
    total = time.monotonic() - started
    print(f"\n== {label}: {total:.1f}s ({result.mode})")
    for line in lines:
        if any(word in line for word in (" in ", "up to date", "reusing", "waiting")):
            print("   " + line)


def edited_copy(project: Path, into: Path) -> Path:
    """A copy of the checkout's image inputs with one line added to a module of the lab."""
    copy = into / "project"
    copy.mkdir()
    shutil.copy2(project / "pyproject.toml", copy)
    shutil.copytree(project / "lab", copy / "lab", ignore=shutil.ignore_patterns("__pycache__", "images"))
    with (copy / "lab" / "jsonrpc.py").open("a") as module:
        module.write(f"\n# bench edit {time.time()}\n")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", default=None, help="auto (default, or $LAB_IMAGE_MODE), official, bootstrap"
    )
    parser.add_argument("--cold", action="store_true", help="first rebuild everything (lab images --force)")
    args = parser.parse_args()
    mode = resolve_mode(args.mode)

    if args.cold:
        timed(
            "cold (--force: base, wheels, cargo, docker builds without cache)",
            lambda p: ensure_images(mode, progress=p, force=True),
        )
    else:  # builds whatever changed since the last call, so that the next one is really warm
        timed("first call (what changed since the last build)", lambda p: ensure_images(mode, progress=p))
    timed("warm (nothing changed)", lambda p: ensure_images(mode, progress=p))

    layout = Layout.discover()
    if not isinstance(layout.project, CheckoutMetadata):
        print("\n(the source-edit phase needs a source checkout)")
        return
    edited: list[ImageSet] = []
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        os.environ["LAB_PROJECT_DIR"] = str(edited_copy(layout.package.parent, Path(tmp)))
        os.environ["LAB_CACHE_DIR"] = str(layout.cache)  # the same wheels and lock
        try:
            timed(
                "one-line source edit (a copy of the project)",
                lambda p: _keep(edited, ensure_images(mode, progress=p)),
            )
        finally:
            del os.environ["LAB_PROJECT_DIR"], os.environ["LAB_CACHE_DIR"]
    # Point the :latest tags back at the checkout's images, and drop the edited copy's.
    current = ensure_images(mode)
    store = DockerImageStore()
    for name in IMAGE_NAMES:
        if edited and getattr(edited[0], name) != getattr(current, name):
            store.untag(getattr(edited[0], name))


def _keep(into: list[ImageSet], images: ImageSet) -> ImageSet:
    into.append(images)
    return images


if __name__ == "__main__":
    main()
