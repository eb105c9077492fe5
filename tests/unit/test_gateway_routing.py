"""Request routing through an in-process gateway in front of tiny scripted upstreams: failover, caller
errors, retries, overrides, timeouts, breakers, batches, metadata and bad input."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from lab.eventually import async_wait_for_value
from lab.gateway.launch import GatewayEndpoint, running_gateway


class FakeUpstream:
    """A JSON-RPC endpoint whose answer to every method but eth_blockNumber is set by `mode`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.delay_s = 0.0
        self.gate: asyncio.Event | None = None  # when set, answers wait for it (a provider slow for now)
        self.calls: list[str] = []
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["method"] == "eth_blockNumber" and body["id"] == 1:  # the head poller, not a test request
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": "0x10"})
        self.calls.append(body["method"])
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the upstream's latency
        if self.gate is not None:
            await self.gate.wait()
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        if self.mode == "ok":
            return web.json_response({**answer, "result": self.name})
        if self.mode == "fail":
            return web.json_response(
                {**answer, "error": {"code": -32603, "message": "Internal error"}}, status=500
            )
        if self.mode == "rate_limited":
            return web.json_response(
                {**answer, "error": {"code": -32005, "message": "rate exceeded"}}, status=429
            )
        if self.mode == "caller_error":
            return web.json_response({**answer, "error": {"code": 3, "message": "execution reverted"}})
        if self.mode == "wrong_id":
            return web.json_response({"jsonrpc": "2.0", "id": "other", "result": self.name})
        raise AssertionError(self.mode)


def profile(upstreams: list[FakeUpstream], **gateway: Any) -> str:
    body = {
        "chains": {
            "ethereum": {
                "chain_id": 1,
                "providers": [{"id": u.name, "url": u.url, "priority": i} for i, u in enumerate(upstreams)],
            }
        },
        # The fake upstreams answer with their names, not Ethereum results: answers are not checked here
        # (tests/unit/test_gateway_answers.py does that).
        "gateway": {
            "default_strategy": "priority",
            "head_poll_interval_s": 3600,
            "chain_id_check": False,
            "answer_check": False,
            **gateway,
        },
    }
    return "---\nname: Test\nslug: public\n---\n" + yaml.safe_dump(body)


@asynccontextmanager
async def lab(
    tmp_path: Path, count: int = 2, **gateway: Any
) -> AsyncIterator[tuple[GatewayEndpoint, list[FakeUpstream], aiohttp.ClientSession]]:
    upstreams = [FakeUpstream(f"p{i + 1}") for i in range(count)]
    for upstream in upstreams:
        await upstream.server.start_server()
    path = tmp_path / "public.yml"
    path.write_text(profile(upstreams, **gateway))
    try:
        async with running_gateway(path) as gw, aiohttp.ClientSession() as session:
            yield gw, upstreams, session
    finally:
        for upstream in upstreams:
            await upstream.server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def call(
    session: aiohttp.ClientSession, url: str, payload: Any, **params: str
) -> tuple[int, Any, dict[str, str]]:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    async with session.post(url, data=data, params=params) as response:
        text = await response.read()
        return response.status, (orjson.loads(text) if text else None), dict(response.headers)


def request(method: str = "eth_call", id_: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": []}


def test_a_failing_provider_fails_over_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, _p2), session):
            p1.mode = "fail"
            status, body, headers = await call(
                session, gw.rpc_url("ethereum"), request(), include_meta="headers"
            )
            assert (status, body["result"]) == (200, "p2")
            assert (headers["X-Lasso-Provider"], headers["X-Lasso-Attempts"]) == ("p2", "2")
            assert headers["X-Lasso-Strategy"] == "priority"
            meta = orjson.loads(base64.urlsafe_b64decode(headers["X-Lasso-Meta"] + "=="))
            assert meta["selected_provider"] == {"id": "p2", "protocol": "http"} and meta["retries"] == 1
            assert meta["candidate_providers"] == ["p1:http", "p2:http"]
            failovers = [e for e in gw.gateway.events.history() if e["type"] == "failover"]
            assert [(e["from"], e["to"], e["reason"]) for e in failovers] == [("p1", "p2", "server_error")]

    run(scenario)


