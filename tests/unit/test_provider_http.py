"""The provider over HTTP, in-process with a fake clock: JSON-RPC edge cases, every behaviour's HTTP
shape, and the control API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from lab.eventually import async_wait_for_value
from lab.provider.launch import FakeClock, ProviderEndpoint, running_provider

GENESIS = 1_700_000_000
START = GENESIS + 10_000  # head 10_000 with the default 1 s block time

Scenario = Callable[[aiohttp.ClientSession, ProviderEndpoint, FakeClock], Awaitable[None]]


def run(scenario: Scenario, provider_id: str = "p1", **options: Any) -> None:
    async def main() -> None:
        clock = FakeClock(START)
        async with (
            running_provider(provider_id, clock=clock, head_feed=False, **options) as provider,
            aiohttp.ClientSession() as client,
        ):
            await scenario(client, provider, clock)

    asyncio.run(main())


def rpc(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        request["params"] = params
    return request


async def post(client: aiohttp.ClientSession, provider: ProviderEndpoint, body: Any) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with client.post(provider.url, data=data) as response:
        raw = await response.read()
        is_json = response.content_type == "application/json" and raw
        return response.status, orjson.loads(raw) if is_json else raw.decode(), response.headers


async def put_behavior(client: aiohttp.ClientSession, provider: ProviderEndpoint, spec: Any) -> Any:
    async with client.put(provider.control_url + "behavior", data=orjson.dumps(spec)) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def get(client: aiohttp.ClientSession, url: str) -> Any:
    async with client.get(url) as response:
        assert response.status == 200
        return await response.json()


# --- JSON-RPC over HTTP --------------------------------------------------------------------------------


def test_single_request_is_answered_and_names_the_provider() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        status, body, headers = await post(client, provider, rpc("eth_blockNumber", id_="a"))
        assert (status, body) == (200, {"jsonrpc": "2.0", "id": "a", "result": hex(10_000)})
        assert headers["X-Lab-Provider"] == "p1"
        clock.advance(2)
        assert (await post(client, provider, rpc("eth_blockNumber")))[1]["result"] == hex(10_002)

    run(scenario)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"jsonrpc": "2.0", "method": "eth_blockNumber", "id": 1', {"code": -32700, "id": None}),
        (b"[]", {"code": -32600, "id": None}),
        (b'{"jsonrpc": "1.0", "method": "eth_blockNumber", "id": 4}', {"code": -32600, "id": 4}),
        (b'{"jsonrpc": "2.0", "method": 5, "id": 4}', {"code": -32600, "id": 4}),
        (b'{"jsonrpc": "2.0", "method": "eth_nope", "id": 4}', {"code": -32601, "id": 4}),
        (b'{"jsonrpc": "2.0", "method": "eth_getBalance", "params": [], "id": 4}', {"code": -32602, "id": 4}),
        (b'{"jsonrpc": "2.0", "method": "eth_blockNumber", "params": 3, "id": 4}', {"code": -32600, "id": 4}),
        (b'"just a string"', {"code": -32600, "id": None}),
    ],
)
def test_protocol_errors_follow_the_spec(payload: bytes, expected: dict[str, Any]) -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        status, body, _ = await post(client, provider, payload)
        assert status == 200
        assert (body["error"]["code"], body["id"]) == (expected["code"], expected["id"])

    run(scenario)


def test_batches_garbage_entries_and_notifications() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        status, body, _ = await post(client, provider, [1, "x", None])
        assert status == 200 and [entry["error"]["code"] for entry in body] == [-32600] * 3
        mixed = [
            rpc("eth_chainId", id_=1),
            {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no response
            {"foo": "bar"},
            rpc("eth_nope", id_=3),
            rpc("net_version", id_=4),
        ]
        status, body, _ = await post(client, provider, mixed)
        assert status == 200
        assert [(entry["id"], entry.get("result"), entry.get("error", {}).get("code")) for entry in body] == [
            (1, "0x1", None),
            (None, None, -32600),
            (3, None, -32601),
            (4, "1", None),
        ]
        status, body, _ = await post(client, provider, {"jsonrpc": "2.0", "method": "eth_chainId"})
        assert (status, body) == (204, "")
        status, body, _ = await post(client, provider, [{"jsonrpc": "2.0", "method": "eth_chainId"}] * 2)
        assert (status, body) == (204, "")

    run(scenario)


def test_bodies_over_the_limit_get_413_with_or_without_a_length() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        big = orjson.dumps(rpc("eth_call", [{"data": "0x" + "00" * 4000}]))
        status, body, headers = await post(client, provider, big)
        assert status == 413 and body["error"]["code"] == -32600 and headers["X-Lab-Provider"] == "p1"

        async def chunks() -> Any:
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        async with client.post(provider.url, data=chunks()) as response:  # chunked: no Content-Length
            assert response.status == 413
        assert (await post(client, provider, rpc("eth_chainId")))[0] == 200  # still serving

    run(scenario, max_body_bytes=4096)


def test_every_response_names_the_provider() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        for url in (provider.url, provider.url + "nowhere", provider.control_url + "health"):
            async with client.get(url) as response:
                assert response.headers["X-Lab-Provider"] == "p1", url
        async with client.get(provider.url) as response:
            assert response.status == 405
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        async with client.get(provider.ws_url, headers=upgrade) as response:
            assert response.status == 101 and response.headers["X-Lab-Provider"] == "p1"

    run(scenario, provider_id="p1")


def test_a_wide_get_logs_does_not_stall_other_clients() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        wide = asyncio.create_task(post(client, provider, rpc("eth_getLogs", [{"fromBlock": hex(1)}])))
        stats_url = provider.control_url + "stats"
        # The control API answers while the scan runs: it runs off the event loop.
        await async_wait_for_value(
            lambda: get(client, stats_url), lambda s: s["requests"]["in_flight"] == 1, timeout=5
        )
        status, body, _ = await post(client, provider, rpc("eth_blockNumber"))
        assert status == 200 and not wide.done()  # answered while the scan of 10,000 blocks goes on
        status, body, _ = await wide
        assert status == 200 and len(body["result"]) > 10_000

    run(scenario, logs_max_range=20_000, logs_max_results=100_000)


def test_subscriptions_are_refused_over_http() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        _, body, _ = await post(client, provider, rpc("eth_subscribe", ["newHeads"]))
        assert body["error"]["code"] == -32601 and "WebSocket" in body["error"]["message"]

    run(scenario)


# --- behaviours over HTTP ------------------------------------------------------------------------------


def test_rate_limited_answers_429_with_retry_after_and_minus_32005() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, {"type": "rate_limited", "limit": 2, "window_s": 10})
        for _ in range(2):
            assert (await post(client, provider, rpc("eth_blockNumber")))[0] == 200
        status, body, headers = await post(client, provider, rpc("eth_blockNumber", id_=9))
        assert status == 429 and headers["Retry-After"] == "10"
        assert body["id"] == 9 and body["error"]["code"] == -32005
        assert body["error"]["data"]["limit"] == 2
        clock.advance(10)  # the next window
        status, body, _ = await post(
            client,
            provider,
            [rpc("eth_chainId", id_=1), rpc("eth_chainId", id_=2), rpc("eth_chainId", id_=3)],
        )
        assert status == 200 and [("result" in entry) for entry in body] == [True, True, False]
        status, body, _ = await post(client, provider, [rpc("eth_chainId", id_=1)])
        assert status == 429 and body[0]["error"]["code"] == -32005

    run(scenario)


def test_always_fail_is_http_500_with_a_json_rpc_error_by_default() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, "always_fail")
        status, body, _ = await post(client, provider, rpc("eth_blockNumber", id_=5))
        assert status == 500 and body == {
            "jsonrpc": "2.0",
            "id": 5,
            "error": {"code": -32603, "message": "Internal error"},
        }

    run(scenario)


def test_error_code_can_answer_like_a_load_balancer_or_like_a_node() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, {"type": "error_code", "http_status": 502, "code": None})
        status, body, headers = await post(client, provider, rpc("eth_blockNumber"))
        assert (status, body) == (502, "502 Bad Gateway\n") and headers["X-Lab-Provider"] == "p1"
        await put_behavior(
            client, provider, {"type": "error_code", "code": -32000, "message": "header not found"}
        )
        status, body, _ = await post(client, provider, rpc("eth_blockNumber"))
        assert status == 200 and body["error"] == {"code": -32000, "message": "header not found"}

    run(scenario)


def test_always_timeout_holds_until_the_bound_or_until_the_client_leaves() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, {"type": "always_timeout", "max_hold_s": 0.2})
        status, body, _ = await post(client, provider, rpc("eth_blockNumber"))
        assert status == 504 and body["error"]["message"] == "request timed out"

        await put_behavior(client, provider, {"type": "always_timeout", "max_hold_s": 600})
        stats_url = provider.control_url + "stats"
        request = asyncio.create_task(post(client, provider, rpc("eth_blockNumber")))
        await async_wait_for_value(
            lambda: get(client, stats_url), lambda s: s["requests"]["in_flight"] == 1, timeout=5
        )
        request.cancel()  # the client gives up: the held request must end with it
        await asyncio.gather(request, return_exceptions=True)
        await async_wait_for_value(
            lambda: get(client, stats_url), lambda s: s["requests"]["in_flight"] == 0, timeout=5
        )

    run(scenario)


def test_drop_connection_closes_without_an_answer() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, "drop_connection")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(client, provider, rpc("eth_blockNumber"))
        await put_behavior(client, provider, "healthy")
        assert (await post(client, provider, rpc("eth_blockNumber")))[0] == 200

    run(scenario)


def test_node_out_of_sync_lags_every_head_dependent_answer_until_recovery() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, {"type": "node_out_of_sync", "lag": 5, "recovery_after_s": 30})
        batch = [
            rpc("eth_blockNumber", id_=1),
            rpc("eth_getBlockByNumber", ["latest", False], id_=2),
            rpc("eth_getBlockByNumber", ["finalized", False], id_=3),
            rpc("eth_getLogs", [{"fromBlock": hex(9_990)}], id_=4),
            rpc("eth_syncing", id_=5),
        ]
        _, body, _ = await post(client, provider, batch)
        assert body[0]["result"] == hex(9_995)
        assert body[1]["result"]["number"] == hex(9_995)
        assert body[2]["result"]["number"] == hex(9_995 - 64)
        assert max(int(log["blockNumber"], 16) for log in body[3]["result"]) <= 9_995
        assert body[4]["result"]["highestBlock"] == hex(10_000)
        health = await get(client, provider.control_url + "health")
        assert (health["head"], health["chain_head"]) == (9_995, 10_000)
        clock.advance(30)
        _, body, _ = await post(client, provider, rpc("eth_blockNumber"))
        assert body["result"] == hex(10_030)

    run(scenario)


def test_latency_delays_the_answer() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(client, provider, {"type": "latency", "ms": 60})
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await post(client, provider, rpc("eth_chainId")))[0] == 200
        assert loop.time() - started >= 0.06

    run(scenario)


def test_cascading_failure_phases_follow_the_clock_from_when_it_was_set() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        clock.advance(1000)  # phases start when the behaviour is set, not when the provider started
        await put_behavior(
            client,
            provider,
            {
                "type": "cascading_failure",
                "healthy_s": 10,
                "degraded_s": 10,
                "failed_s": 10,
                "degraded": {"type": "node_out_of_sync", "lag": 3},
                "recovered": {"type": "latency", "ms": 1},
            },
        )
        observed = []
        for _ in range(4):
            status, body, _ = await post(client, provider, rpc("eth_blockNumber"))
            behind = int(clock.now - GENESIS) - int(body["result"], 16) if "result" in body else None
            observed.append((status, behind))
            clock.advance(10)
        assert observed == [(200, 0), (200, 3), (500, None), (200, 0)]

    run(scenario, genesis_time=GENESIS)


def test_method_specific_and_param_sensitive_over_http() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(
            client,
            provider,
            {
                "type": "method_specific",
                "methods": {"eth_getLogs": {"type": "param_sensitive", "rules": [{"block_range_over": 100}]}},
                "default": {"type": "error_code", "code": -32000, "message": "busy", "http_status": 503},
            },
        )
        _, narrow, _ = await post(client, provider, rpc("eth_getLogs", [{"fromBlock": hex(9_950)}]))
        assert isinstance(narrow["result"], list)
        status, wide, _ = await post(client, provider, rpc("eth_getLogs", [{"fromBlock": hex(9_000)}]))
        assert status == 200 and wide["error"]["code"] == -32005 and wide["error"]["data"] == {"limit": 100}
        status, other, _ = await post(client, provider, rpc("eth_chainId"))
        assert status == 503 and other["error"]["message"] == "busy"

    run(scenario)


def test_intermittent_failures_are_reproducible_with_a_seed() -> None:
    outcomes: list[list[int]] = []

    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await put_behavior(
            client, provider, {"type": "intermittent_failures", "success_rate": 0.5, "seed": 3}
        )
        outcomes.append([(await post(client, provider, rpc("eth_chainId")))[0] for _ in range(40)])

    run(scenario)
    run(scenario)
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}


# --- control API ---------------------------------------------------------------------------------------


def test_health_reports_identity_and_head() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        health = await get(client, provider.control_url + "health")
        assert health["status"] == "ok" and health["id"] == "p7" and health["head"] == 10_000
        assert health["chain_id"] == 5 and health["behavior"] == "healthy"

    run(scenario, provider_id="p7", chain_id=5)


def test_behavior_put_get_and_validation_errors_naming_the_field() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        assert (await get(client, provider.control_url + "behavior"))["type"] == "healthy"
        put = await put_behavior(client, provider, {"type": "rate_limited", "limit": 4})
        assert put["window_s"] == 1.0  # defaults filled in
        assert await get(client, provider.control_url + "behavior") == put

        bad = {
            "type": "schedule",
            "phases": [{"duration_s": 1, "behavior": {"type": "intermittent_failures", "success_rate": 7}}],
        }
        async with client.put(provider.control_url + "behavior", data=orjson.dumps(bad)) as response:
            assert response.status == 400
            body = await response.json()
        assert body["problems"][0]["field"] == "phases[0].behavior.success_rate"
        assert "phases[0].behavior.success_rate" in body["error"]
        async with client.put(provider.control_url + "behavior", data=b"{nope") as response:
            assert response.status == 400 and "malformed JSON" in (await response.json())["error"]
        assert (await get(client, provider.control_url + "behavior")) == put  # unchanged by bad requests

    run(scenario)


def test_stats_count_by_method_and_outcome_per_second() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        await post(client, provider, rpc("eth_blockNumber"))
        await post(client, provider, rpc("eth_blockNumber"))
        clock.advance(1)
        await post(client, provider, rpc("eth_getBalance", []))
        await post(client, provider, rpc("eth_whatever"))
        await post(client, provider, b"garbage")
        await put_behavior(client, provider, {"type": "rate_limited", "limit": 0})
        await post(client, provider, rpc("eth_blockNumber"))
        stats = await get(client, provider.control_url + "stats")
        assert stats["requests"]["by_method"] == {
            "(invalid)": {"error": 1},
            "(unknown)": {"error": 1},
            "eth_blockNumber": {"ok": 2, "rate_limited": 1},
            "eth_getBalance": {"error": 1},
        }
        assert stats["requests"]["by_outcome"] == {"error": 3, "ok": 2, "rate_limited": 1}
        assert stats["served_per_second"] == [
            {"t": START, "requests": 2, "ok": 2},
            {"t": START + 1, "requests": 4, "ok": 0},
        ]
        assert stats["head"] == 10_001 and stats["behavior"] == "rate_limited"

    run(scenario)


def test_reset_restores_the_start_up_behaviour_and_clears_the_counters() -> None:
    async def scenario(client: aiohttp.ClientSession, provider: ProviderEndpoint, clock: FakeClock) -> None:
        assert (await post(client, provider, rpc("eth_chainId")))[0] == 500
        await put_behavior(client, provider, "healthy")
        assert (await post(client, provider, rpc("eth_chainId")))[0] == 200
        async with client.post(provider.control_url + "reset") as response:
            body = await response.json()
        assert body["behavior"]["type"] == "always_fail"
        assert (await get(client, provider.control_url + "stats"))["requests"]["total"] == 0
        assert (await post(client, provider, rpc("eth_chainId")))[0] == 500

    run(scenario, behavior="always_fail")
