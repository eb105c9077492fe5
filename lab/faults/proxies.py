"""A small typed client for one Toxiproxy server, over toxiproxy-python.

toxiproxy-python 0.1.1 keeps the server address in class attributes (one server per process), sends
requests without timeouts, returns None from `add_toxic`, has no toxic update and lets 5xx answers
through silently. This wrapper binds the address under a lock for each call, gives every request a
timeout, checks every answer and raises `ToxiproxyError` naming the proxy and toxic.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import toxiproxy.api
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from lab.faults.toxics import Toxic

_BIND_LOCK = threading.RLock()


class ToxiproxyError(RuntimeError):
    """Toxiproxy refused or failed a request."""


class _RequestsWithTimeout:
    """Stands in for the `requests` module inside toxiproxy-python: a timeout on every call, and no
    proxy settings from the environment (the server is always on 127.0.0.1)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self._session.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self._call("DELETE", url, **kwargs)


_TRANSPORT = _RequestsWithTimeout(timeout=10.0)
toxiproxy.api.requests = _TRANSPORT  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProxyState:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[dict[str, Any], ...] = ()


def _check(response: requests.Response, what: str, expected: tuple[int, ...]) -> requests.Response:
    if response.status_code not in expected:
        raise ToxiproxyError(f"{what}: HTTP {response.status_code}: {response.text.strip()[:300]}")
    return response


class ToxiproxyClient:
    """One Toxiproxy server at `host:port` (its REST API, 8474 in the container)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @contextlib.contextmanager
    def _bound(self, what: str) -> Iterator[None]:
        """Point toxiproxy-python at this server for the duration of one call; translate its errors."""
        with _BIND_LOCK:
            APIConsumer.host, APIConsumer.port = self.host, self.port
            _TRANSPORT.timeout = self.timeout
            try:
                yield
            except (ProxyExists, NotFound, InvalidToxic) as exc:
                detail = (
                    exc.args[0].decode(errors="replace")
                    if exc.args and isinstance(exc.args[0], bytes)
                    else exc
                )
                raise ToxiproxyError(f"{what}: {type(exc).__name__}: {detail}") from exc
            except (KeyError, TypeError) as exc:  # toxiproxy-python builds objects from a 5xx error body
                raise ToxiproxyError(f"{what}: unexpected answer from Toxiproxy ({exc})") from exc
            except requests.RequestException as exc:
                raise ToxiproxyError(f"{what}: {self.url} unreachable: {exc}") from exc

    # --- server ------------------------------------------------------------------------------------
    def version(self) -> str:
        """The server's version (JSON `{"version": ...}` since Toxiproxy 2.7, a bare string before)."""
        with self._bound("GET /version"):
            response = _check(APIConsumer.get("/version"), "GET /version", (200,))
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()
        return str(body.get("version", body)) if isinstance(body, dict) else str(body)

    def proxies(self) -> dict[str, ProxyState]:
        with self._bound("GET /proxies"):
            body = _check(APIConsumer.get("/proxies"), "GET /proxies", (200,)).json()
        return {
            name: ProxyState(
                name=name,
                listen=str(p.get("listen", "")),
                upstream=str(p.get("upstream", "")),
                enabled=bool(p.get("enabled", False)),
                toxics=tuple(p.get("toxics") or ()),
            )
            for name, p in body.items()
        }

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        with self._bound("POST /reset"):
            if not Toxiproxy().reset():
                raise ToxiproxyError("POST /reset failed")

    # --- proxies -----------------------------------------------------------------------------------
    def create_proxy(self, name: str, *, listen_port: int, upstream: str) -> ProxyState:
        """Create a proxy listening on all interfaces of the Toxiproxy container at `listen_port`.

        (toxiproxy-python's default listen address, 127.0.0.1, is unreachable through Docker's port
        mapping.) `upstream` is resolved inside the Toxiproxy container: use network aliases.
        """
        what = f"create proxy {name!r}"
        with self._bound(what):
            proxy = Toxiproxy().create(upstream=upstream, name=name, listen=f"0.0.0.0:{listen_port}")
        if not str(proxy.listen).endswith(f":{listen_port}"):
            raise ToxiproxyError(f"{what}: listens on {proxy.listen}, expected port {listen_port}")
        return ProxyState(name=name, listen=proxy.listen, upstream=proxy.upstream, enabled=proxy.enabled)

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disabled: the listener is closed and every open connection dropped (a whole outage)."""
        what = f"{'enable' if enabled else 'disable'} proxy {proxy!r}"
        with self._bound(what):
            response = _check(APIConsumer.post(f"/proxies/{proxy}", json={"enabled": enabled}), what, (200,))
        if response.json().get("enabled") is not enabled:
            raise ToxiproxyError(f"{what}: the server reports enabled={response.json().get('enabled')}")

    # --- toxics ------------------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        what = f"list toxics of {proxy!r}"
        with self._bound(what):
            return list(_check(APIConsumer.get(f"/proxies/{proxy}/toxics"), what, (200,)).json())

    def add_toxic(self, proxy: str, toxic: Toxic) -> dict[str, Any]:
        """Add a toxic and return it as the server holds it."""
        what = f"add toxic {toxic.toxic_name!r} to {proxy!r}"
        with self._bound(what):
            # Proxy.add_toxic discards the answer; its API consumer returns it for checking.
            response = APIConsumer.post(f"/proxies/{proxy}/toxics", json=toxic.to_api())
        return self._checked_toxic(_check(response, what, (200, 201)).json(), toxic, what)

    def update_toxic(self, proxy: str, toxic: Toxic) -> dict[str, Any]:
        """Change a toxic's attributes and toxicity in place (its type and stream are fixed).

        toxiproxy-python has no update call; Toxiproxy updates on POST to the toxic's URL, and open
        connections are re-wired with the new values.
        """
        what = f"update toxic {toxic.toxic_name!r} on {proxy!r}"
        body = {"attributes": toxic.attributes(), "toxicity": toxic.toxicity}
        with self._bound(what):
            response = APIConsumer.post(f"/proxies/{proxy}/toxics/{toxic.toxic_name}", json=body)
        return self._checked_toxic(_check(response, what, (200,)).json(), toxic, what)

    def remove_toxic(self, proxy: str, name: str) -> None:
        what = f"remove toxic {name!r} from {proxy!r}"
        with self._bound(what):
            _check(APIConsumer.delete(f"/proxies/{proxy}/toxics/{name}"), what, (200, 204))

    @staticmethod
    def _checked_toxic(held: Any, wanted: Toxic, what: str) -> dict[str, Any]:
        if not isinstance(held, dict) or held.get("name") != wanted.toxic_name:
            raise ToxiproxyError(f"{what}: unexpected answer {held!r}")
        attributes = held.get("attributes") or {}
        differing = {
            k: (v, attributes.get(k)) for k, v in wanted.attributes().items() if attributes.get(k) != v
        }
        if differing or held.get("stream", wanted.stream) != wanted.stream:
            raise ToxiproxyError(f"{what}: the server holds {held!r} (wanted vs held: {differing})")
        return held