@pytest.mark.parametrize("mode", ["rate_limited", "wrong_id"])
def test_rate_limits_and_unusable_answers_fail_over(tmp_path: Path, mode: str) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, _p2), session):
            p1.mode = mode
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["result"] == "p2" and p1.calls == ["eth_call"]

    run(scenario)


def test_caller_errors_are_returned_as_they_are_without_retrying(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, p2), session):
            p1.mode = "caller_error"
            status, body, headers = await call(
                session, gw.rpc_url("ethereum"), request(), include_meta="headers"
            )
            assert status == 200 and body["error"] == {"code": 3, "message": "execution reverted"}
            assert (p1.calls, p2.calls, headers["X-Lasso-Attempts"]) == (["eth_call"], [], "1")
            assert gw.gateway.registry.breaker_snapshot()[0]["consecutive_failures"] == 0

    run(scenario)


def test_with_retries_0_a_failing_provider_leaks_its_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path, retries=0) as (gw, (p1, p2), session):
            p1.mode = "fail"
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["error"]["code"] == -32603 and p2.calls == []

    run(scenario)


def test_a_provider_override_never_fails_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, p2), session):
            p1.mode = "fail"
            url = gw.rpc_url("ethereum", provider="p1")
            _, body, headers = await call(session, url, request(), include_meta="headers")
            assert body["error"]["code"] == -32603 and p2.calls == []
            assert (headers["X-Lasso-Provider"], headers["X-Lasso-Strategy"]) == ("p1", "provider")
            # Lasso's other spelling, /rpc/:chain/:provider_id, is the same override.
            _, body, _ = await call(session, gw.url + "/rpc/ethereum/p2", request())
            assert body["result"] == "p2"

    run(scenario)


def test_a_slow_attempt_times_out_and_fails_over_within_the_deadline(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path, attempt_timeout_s=0.2) as (gw, (p1, _p2), session):
            p1.delay_s = 5
            _, body, headers = await call(session, gw.rpc_url("ethereum"), request(), include_meta="headers")
            assert body["result"] == "p2" and headers["X-Lasso-Attempts"] == "2"

    run(scenario)


def test_the_overall_deadline_bounds_all_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path, count=3, attempt_timeout_s=0.2, deadline_s=0.3) as (gw, upstreams, session):
            for upstream in upstreams:
                upstream.delay_s = 5
            _, body, headers = await call(session, gw.rpc_url("ethereum"), request(), include_meta="headers")
            assert body["error"]["message"] == "Provider unavailable"
            assert body["error"]["data"]["reason"] in ("timeout", "deadline_exceeded")
            assert headers["X-Lasso-Attempts"] == "2"  # the third never started
            assert upstreams[2].calls == []

    run(scenario)


def test_an_open_breaker_is_skipped_until_reset(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path, breaker={"failure_threshold": 2, "cooldown_s": 3600}) as (
            gw,
            (p1, _p2),
            session,
        ):
            p1.mode = "fail"
            for _ in range(2):
                await call(session, gw.rpc_url("ethereum"), request())
            p1.mode = "ok"
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["result"] == "p2" and len(p1.calls) == 2  # skipped: no third call
            opened = [e for e in gw.gateway.events.history() if e["type"] == "breaker"]
            assert [(e["provider"], e["transport"], e["from"], e["to"]) for e in opened] == [
                ("p1", "http", "closed", "open")
            ]
            async with session.post(gw.url + "/admin/breakers/ethereum/p1/reset") as response:
                assert response.status == 200
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["result"] == "p1"
            async with session.post(
                gw.url + "/admin/breakers/1/p1/open", params={"transport": "http"}
            ) as response:
                changed = (await response.json())["changed"]
            assert changed == [
                {"profile": "public", "chain": "ethereum", "provider": "p1", "transport": "http"}
            ]
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["result"] == "p2"
            async with session.get(gw.url + "/admin/breakers") as response:
                states = {
                    (b["provider"], b["transport"]): b["state"] for b in (await response.json())["breakers"]
                }
            assert states == {
                ("p1", "http"): "open",
                ("p1", "ws"): "closed",
                ("p2", "http"): "closed",
                ("p2", "ws"): "closed",
            }

    run(scenario)


