"""What the contract tests share: where the server is, local upstream servers, socket helpers.

Environment (all optional):
  TOXIPROXY_URL            API of the server under test; unset: the lab's own server is built and started
  TOXIPROXY_UPSTREAM_HOST  address the test upstreams bind to and the server dials (default 127.0.0.1)
  TOXIPROXY_PROXY_HOST     address the proxies listen on and the tests connect to (default 127.0.0.1)
With a server in a container, run it with host networking so that both defaults work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from lab.eventually import wait_for_value

UPSTREAM_HOST = os.environ.get("TOXIPROXY_UPSTREAM_HOST", "127.0.0.1")
PROXY_HOST = os.environ.get("TOXIPROXY_PROXY_HOST", "127.0.0.1")
SERVER_DIR = Path(__file__).resolve().parents[2] / "lab" / "images" / "toxiproxy" / "server"
IO_TIMEOUT = 10.0  # no socket operation in these tests may block longer than this


@dataclass
class Api:
    """A thin HTTP client bound to one server."""

    base: str
    session: requests.Session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


# Upstreams ---------------------------------------------------------------------------------------------


class Upstream:
    """A threaded TCP server on UPSTREAM_HOST; `handler` serves one accepted connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                # The proxy closing or resetting the connection is expected in these tests.
                with contextlib.suppress(OSError):
                    handler(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((UPSTREAM_HOST, 0), Handler)
        # A short poll interval only makes close() return sooner.
        serve = lambda: self._server.serve_forever(poll_interval=0.05)  # noqa: E731
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def send_and_close(payload: bytes) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)

    return handler


# Clients -----------------------------------------------------------------------------------------------


def listen_port(proxy: dict[str, Any]) -> int:
    return int(str(proxy["listen"]).rsplit(":", 1)[1])


def connect(proxy: dict[str, Any]) -> socket.socket:
    sock = socket.create_connection((PROXY_HOST, listen_port(proxy)), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Reads `size` bytes, or fewer if the connection ends first."""
    data = bytearray()
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            break
        data += piece
    return bytes(data)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for `payload` to come back through an echo upstream."""
    started = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.perf_counter() - started


def read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything received until the connection ends, and how it ended: "eof" or "reset"."""
    data = bytearray()
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data), "reset"
        if not piece:
            return bytes(data), "eof"
        data += piece


def nothing_arrives(sock: socket.socket, within: float) -> bool:
    """True if no byte and no close arrives for `within` seconds (a bounded watch, not a wait)."""
    sock.settimeout(within)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(IO_TIMEOUT)
    return False


# The server under test ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_binary() -> Path:
    """The lab's server, built with cargo if cargo is there (a no-op when up to date)."""
    binary = SERVER_DIR / "target" / "release" / "toxiproxy"
    cargo = shutil.which("cargo") or next(
        (str(p) for p in [Path.home() / ".cargo" / "bin" / "cargo"] if p.is_file()), None
    )
    if cargo is not None:
        command = [cargo, "build", "--release", "--quiet", "--manifest-path", str(SERVER_DIR / "Cargo.toml")]
        subprocess.run(command, check=True, timeout=1800)
    elif not binary.is_file():
        pytest.skip("cargo is not installed and the lab's Toxiproxy server is not built: set TOXIPROXY_URL")
    return binary


@dataclass
class LocalServer:
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def local_server(*args: str) -> Iterator[LocalServer]:
    """Runs the lab's server on a free 127.0.0.1 port until the block ends."""
    binary = local_binary()
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(binary), "-host=127.0.0.1", f"-port={port}", *args], stdout=log, stderr=log
        )
        server = LocalServer(f"http://127.0.0.1:{port}", process, log)

        def version_status() -> int:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_text()}")
            return requests.get(server.url + "/version", timeout=2).status_code

        try:
            wait_for_value(
                version_status,
                lambda status: status == 200,
                timeout=20,
                message="toxiproxy answering /version",
                ignore=(requests.ConnectionError,),
            )
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
