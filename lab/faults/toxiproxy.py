"""A small typed client for one Toxiproxy server, over toxiproxy-python.

toxiproxy-python 0.1.1 is built around one class, `toxiproxy.api.APIConsumer`: its classmethods build the
URL from the class attributes `host` and `port`, send with the `requests` module, and map 404/409/400
answers to the library's `NotFound`/`ProxyExists`/`InvalidToxic` (`validate_response`). `Toxiproxy` and
`Proxy` call that class by its module-level name, so used as they are they reach one server per process
and the only way to point them elsewhere is to rewrite `APIConsumer.host/port` for everyone.

The library's structure allows a per-instance binding without touching it: each `ToxiproxyClient` makes
its own subclass of `APIConsumer` whose `host`/`port` are this server's (the inherited classmethods read
`cls.host`, so nothing shared changes) and whose three verbs send through this client's `requests`
Session (a timeout on every call, no proxy settings from the environment) and then through the library's
own `validate_response`. The answers become the library's objects (`Proxy`, `Toxic`) where it has them.
What the library lacks is added here: toxic update (Toxiproxy updates on POST to the toxic's URL), a
check of every answer (5xx answers pass through the library silently; `add_toxic` returns nothing), and
errors that name the proxy and toxic (`ToxiproxyError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from toxiproxy.api import APIConsumer, validate_response
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy
from toxiproxy.toxic import Toxic as LibraryToxic

from lab.faults.toxics import Toxic


class ToxiproxyError(RuntimeError):
    """Toxiproxy refused or failed a request."""


@dataclass(frozen=True)
class ProxyState:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[dict[str, Any], ...] = ()


class _Consumer(APIConsumer):
    """APIConsumer bound to one server and one Session (subclassed per client, see the module doc)."""

    session: ClassVar[requests.Session]
    timeout: ClassVar[float]

    @classmethod
    def _send(cls, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", cls.timeout)
        response = cls.session.request(method, f"http://{cls.host}:{cls.port}{url}", **kwargs)
        checked: requests.Response = validate_response(response)
        return checked

    @classmethod
    def get(cls, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return cls._send("GET", url, params=params, **kwargs)

    @classmethod
    def post(cls, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        return cls._send("POST", url, data=data, json=json, **kwargs)

    @classmethod
    def delete(cls, url: str, **kwargs: Any) -> requests.Response:
        return cls._send("DELETE", url, **kwargs)


class ToxiproxyClient:
    """One Toxiproxy server at `host:port` (its REST API, 8474 in the container)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        session = requests.Session()
        session.trust_env = False  # the server is on 127.0.0.1 or the lab's network: never via a proxy
        attributes = {"host": host, "port": port, "session": session, "timeout": timeout}
        self._api: type[_Consumer] = type(f"APIConsumer@{host}:{port}", (_Consumer,), attributes)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 10.0) -> ToxiproxyClient:
        """From an API URL such as `http://toxiproxy:8474`."""
        parts = urlsplit(url if "//" in url else f"http://{url}")
        return cls(parts.hostname or "127.0.0.1", parts.port or 8474, timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _call(self, what: str, method: str, path: str, expected: tuple[int, ...], **kwargs: Any) -> Any:
        """One request through the library's consumer; its body (None if empty), or ToxiproxyError."""
        send: Callable[..., requests.Response] = getattr(self._api, method.lower())
        try:
            response = send(path, **kwargs)
        except (ProxyExists, NotFound, InvalidToxic) as exc:
            body = exc.args[0] if exc.args else ""  # the library's exceptions carry the answer's bytes
            detail = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
            raise ToxiproxyError(f"{what}: {type(exc).__name__}: {detail.strip()[:300]}") from exc
        except requests.RequestException as exc:
            raise ToxiproxyError(f"{what}: {self.url} unreachable: {exc}") from exc
        if response.status_code not in expected:  # a 5xx passes the library's validate_response
            raise ToxiproxyError(f"{what}: HTTP {response.status_code}: {response.text.strip()[:300]}")
        try:
            return response.json() if response.content else None
        except ValueError:  # Toxiproxy before 2.7 answers /version with bare text
            return response.text.strip()

    # --- server ------------------------------------------------------------------------------------
    def version(self) -> str:
        """The server's version (JSON `{"version": ...}` since Toxiproxy 2.7, a bare string before)."""
        body = self._call("GET /version", "GET", "/version", (200,))
        return str(body.get("version", body)) if isinstance(body, dict) else str(body)

    def proxies(self) -> dict[str, ProxyState]:
        body = self._call("GET /proxies", "GET", "/proxies", (200,))
        if not isinstance(body, dict):
            raise ToxiproxyError(f"GET /proxies: unexpected answer {body!r}")
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
        self._call("POST /reset", "POST", "/reset", (200, 204))

    # --- proxies -----------------------------------------------------------------------------------
    def create_proxy(self, name: str, *, listen_port: int, upstream: str) -> ProxyState:
        """Create a proxy listening on all interfaces of the Toxiproxy container at `listen_port`.

        (toxiproxy-python's default listen address, 127.0.0.1, is unreachable through Docker's port
        mapping.) `upstream` is resolved inside the Toxiproxy container: use network aliases.
        """
        what = f"create proxy {name!r}"
        body = {"name": name, "upstream": upstream, "listen": f"0.0.0.0:{listen_port}"}
        held = self._call(what, "POST", "/proxies", (200, 201), json=body)
        try:
            proxy = Proxy(**held)
        except (KeyError, TypeError) as exc:
            raise ToxiproxyError(f"{what}: unexpected answer {held!r}") from exc
        if not str(proxy.listen).endswith(f":{listen_port}"):
            raise ToxiproxyError(f"{what}: listens on {proxy.listen}, expected port {listen_port}")
        return ProxyState(
            name=proxy.name, listen=proxy.listen, upstream=proxy.upstream, enabled=proxy.enabled
        )

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disabled: the listener is closed and every open connection dropped (a whole outage)."""
        what = f"{'enable' if enabled else 'disable'} proxy {proxy!r}"
        held = self._call(what, "POST", f"/proxies/{proxy}", (200,), json={"enabled": enabled})
        if not isinstance(held, dict) or held.get("enabled") is not enabled:
            raise ToxiproxyError(f"{what}: the server holds {held!r}")

    # --- toxics ------------------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        what = f"list toxics of {proxy!r}"
        return list(self._call(what, "GET", f"/proxies/{proxy}/toxics", (200,)) or [])

    def add_toxic(self, proxy: str, toxic: Toxic) -> dict[str, Any]:
        """Add a toxic and return it as the server holds it."""
        what = f"add toxic {toxic.toxic_name!r} to {proxy!r}"
        held = self._call(what, "POST", f"/proxies/{proxy}/toxics", (200, 201), json=toxic.to_api())
        return self._checked(held, toxic, what)

    def update_toxic(self, proxy: str, toxic: Toxic) -> dict[str, Any]:
        """Change a toxic's attributes and toxicity in place (its type and stream are fixed); open
        connections are re-wired with the new values."""
        what = f"update toxic {toxic.toxic_name!r} on {proxy!r}"
        body = {"attributes": dict(toxic.attributes), "toxicity": toxic.toxicity}
        held = self._call(what, "POST", f"/proxies/{proxy}/toxics/{toxic.toxic_name}", (200,), json=body)
        return self._checked(held, toxic, what)

    def remove_toxic(self, proxy: str, name: str) -> None:
        what = f"remove toxic {name!r} from {proxy!r}"
        self._call(what, "DELETE", f"/proxies/{proxy}/toxics/{name}", (200, 204))

    @staticmethod
    def _checked(held: Any, wanted: Toxic, what: str) -> dict[str, Any]:
        """The server's toxic, if it is the one wanted (read through the library's Toxic)."""
        try:
            toxic = LibraryToxic(**held)
        except (KeyError, TypeError) as exc:
            raise ToxiproxyError(f"{what}: unexpected answer {held!r}") from exc
        differing = {
            k: (v, toxic.attributes.get(k))
            for k, v in wanted.attributes.items()
            if toxic.attributes.get(k) != v
        }
        if toxic.name != wanted.toxic_name or differing or toxic.stream != wanted.stream:
            raise ToxiproxyError(f"{what}: the server holds {held!r} (wanted vs held: {differing})")
        return dict(held)
