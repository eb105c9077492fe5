"""The open model's HTTP client (lab.load.poster) against a scripted local server: kept-alive
connections, every way an answer's body can end, and every way of failing, named as the record names
them."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from lab.load.poster import JsonPoster
from lab.load.rpc import exception_class

Reply = Callable[[bytes], bytes | None]  # the request's body -> the raw answer (None: say nothing)


@contextmanager
def server(reply: Reply, *, close_after: bool = False) -> Iterator[dict[str, int]]:
    """A server on 127.0.0.1 answering every request of a connection with `reply`; counts connections."""
    seen = {"connections": 0, "requests": 0}
    silent = threading.Event()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            seen["connections"] += 1
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    chunk = self.rfile.read(1)
                    if not chunk:
                        return
                    head += chunk
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                seen["requests"] += 1
                answer = reply(self.rfile.read(length))
                if answer is None:
                    silent.wait(5)
                    return
                self.wfile.write(answer)
                self.wfile.flush()
                if close_after:
                    return

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        seen["port"] = srv.server_address[1]
        try:
            yield seen
        finally:
            silent.set()
            srv.shutdown()


def poster(port: int, timeout: float = 2.0) -> JsonPoster:
    return JsonPoster(
        f"http://127.0.0.1:{port}/rpc",
        concurrency=4,
        timeout=timeout,
        headers={"Content-Type": "application/json"},
    )


def echo_with_length(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lasso-Provider: p1\r\n\r\n%s" % (len(body), body)


def test_answers_come_back_over_one_kept_alive_connection() -> None:
    with server(echo_with_length) as seen:
        client = poster(seen["port"])
        for body in (b'{"id":1}', b'{"id":2}', b'{"id":3}'):
            status, answer = client.post(body)
            assert (status, bytes(answer.body)) == (200, body)
        assert answer.get("X-LASSO-PROVIDER") == "p1"  # names in any case, as read_meta asks
        client.close()
    assert (seen["connections"], seen["requests"]) == (1, 3)


def test_a_chunked_answer_is_joined() -> None:
    def chunked(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"

    with server(chunked) as seen:
        client = poster(seen["port"])
        assert [bytes(client.post(b"{}")[1].body) for _ in range(2)] == [b"abcde", b"abcde"]
    assert seen["connections"] == 1


def test_an_answer_saying_close_is_not_reused_and_one_ending_at_the_close_is_whole() -> None:
    def close(body: bytes) -> bytes:
        return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"

    with server(close, close_after=True) as seen:
        client = poster(seen["port"])
        assert [client.post(b"{}")[0] for _ in range(2)] == [503, 503]
    assert seen["connections"] == 2

    def until_close(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body

    with server(until_close, close_after=True) as seen:
        status, answer = poster(seen["port"]).post(b'{"whole": true}')
        assert (status, bytes(answer.body)) == (200, b'{"whole": true}')


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            lambda body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            "connection",
        ),  # closed mid-body
        (lambda body: b"NOT HTTP AT ALL\r\n\r\n", "connection"),  # unparsable
        (lambda body: None, "timeout"),  # never answers
    ],
    ids=["closed-mid-answer", "unparsable", "silent"],
)
def test_a_failing_answer_raises_what_the_record_names(reply: Reply, expected: str) -> None:
    with server(reply, close_after=True) as seen:
        client = poster(seen["port"], timeout=0.5)
        with pytest.raises(BaseException) as failure:
            client.post(b"{}")
        assert exception_class(failure.value) == expected, repr(failure.value)


def test_nothing_listening_is_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError) as failure:
        poster(port).post(b"{}")
    assert exception_class(failure.value) == "refused"
