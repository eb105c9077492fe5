"""Routing metadata for clients that ask for it (`?include_meta=headers|body`, or the request header
`X-Lasso-Include-Meta`), in Lasso's form plus plain headers that need no decoding.

Headers (every response when asked for, errors included):
    X-Lasso-Request-ID            a fresh id per HTTP request
    X-Lasso-Meta                  base64url (unpadded) JSON: Lasso's metadata object (left out above 4 KiB)
    X-Lasso-Provider              the provider whose answer was returned ("-" when none)
    X-Lasso-Strategy              the route's strategy, or "provider" for a provider override
    X-Lasso-Attempts              upstream attempts made (0 when none)
    X-Lasso-Upstream-Latency-Ms   latency of the attempt whose answer was returned ("-" when none)
For a batch, X-Lasso-Provider, X-Lasso-Attempts and X-Lasso-Upstream-Latency-Ms are comma-separated
lists with one element per entry of the response array, in the same order.
With `body`, each response object gets a `lasso_meta` member instead.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from lab.gateway.endpoints import Target
from lab.gateway.router import Routed

META_VERSION = "1.0"
MAX_META_HEADER_BYTES = 4096
NONE = "-"

REQUEST_ID = "X-Lasso-Request-ID"
META = "X-Lasso-Meta"
PROVIDER = "X-Lasso-Provider"
STRATEGY = "X-Lasso-Strategy"
ATTEMPTS = "X-Lasso-Attempts"
UPSTREAM_LATENCY = "X-Lasso-Upstream-Latency-Ms"


def requested(request: web.Request) -> str | None:
    """ "headers", "body" or None."""
    mode = request.query.get("include_meta") if request.query_string else None
    mode = mode or request.headers.get("X-Lasso-Include-Meta")
    return mode if mode in ("headers", "body") else None


def entry_meta(target: Target | None, routed: Routed | None) -> dict[str, Any]:
    if routed is None or routed.provider is None:
        return {"selected_provider": None, "attempts": 0, "retries": 0, "upstream_latency_ms": None}
    breaker = target.chain.by_id[routed.provider].http_breaker.state.value if target else None
    return {
        "selected_provider": {"id": routed.provider, "protocol": "http"},
        "candidate_providers": [f"{p}:http" for p in routed.tried],
        "attempts": routed.attempts,
        "retries": max(routed.attempts - 1, 0),
        "upstream_latency_ms": _ms(routed.upstream_latency_s),
        "circuit_breaker_state": breaker,
    }


def build(
    target: Target | None, routed: list[Routed | None], is_batch: bool, started: float
) -> dict[str, Any]:
    """Lasso's metadata object of one HTTP request."""
    meta: dict[str, Any] = {
        "version": META_VERSION,
        "request_id": uuid.uuid4().hex,
        "strategy": target.strategy_label if target else None,
        "chain": target.chain.name if target else None,
        "transport": "http",
    }
    if is_batch:
        meta["batch"] = [entry_meta(target, r) for r in routed]
    else:
        meta.update(entry_meta(target, routed[0] if routed else None))
    meta["end_to_end_latency_ms"] = _ms(time.perf_counter() - started)
    return meta


def headers(meta: dict[str, Any], routed: list[Routed | None]) -> dict[str, str]:
    out = {
        REQUEST_ID: meta["request_id"],
        STRATEGY: meta["strategy"] or NONE,
        PROVIDER: ",".join(r.provider if r and r.provider else NONE for r in routed) or NONE,
        ATTEMPTS: ",".join(str(r.attempts if r else 0) for r in routed) or "0",
        UPSTREAM_LATENCY: ",".join(_latency_text(r) for r in routed) or NONE,
    }
    encoded = base64.urlsafe_b64encode(orjson.dumps(meta)).rstrip(b"=")
    if len(encoded) <= MAX_META_HEADER_BYTES:
        out[META] = encoded.decode()
    return out


def add_to_body(body: Any, meta: dict[str, Any]) -> Any:
    """`lasso_meta` in each response object (per entry for a batch)."""
    if isinstance(body, dict):
        return {**body, "lasso_meta": meta}
    if isinstance(body, list):
        entries = meta.get("batch", [])
        common = {k: v for k, v in meta.items() if k != "batch"}
        return [
            {**response, "lasso_meta": {**common, **entry}}
            for response, entry in zip(body, entries, strict=True)
        ]
    return body


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _latency_text(routed: Routed | None) -> str:
    if routed is None or routed.upstream_latency_s is None:
        return NONE
    return f"{routed.upstream_latency_s * 1000:.3f}"