def test_all_breakers_open_is_a_provider_unavailable_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, upstreams, session):
            for upstream in upstreams:
                async with session.post(f"{gw.url}/admin/breakers/ethereum/{upstream.name}/open"):
                    pass
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["error"] == {
                "code": -32000,
                "message": "Provider unavailable",
                "data": {"provider": "p1", "reason": "circuit_open"},
            }

    run(scenario)


async def breaker_states(session: aiohttp.ClientSession, gw: GatewayEndpoint) -> dict[str, str]:
    async with session.get(gw.url + "/admin/breakers") as response:
        breakers = (await response.json())["breakers"]
    return {b["provider"]: b["state"] for b in breakers if b["transport"] == "http"}


def test_a_healed_provider_is_probed_first_and_closes_its_breaker(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"breaker": {"failure_threshold": 2, "cooldown_s": 0.2}}
        async with lab(tmp_path, **settings) as (gw, (p1, p2), session):
            p1.mode = p2.mode = "fail"
            for _ in range(2):  # each request tries p1 then p2: both breakers open
                await call(session, gw.rpc_url("ethereum"), request())
            assert await breaker_states(session, gw) == {"p1": "open", "p2": "open"}
            p1.mode = p2.mode = "ok"
            async with session.post(gw.url + "/admin/breakers/ethereum/p1/reset"):
                pass
            await async_wait_for_value(
                lambda: breaker_states(session, gw), lambda s: s["p2"] == "half_open", timeout=10
            )
            # p1 is closed and first by priority, yet the half-open p2 gets the probes it needs to close.
            answers = [
                (await call(session, gw.rpc_url("ethereum"), request()))[1]["result"] for _ in range(3)
            ]
            assert answers == ["p2", "p2", "p1"]
            assert await breaker_states(session, gw) == {"p1": "closed", "p2": "closed"}

    run(scenario)


@pytest.mark.parametrize("panic_routing", [True, False])
def test_when_every_breaker_refuses_panic_routing_tries_anyway(tmp_path: Path, panic_routing: bool) -> None:
    async def scenario() -> None:
        settings = {"breaker": {"failure_threshold": 1, "cooldown_s": 3600, "panic_routing": panic_routing}}
        async with lab(tmp_path, **settings) as (gw, (p1, p2), session):
            p1.mode = p2.mode = "fail"
            await call(session, gw.rpc_url("ethereum"), request())
            assert await breaker_states(session, gw) == {"p1": "open", "p2": "open"}
            p1.mode = p2.mode = "ok"
            _, body, headers = await call(session, gw.rpc_url("ethereum"), request(), include_meta="headers")
            if panic_routing:
                assert body["result"] == "p1" and headers["X-Lasso-Attempts"] == "1"
                assert (
                    b'gateway_panic_attempts_total{chain="ethereum",profile="public",provider="p1"} 1.0'
                    in (gw.gateway.metrics.render())
                )
            else:
                assert body["error"]["data"] == {"provider": "p1", "reason": "circuit_open"}
            # Panic attempts leave the breakers to their own cool-down.
            assert await breaker_states(session, gw) == {"p1": "open", "p2": "open"}

    run(scenario)


