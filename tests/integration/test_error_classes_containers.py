"""Error classes through real containers: the load's own HTTP clients (the open model's DirectSender
with lab.load.poster, and the closed model's Locust FastHttpSession, in a process of their own as Locust
runs) against mock providers behind Toxiproxy and the reference gateway, each made to answer one way.
The status and the body decide before any exception: a 429 is `rate_limited`, a plain 503
`http_status`, a JSON-RPC error in a non-2xx body `rpc_error` with its code; refused, reset and timeout
are told apart."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.containers]

# Sends one eth_blockNumber to each URL with the load's sender and prints what the record would say.
PROBE = """
import json, random, sys
from locust import events
from locust.contrib.fasthttp import FastHttpSession
from lab.load.http_user import RpcSender
from lab.load.open_user import DirectSender

seen = []
events.request.add_listener(lambda context=None, **_: seen.append(context))
out = {}
for url in sys.argv[1:]:
    answers = []
    # the open model's client (the default)
    DirectSender(url, events, random.Random(0), concurrency=1).send("probe")
    answers.append(seen[-1])
    # the closed model's: Locust's FastHttpSession
    session = FastHttpSession(url, events.request, user=None, network_timeout=1.5,
                              connection_timeout=1.5, max_retries=0)
    RpcSender(random.Random(0)).send(session, [{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                                                "params": []}], batch=False, client="probe")
    answers.append(seen[-1])
    out[url] = [[a["entries"][0]["error_class"], a["entries"][0]["rpc_code"], a["http_status"]]
                for a in answers]
print(json.dumps(out))
"""


def probe(*urls: str) -> dict[str, list[Any]]:
    """[error class, JSON-RPC code, HTTP status] per URL, the same from both load models' clients."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *urls],
        env={**env, "LAB_RPC_PATH": "/", "LAB_LOAD_TIMEOUT": "1.5"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answers = dict(orjson.loads(result.stdout.strip().splitlines()[-1]))
    for url, (direct, session) in answers.items():
        assert direct == session, f"{url}: the open model's client says {direct}, Locust's session {session}"
    return {url: direct for url, (direct, _) in answers.items()}


def on_the_lab_network(lab: Any, url: str) -> str:
    """`url` (a name on the lab's network) by the container's address: the host reaches it directly.
    Through a published port Docker's userland proxy stands between, and turns a reset into a plain close
    and a refused connection into a reset."""
    parts = urlsplit(url)
    container = lab.container(parts.hostname)
    container.reload()
    [network] = container.attrs["NetworkSettings"]["Networks"].values()
    return f"{parts.scheme}://{network['IPAddress']}:{parts.port}"


def test_each_way_of_failing_has_its_class(lab_isolated: Any) -> None:
    lab = lab_isolated
    url = {
        pid: on_the_lab_network(lab, ep.upstream_urls["http"]) for pid, ep in lab.endpoints.providers.items()
    }
    faults = [
        # not through the scenario action, whose parameters drop a null code: a plain-text 503
        lab.faults.behavior("p1", {"type": "error_code", "http_status": 503, "code": None}),
        lab.faults.apply({"type": "behavior", "behavior": {"type": "rate_limited", "limit": 0}}, "p2"),
        lab.faults.apply({"type": "behavior", "behavior": {"type": "always_timeout"}}, "p3"),
    ]  # fmt: skip
    try:
        first = probe(url["p1"], url["p2"], url["p3"], lab.endpoints.gateway_url + "/rpc/no-such-chain")
    finally:
        for fault in faults:
            fault.lift()
    assert first[url["p1"]] == ["http_status", None, 503], first
    assert first[url["p2"]][0] == "rate_limited" and first[url["p2"]][2] == 429, first
    assert first[url["p3"]][0] == "timeout", first
    gateway_error = first[lab.endpoints.gateway_url + "/rpc/no-such-chain"]
    assert (
        gateway_error[0] == "rpc_error" and isinstance(gateway_error[1], int) and gateway_error[2] >= 400
    ), "the gateway's own non-2xx with a JSON-RPC error body keeps its code"

    faults = [
        lab.faults.apply({"type": "behavior", "behavior": {"type": "error_code", "http_status": 503,
                                                           "code": -32000, "message": "no upstream"}}, "p1"),
        lab.faults.apply({"type": "reset_peer"}, "p2"),
        lab.faults.apply({"type": "cut"}, "p3"),
    ]  # fmt: skip
    try:
        second = probe(url["p1"], url["p2"], url["p3"])
    finally:
        for fault in faults:
            fault.lift()
    assert second[url["p1"]] == ["rpc_error", -32000, 503], second
    assert second[url["p2"]][0] == "reset", second
    assert second[url["p3"]][0] == "refused", second  # a cut proxy's listener is closed
