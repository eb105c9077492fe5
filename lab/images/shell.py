"""The host commands the builder runs (pip, cargo, debootstrap, tar, apt-get), one failure line each."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.images.model import LOG_TAIL_LINES, ImageError


class Shell:
    """Runs the host commands the builder needs (a fake one in unit tests)."""

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
            output = (done.stdout + done.stderr).splitlines()[-LOG_TAIL_LINES:]
            raise ImageError(
                f"`{' '.join(argv)}` failed with exit code {done.returncode}:\n" + "\n".join(output)
            )