def test_a_provider_slow_now_is_tried_after_the_others_before_any_slow_answer(tmp_path: Path) -> None:
    """The oldest attempt in flight on p1 is past slow_call_s: the next request goes to p2 first, although
    p1 is first by priority and has not answered slowly yet."""

    async def scenario() -> None:
        async with lab(tmp_path, slow_call_s=0.05) as (gw, (p1, _p2), session):
            p1.gate = asyncio.Event()
            waiting = asyncio.create_task(call(session, gw.rpc_url("ethereum"), request()))
            (chain,) = gw.gateway.registry.chains()
            primary = next(p for p in chain.providers if p.id == "p1")

            async def oldest_age() -> float:
                return primary.in_flight.oldest_age_s()

            await async_wait_for_value(oldest_age, lambda age: age > 0.05, timeout=10, interval=0.01)
            _, body, headers = await call(session, gw.rpc_url("ethereum"), request(), include_meta="headers")
            assert body["result"] == "p2" and headers["X-Lasso-Attempts"] == "1"
            p1.gate.set()
            _, body, _ = await waiting
            assert body["result"] == "p1"  # a slow answer is still an answer
            assert len(primary.in_flight) == 0
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            assert body["result"] == "p1"  # nothing in flight, one slow call: p1 is first again

    run(scenario)


@pytest.mark.parametrize("slow_call_s", [0.05, None])
def test_slow_answers_open_the_breaker_unless_slow_calls_are_off(
    tmp_path: Path, slow_call_s: float | None
) -> None:
    async def scenario() -> None:
        settings: dict[str, Any] = {
            "slow_call_s": slow_call_s,
            "breaker": {"failure_threshold": 2, "cooldown_s": 3600},
        }
        async with lab(tmp_path, **settings) as (gw, (p1, _p2), session):
            p1.delay_s = 0.2  # above the threshold, one request at a time: nothing slow in flight
            for _ in range(2):
                _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
                assert body["result"] == "p1"
            _, body, _ = await call(session, gw.rpc_url("ethereum"), request())
            breakers = [e for e in gw.gateway.events.history() if e["type"] == "breaker"]
            metrics = gw.gateway.metrics.render()
            if slow_call_s is None:
                assert body["result"] == "p1" and breakers == []
                assert b"gateway_slow_calls_total{" not in metrics
            else:
                assert body["result"] == "p2" and len(p1.calls) == 2
                assert [(e["provider"], e["to"], e["reason"]) for e in breakers] == [
                    ("p1", "open", "failure_threshold:slow")
                ]
                assert (
                    b'gateway_slow_calls_total{chain="ethereum",profile="public",provider="p1"} 2.0'
                    in metrics
                )

    run(scenario)


def test_under_fastest_a_provider_whose_breaker_closes_again_is_judged_by_its_new_latency(
    tmp_path: Path,
) -> None:
    """p1 slow: its slow answer opens its breaker; healed, the probe that closes the breaker replaces
    the averages of its slow days, so `fastest` prefers it again at once."""

    async def scenario() -> None:
        settings: dict[str, Any] = {
            "default_strategy": "fastest",
            "slow_call_s": 0.1,
            "breaker": {"failure_threshold": 1, "success_threshold": 1, "cooldown_s": 0.2},
        }
        async with lab(tmp_path, **settings) as (gw, (p1, p2), session):
            p1.delay_s, p2.delay_s = 0.5, 0.04  # p2 is never slow, but slower than a healthy p1
            answered = [(await call(session, gw.rpc_url("ethereum"), request()))[1]["result"]]
            assert (await breaker_states(session, gw))["p1"] == "open"
            answered.append((await call(session, gw.rpc_url("ethereum"), request()))[1]["result"])
            p1.delay_s = 0
            await async_wait_for_value(
                lambda: breaker_states(session, gw), lambda s: s["p1"] == "half_open", timeout=10
            )
            for _ in range(3):  # the probe, then fastest's choices
                answered.append((await call(session, gw.rpc_url("ethereum"), request()))[1]["result"])
            assert answered == ["p1", "p2", "p1", "p1", "p1"]

    run(scenario)


