"""HTTP control of the lab's own servers: the mock providers' `/_lab` API and the gateway's admin API.

These are faults by configuration rather than by network or process: a provider that starts failing
or slowing down per request (`PUT /_lab/behavior`), a circuit breaker forced open on the gateway.
"""

from __future__ import annotations

from typing import Any

import requests


class ControlError(RuntimeError):
    """A control endpoint refused a request or could not be reached."""


class ControlClient:
    """Blocking HTTP calls to control endpoints on 127.0.0.1, each with a timeout."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never send lab traffic through an environment proxy

    def status(self, url: str) -> int:
        """The HTTP status of a GET (connection errors raise ControlError)."""
        try:
            return self.session.get(url, timeout=self.timeout).status_code
        except requests.RequestException as exc:
            raise ControlError(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    def request(self, method: str, url: str, *, json: Any = None, expected: tuple[int, ...] = (200,)) -> Any:
        try:
            response = self.session.request(method, url, json=json, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ControlError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in expected:
            raise ControlError(f"{method} {url}: HTTP {response.status_code}: {response.text.strip()[:300]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ControlError(f"{method} {url}: not JSON: {response.text[:200]!r}") from exc

    def close(self) -> None:
        self.session.close()

    # --- mock provider (`lab provider`) -------------------------------------------------------------
    def provider_health(self, control_url: str) -> dict[str, Any]:
        return self.request("GET", f"{control_url}/_lab/health")

    def get_behavior(self, control_url: str) -> dict[str, Any]:
        return self.request("GET", f"{control_url}/_lab/behavior")

    def set_behavior(self, control_url: str, behavior: dict[str, Any]) -> Any:
        return self.request("PUT", f"{control_url}/_lab/behavior", json=behavior, expected=(200, 204))

    def reset_provider(self, control_url: str) -> None:
        self.request("POST", f"{control_url}/_lab/reset", expected=(200, 204))

    def provider_stats(self, control_url: str) -> dict[str, Any]:
        return self.request("GET", f"{control_url}/_lab/stats")

    # --- reference gateway admin API ---------------------------------------------------------------
    def breakers(self, gateway_url: str) -> Any:
        return self.request("GET", f"{gateway_url}/admin/breakers")

    def open_breaker(self, gateway_url: str, chain: str, provider: str) -> None:
        self.request("POST", f"{gateway_url}/admin/breakers/{chain}/{provider}/open", expected=(200, 204))

    def reset_breaker(self, gateway_url: str, chain: str, provider: str) -> None:
        self.request("POST", f"{gateway_url}/admin/breakers/{chain}/{provider}/reset", expected=(200, 204))

    def reset_breakers(self, gateway_url: str) -> None:
        self.request("POST", f"{gateway_url}/admin/breakers/reset", expected=(200, 204))
