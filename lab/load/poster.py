"""The open model's HTTP: a JSON body POSTed to one URL over kept-alive connections, with as little
per-request work as the load's rate needs (one Locust process sends thousands a second).

geventhttpclient's connection pool does the connections (connect and read timeouts, a liveness check of
an idle connection before reuse, TLS), httptools' parser (llhttp, as uvicorn uses it) reads the answer;
what remains here is the request's bytes, built once but for the body's length. The layers above them
in geventhttpclient's own client (a header object per request, merged defaults, per-header callbacks in
Python) cost more CPU than everything else a request of the load does.

Transport failures are raised as they come (refused, reset, timed out, closed or unparsable mid-answer):
lab.load.rpc.exception_class names them.
"""

from __future__ import annotations

from typing import Any

import httptools
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.url import URL

_READ_BYTES = 65536


class Answer:
    """An HTTP answer: status, body, and headers by lower-case name (`get`)."""

    __slots__ = ("body", "complete", "headers", "headers_complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.headers_complete = False
        self.keep_alive = False
        self.complete = False
        self.parser = httptools.HttpResponseParser(self)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the answer is complete)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True

    @property
    def ends_at_close(self) -> bool:
        """A body delimited by the connection's close (no length, not chunked)."""
        return "content-length" not in self.headers and "transfer-encoding" not in self.headers


class JsonPoster:
    """POSTs JSON bodies to `url` (http or https), at most `concurrency` at once."""

    def __init__(self, url: str, *, concurrency: int, timeout: float, headers: dict[str, str]) -> None:
        target = URL(url)
        tls = target.scheme == "https"
        port = target.port or (443 if tls else 80)
        pool_class = SSLConnectionPool if tls else ConnectionPool
        options: dict[str, Any] = {"insecure": True} if tls else {}  # as Locust's FastHttpSession
        self.pool = pool_class(
            target.host,
            port,
            target.host,
            port,
            size=concurrency,
            connection_timeout=timeout,
            network_timeout=timeout,
            **options,
        )
        host = target.host if port == (443 if tls else 80) else f"{target.host}:{port}"
        lines = [f"POST {target.request_uri} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    def post(self, body: bytes) -> tuple[int, Answer]:
        """(status, answer) of POSTing `body`; raises the transport's failure."""
        sock = self.pool.get_socket()
        answer = Answer()
        try:
            sock.sendall(b"".join((self._head, str(len(body)).encode(), b"\r\n\r\n", body)))
            while not answer.complete:
                data = sock.recv(_READ_BYTES)
                if not data:
                    if answer.headers_complete and answer.ends_at_close:
                        break
                    raise ConnectionError("the connection closed before the answer was complete")
                answer.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.pool.release_socket(sock)
            raise ConnectionError(f"an answer that is not HTTP: {exc}") from exc
        except BaseException:
            self.pool.release_socket(sock)
            raise
        if answer.complete and answer.keep_alive:
            self.pool.return_socket(sock)
        else:
            self.pool.release_socket(sock)
        status = answer.parser.get_status_code()
        del answer.parser  # the parser and the answer refer to each other: no cycle left for the collector
        return status, answer

    def close(self) -> None:
        self.pool.close()