def test_a_batch_answers_every_entry_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, _p2), session):
            p1.mode = "fail"
            batch = [request(id_=i) for i in range(10)]
            batch.insert(3, {"jsonrpc": "2.0", "method": "eth_call"})  # a notification: no answer
            batch.insert(5, {"not": "a request"})  # after the answer to id 3
            status, body, headers = await call(session, gw.rpc_url("ethereum"), batch, include_meta="headers")
            assert status == 200 and len(body) == 11
            ids = [entry["id"] for entry in body]
            assert ids == [0, 1, 2, 3, None, 4, 5, 6, 7, 8, 9]
            assert all(entry["result"] == "p2" for entry in body if entry["id"] is not None)
            assert body[4]["error"]["code"] == -32600
            providers = headers["X-Lasso-Provider"].split(",")
            assert providers == ["p2"] * 4 + ["-"] + ["p2"] * 6

    run(scenario)


def test_metadata_in_the_body(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, _, session):
            _, body, headers = await call(
                session, gw.rpc_url("ethereum", strategy="fastest"), request(), include_meta="body"
            )
            assert body["result"] in ("p1", "p2") and "X-Lasso-Provider" not in headers
            assert body["lasso_meta"]["strategy"] == "fastest"
            assert body["lasso_meta"]["selected_provider"]["id"] == body["result"]

    run(scenario)


@pytest.mark.parametrize(
    ("path", "payload", "status", "code", "message"),
    [
        ("/rpc/ethereum", b'{"jsonrpc": "2.0", "method": ', 200, -32700, "Parse error"),
        ("/rpc/ethereum", b"\xff\xfe\x00garbage", 200, -32700, "Parse error"),
        ("/rpc/ethereum", b"[]", 200, -32600, "Invalid Request"),
        ("/rpc/ethereum", b'"just a string"', 200, -32600, "Invalid Request"),
        ("/rpc/ethereum", orjson.dumps([request(id_=i) for i in range(51)]), 200, -32600, "batch too large"),
        ("/rpc/ethereum", orjson.dumps(request("eth_subscribe")), 200, -32601, "Use WebSocket"),
        ("/rpc/solana", orjson.dumps(request()), 404, -32602, "Unsupported chain: solana"),
        ("/rpc/12345", orjson.dumps(request()), 404, -32602, "Unsupported chain: 12345"),
        ("/rpc/cheapest/ethereum", orjson.dumps(request()), 400, -32602, "Unknown strategy: cheapest"),
        ("/rpc/provider/nope/ethereum", orjson.dumps(request()), 400, -32602, "Unknown provider: nope"),
        ("/rpc/profile/nope/ethereum", orjson.dumps(request()), 404, -32602, "Profile not found: nope"),
        ("/rpc/a/b/c/d", orjson.dumps(request()), 404, -32602, "Not found"),
        ("/rpc/ethereum", b"[" + b" " * 1_048_576 + b"]", 413, -32600, "Request body too large"),
    ],
)
def test_bad_input_gets_a_json_rpc_error_and_the_gateway_keeps_serving(
    tmp_path: Path, path: str, payload: bytes, status: int, code: int, message: str
) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, _, session):
            got_status, body, headers = await call(session, gw.url + path, payload, include_meta="headers")
            assert (
                got_status == status and body["error"]["code"] == code and message in body["error"]["message"]
            )
            assert body["jsonrpc"] == "2.0" and "X-Lasso-Request-ID" in headers
            _, body, _ = await call(session, gw.rpc_url("1"), request())  # a chain by its id
            assert body["result"] == "p1"

    run(scenario)


def test_profiles_and_their_aliases(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, _, session):
            for path in ("/rpc/profile/public/ethereum", "/rpc/profile/default/priority/1"):
                status, body, _ = await call(session, gw.url + path, request())
                assert (status, body["result"]) == (200, "p1")
            async with session.get(gw.url + "/api/health") as response:
                assert (await response.json())["status"] == "ok"
            async with session.get(gw.url + "/metrics") as response:
                text = await response.text()
            assert 'gateway_requests_total{chain="ethereum",method="eth_call"' in text

    run(scenario)


