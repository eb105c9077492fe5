"""Running the lab's asyncio servers (the mock provider, the reference gateway).

In the server's own process: `run` the event loop, `listen` on a host and port, serve
`until_stop_signal`. From tests and benchmarks: `start_process` runs one as a child `python -m lab`
process until a health URL answers; `LocalServer` is where a started server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import orjson
from aiohttp import web

from lab.eventually import wait_for_value

LOCALHOST = "127.0.0.1"


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed (the servers' hot paths gain from it), else asyncio.

    What exists by now (modules, settings, the app) lives as long as the process: frozen out of the
    garbage collector's generations, full collections no longer scan it on every request burst."""
    gc.freeze()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main)


async def until_stop_signal() -> None:
    """Return when the process gets SIGTERM or SIGINT (a container stop, Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def listen(
    app: web.Application,
    host: str,
    port: int,
    *,
    backlog: int = 128,
    shutdown_timeout: float = 1.0,
    handler_cancellation: bool = False,
) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: any free port) on the running loop; returns the runner, to clean up
    when done, and the bound port. Raises OSError, with nothing left running, if the port is taken."""
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout, handler_cancellation=handler_cancellation
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


@dataclass(frozen=True, kw_only=True)
class LocalServer:
    """Where a server started by a test or benchmark listens. `pid` is set when it runs as a process."""

    port: int
    host: str = LOCALHOST
    pid: int | None = None

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


class ProcessExited(RuntimeError):
    """A `python -m lab` process ended before it became healthy."""


@contextlib.contextmanager
def start_process(
    lab_args: Sequence[str],
    health_url: str,
    name: str,
    *,
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[int]:
    """Run `python -m lab *lab_args` until the block exits (SIGTERM, then SIGKILL) and yield its pid once
    `health_url` answers `{"status": "ok"}`; raise ProcessExited with its stderr if it exits first.
    `cpu` pins it to one core with taskset; `env` adds environment variables."""
    command = [sys.executable, "-m", "lab", *lab_args]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
        try:
            _wait_healthy(process, stderr, health_url, name, startup_timeout)
            yield process.pid
        finally:
            _stop(process)


def _wait_healthy(
    process: subprocess.Popen[bytes], stderr: IO[bytes], health_url: str, name: str, timeout: float
) -> None:
    def health() -> Any:  # the parsed JSON body
        if process.poll() is not None:
            stderr.seek(0)
            output = stderr.read().decode(errors="replace").strip()
            raise ProcessExited(f"{name} exited with {process.returncode}: {output}")
        with urllib.request.urlopen(health_url, timeout=1.0) as response:
            return orjson.loads(response.read())

    wait_for_value(
        health,
        lambda body: isinstance(body, dict) and body.get("status") == "ok",
        timeout=timeout,
        message=f"{name} healthy at {health_url}",
        ignore=(OSError,),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
