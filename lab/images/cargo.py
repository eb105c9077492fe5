"""The toxiproxy binary of the bootstrap path: the lab's Toxiproxy-compatible server built with cargo from
`lab/images/toxiproxy/server`, or a binary named by LAB_TOXIPROXY_BINARY instead."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from lab.images.model import ImageError, Progress, snapshot_tree, tree_parts
from lab.images.shell import Shell

BINARY_ENV = "LAB_TOXIPROXY_BINARY"


def binary_override(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(BINARY_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ImageError(f"{BINARY_ENV}: {path} is not a file")
    return path


def server_manifest(server: Path) -> Path:
    manifest = server / "Cargo.toml"
    if not manifest.is_file():
        raise ImageError(
            f"bootstrap mode needs the lab's Toxiproxy server ({manifest} is missing) "
            f"or a Toxiproxy-compatible binary in {BINARY_ENV}"
        )
    return manifest


def binary_hash_parts(server: Path, environ: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """What the bootstrap toxiproxy image's binary is made of: the override's bytes, else the server's
    sources (Cargo.lock included, its build output not)."""
    override = binary_override(environ)
    if override is not None:
        return [("toxiproxy-binary", override.read_bytes())]
    sources = snapshot_tree(server_manifest(server).parent, skip_dirs=[Path("target")])
    return list(tree_parts("server", sources))


def toxiproxy_binary(
    shell: Shell,
    server: Path,
    target_dir: Path,
    *,
    environ: Mapping[str, str],
    progress: Progress,
    clock: Callable[[], float],
) -> Path:
    """The override, else `cargo build --release` of the server into `target_dir`."""
    override = binary_override(environ)
    if override is not None:
        progress(f"toxiproxy: using {BINARY_ENV}={override}")
        return override
    manifest = server_manifest(server)
    cargo = shell.which("cargo")
    if cargo is None:
        raise ImageError(
            "bootstrap mode builds the Toxiproxy server with cargo, which is not installed (rustup.rs)"
        )
    started = clock()
    progress(f"toxiproxy: cargo build --release --manifest-path {manifest} ...")
    shell.run(
        [cargo, "build", "--release", "--manifest-path", manifest],
        env={"CARGO_TARGET_DIR": str(target_dir)},
    )
    binary = target_dir / "release" / "toxiproxy"
    if not binary.is_file():
        raise ImageError(f"cargo build finished but {binary} does not exist")
    progress(f"toxiproxy: cargo build done in {clock() - started:.1f}s")
    return binary