@pytest.mark.parametrize(
    ("path", "strategy", "provider"),
    [
        ("/rpc/1", "priority", "p1"),
        ("/rpc/round-robin/ethereum", "load-balanced", None),  # an alias
        ("/rpc/profile/public/fastest/1", "fastest", None),
        ("/rpc/provider/p2/ethereum", "provider", "p2"),
        ("/rpc/ethereum/p2", "provider", "p2"),
        ("/rpc/profile/public/provider/p2/1", "provider", "p2"),
        ("/rpc/profile/default/ethereum/p2", "provider", "p2"),
    ],
)
def test_every_route_form_names_its_strategy_and_provider_in_the_headers(
    tmp_path: Path, path: str, strategy: str, provider: str | None
) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, _, session):
            status, body, headers = await call(session, gw.url + path, request(), include_meta="headers")
            assert status == 200 and headers["X-Lasso-Strategy"] == strategy
            assert headers["X-Lasso-Provider"] == body["result"] == (provider or body["result"])
            assert headers["X-Lasso-Attempts"] == "1" and float(headers["X-Lasso-Upstream-Latency-Ms"]) >= 0
            meta = orjson.loads(base64.urlsafe_b64decode(headers["X-Lasso-Meta"] + "=="))
            assert meta["selected_provider"]["id"] == body["result"] and meta["chain"] == "ethereum"

    run(scenario)


def test_an_oversized_websocket_message_closes_the_socket_and_the_gateway_keeps_serving(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with lab(tmp_path, max_body_bytes=2048) as (gw, _, session):
            async with session.ws_connect(gw.ws_url("ethereum")) as ws:
                await ws.send_str(orjson.dumps({**request(), "params": ["x" * 4096]}).decode())
                message = await ws.receive()
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            async with session.ws_connect(gw.ws_url("ethereum")) as ws:
                await ws.send_str(orjson.dumps(request()).decode())
                assert (await ws.receive_json())["result"] == "p1"

    run(scenario)


def test_json_rpc_over_websocket(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, (p1, _), session), session.ws_connect(gw.ws_url("ethereum")) as ws:
            p1.mode = "fail"
            await ws.send_str(orjson.dumps([request(id_=1), request(id_=2)]).decode())
            assert [entry["result"] for entry in await ws.receive_json()] == ["p2", "p2"]
            await ws.send_str(
                orjson.dumps({**request("eth_subscribe"), "params": ["pendingThings"]}).decode()
            )
            assert (await ws.receive_json())["error"]["code"] == -32602
            await ws.send_str("{not json")
            assert (await ws.receive_json())["error"]["code"] == -32700

    run(scenario)


def test_unknown_routes_are_refused_before_the_websocket_upgrade(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, _, session):
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await session.ws_connect(gw.ws_base + "/ws/rpc/solana")
            assert exc.value.status == 404

    run(scenario)


def test_metrics_carry_process_figures_and_the_test_leak_keeps_bytes_per_request(tmp_path: Path) -> None:
    """The soak checks read process_resident_memory_bytes and process_open_fds from /metrics; the
    test-only leak keeps exactly its bytes per HTTP request (a batch is one request) and is off by default."""

    async def scenario() -> None:
        async with lab(tmp_path, test_leak_bytes_per_request=4096) as (gw, _, session):
            assert gw.gateway is not None
            for _ in range(3):
                await call(session, gw.rpc_url("ethereum"), request())
            await call(session, gw.rpc_url("ethereum"), [request(id_=1), request(id_=2)])
            assert [len(chunk) for chunk in gw.gateway.leaked] == [4096] * 4
            async with session.get(gw.url + "/metrics") as response:
                text = await response.text()
            for name in ("process_resident_memory_bytes", "process_open_fds"):
                assert re.search(rf"^{name} [0-9.e+]+$", text, re.MULTILINE), name
        async with lab(tmp_path) as (gw, _, session):
            assert gw.gateway is not None
            await call(session, gw.rpc_url("ethereum"), request())
            assert gw.gateway.leaked == []

    run(scenario)
