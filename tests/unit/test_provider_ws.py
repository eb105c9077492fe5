"""The provider over WebSocket, in-process: requests, subscriptions and pushes (driven by ticking the
head feed under a fake clock, plus one run of the real feed at a 50 ms block time), behaviours on
pushes, garbage, abrupt disconnects and slow consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from lab.eventually import async_wait_for_value
from lab.provider.chain import CONTRACT_ADDRESSES
from lab.provider.launch import FakeClock, ProviderEndpoint, running_provider
from lab.provider.server import ProviderServer

GENESIS = 1_700_000_000
START = GENESIS + 10_000
RECEIVE_TIMEOUT = 5.0

WsScenario = Callable[[aiohttp.ClientSession, ProviderEndpoint, ProviderServer, FakeClock], Awaitable[None]]


def run(scenario: WsScenario, **options: Any) -> None:
    async def main() -> None:
        clock = FakeClock(START)
        async with (
            running_provider("p1", clock=clock, head_feed=False, **options) as provider,
            aiohttp.ClientSession() as client,
        ):
            assert provider.server is not None
            await scenario(client, provider, provider.server, clock)

    asyncio.run(main())


async def request(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any = None, id_: int = 1) -> Any:
    await ws.send_bytes(orjson.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}))
    return await receive(ws)


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    message = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
    return orjson.loads(message.data)


async def subscribe(ws: aiohttp.ClientWebSocketResponse, *params: Any) -> str:
    response = await request(ws, "eth_subscribe", list(params), id_=100)
    return response["result"]


async def next_block(server: ProviderServer, clock: FakeClock, blocks: int = 1) -> None:
    clock.advance(blocks * server.chain.block_time)
    server.feed.tick()


def test_requests_and_batches_over_ws() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        for url in (provider.ws_url, provider.url.replace("http", "ws")):
            async with client.ws_connect(url) as ws:
                assert (await request(ws, "eth_blockNumber"))["result"] == hex(10_000)
                await ws.send_bytes(orjson.dumps([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, 7]))
                batch = await receive(ws)
                assert batch[0]["result"] == "0x1" and batch[1]["error"]["code"] == -32600

    run(scenario)


def test_ws_garbage_gets_error_replies_and_the_socket_stays_usable() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await ws.send_str("not json at all")
            assert (await receive(ws))["error"]["code"] == -32700
            await ws.send_bytes(b"\xff\xfe\x00")
            assert (await receive(ws))["error"]["code"] == -32700
            await ws.send_str("[]")
            assert (await receive(ws))["error"]["code"] == -32600
            await ws.send_str('{"jsonrpc": "2.0", "method": "eth_chainId"}')  # notification: no answer
            assert (await request(ws, "eth_chainId", id_=2)) == {"jsonrpc": "2.0", "id": 2, "result": "0x1"}

    run(scenario)


def test_oversize_ws_frame_closes_the_socket_cleanly() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await ws.send_str("x" * 8192)
            message = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await async_wait_for_value(lambda: _value(len(server.sessions)), lambda n: n == 0, timeout=5)

    run(scenario, max_body_bytes=4096)


def test_new_heads_pushes_every_block_and_unsubscribe_stops_them() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            sub = await subscribe(ws, "newHeads")
            server.feed.tick()  # the current head
            await next_block(server, clock, 2)  # two new blocks: both are pushed, in order
            heads = [await receive(ws) for _ in range(3)]
            assert [h["params"]["result"]["number"] for h in heads] == [hex(10_000), hex(10_001), hex(10_002)]
            assert all(
                h["method"] == "eth_subscription" and h["params"]["subscription"] == sub for h in heads
            )
            assert heads[2]["params"]["result"] == {
                k: v
                for k, v in server.chain.block(10_002, False).items()
                if k not in ("transactions", "uncles", "size", "withdrawals", "totalDifficulty")
            }
            assert (await request(ws, "eth_unsubscribe", [sub], id_=5))["result"] is True
            assert (await request(ws, "eth_unsubscribe", [sub], id_=6))["result"] is False
            await next_block(server, clock)
            # Responses and pushes share one ordered outbox: the next message is the answer, not a head.
            assert (await request(ws, "eth_chainId", id_=7))["id"] == 7
            assert server.stats.ws_subscriptions == 0

    run(scenario)


def test_logs_subscription_pushes_the_matching_logs_of_each_block() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        address = CONTRACT_ADDRESSES[0]
        head = server.chain.head_at(clock())
        wanted = [
            log for n in range(head, head + 301) for log in server.chain.logs(n) if log["address"] == address
        ]
        assert wanted
        async with client.ws_connect(provider.ws_url) as ws:
            sub = await subscribe(ws, "logs", {"address": address})
            server.feed.tick()
            pushed = []
            for _ in range(3):  # 100 blocks a tick, within the catch-up bound
                await next_block(server, clock, 100)
            for _ in wanted:
                message = await receive(ws)
                assert message["params"]["subscription"] == sub
                pushed.append(message["params"]["result"])
            assert pushed == wanted

    run(scenario)


def test_bad_subscriptions_get_invalid_params() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            assert (await request(ws, "eth_subscribe", ["newPendingTransactions"]))["error"]["code"] == -32602
            assert (await request(ws, "eth_subscribe", ["logs", {"address": "0x12"}]))["error"][
                "code"
            ] == -32602
            assert (await request(ws, "eth_subscribe", []))["error"]["code"] == -32602

    run(scenario)


def test_lagging_node_stalls_then_pushes_heads_behind() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await subscribe(ws, "newHeads")
            server.feed.tick()
            assert (await receive(ws))["params"]["result"]["number"] == hex(10_000)
            await _put(client, provider, {"type": "node_out_of_sync", "lag": 3})
            await next_block(server, clock, 3)  # served head 10_000: nothing new to push
            await next_block(server, clock)  # served head 10_001
            assert (await receive(ws))["params"]["result"]["number"] == hex(10_001)
            assert (await request(ws, "eth_blockNumber", id_=3))["result"] == hex(10_001)

    run(scenario)


def test_failing_node_stops_pushing_and_catches_up_on_recovery() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await subscribe(ws, "newHeads")
            server.feed.tick()
            await receive(ws)
            await _put(client, provider, "always_fail")
            await next_block(server, clock, 2)
            failed = await request(ws, "eth_blockNumber", id_=3)
            assert failed["error"]["code"] == -32603  # the answer came before any head: pushes stopped
            await _put(client, provider, "healthy")
            await next_block(server, clock)
            assert [(await receive(ws))["params"]["result"]["number"] for _ in range(3)] == [
                hex(10_001),
                hex(10_002),
                hex(10_003),
            ]

    run(scenario)


def test_stalled_subscriptions_while_requests_still_work() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await subscribe(ws, "newHeads")
            await _put(
                client,
                provider,
                {"type": "method_specific", "methods": {"eth_subscription": "always_timeout"}},
            )
            await next_block(server, clock)
            assert (await request(ws, "eth_blockNumber", id_=3))["result"] == hex(10_001)

    run(scenario)


def test_rate_limit_and_timeouts_on_ws() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as ws:
            await _put(client, provider, {"type": "rate_limited", "limit": 1})
            assert "result" in await request(ws, "eth_chainId", id_=1)
            limited = await request(ws, "eth_chainId", id_=2)
            assert limited["id"] == 2 and limited["error"]["code"] == -32005
            await _put(
                client,
                provider,
                {
                    "type": "method_specific",
                    "methods": {"eth_getLogs": {"type": "always_timeout", "max_hold_s": 600}},
                },
            )
            await ws.send_bytes(
                orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "eth_getLogs", "params": [{}]})
            )
            # A held request does not hold up the others on the same socket.
            assert (await request(ws, "eth_chainId", id_=10))["id"] == 10
            assert server.stats.in_flight == 1
        # The client left: its held request is cancelled with the session.
        await async_wait_for_value(lambda: _value(server.stats.in_flight), lambda n: n == 0, timeout=5)

    run(scenario)


def test_drop_connection_cuts_ws_clients_on_request_and_on_the_next_block() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        await _put(client, provider, {"type": "drop_connection", "transports": ["ws"]})
        async with client.ws_connect(provider.ws_url) as ws:
            await ws.send_str('{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}')
            message = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert message.type in (
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
                aiohttp.WSMsgType.CLOSE,
            )
        async with client.ws_connect(provider.ws_url) as idle:
            await async_wait_for_value(lambda: _value(len(server.sessions)), lambda n: n == 1, timeout=5)
            await next_block(server, clock)
            message = await idle.receive(timeout=RECEIVE_TIMEOUT)
            assert message.type in (
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
                aiohttp.WSMsgType.CLOSE,
            )
        await async_wait_for_value(lambda: _value(len(server.sessions)), lambda n: n == 0, timeout=5)
        async with client.post(
            provider.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
        ) as response:
            assert response.status == 200  # HTTP untouched

    run(scenario)


def test_vanished_clients_are_cleaned_up_and_the_feed_carries_on() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        baseline = len(asyncio.all_tasks())
        for _ in range(3):
            ws = await client.ws_connect(provider.ws_url)
            await subscribe(ws, "newHeads")
            await subscribe(ws, "logs", {})
            ws._response.connection.transport.abort()  # vanish mid-subscription, no close frame
        await async_wait_for_value(lambda: _value(len(server.sessions)), lambda n: n == 0, timeout=5)
        assert (server.stats.ws_connections, server.stats.ws_subscriptions) == (0, 0)
        await next_block(server, clock)  # publishing to nobody is fine
        await async_wait_for_value(
            lambda: _value(len(asyncio.all_tasks())), lambda n: n <= baseline, timeout=5
        )

    run(scenario)


def test_a_client_that_stops_reading_is_dropped_without_holding_up_the_others() -> None:
    async def scenario(
        client: aiohttp.ClientSession, provider: ProviderEndpoint, server: ProviderServer, clock: FakeClock
    ) -> None:
        async with client.ws_connect(provider.ws_url) as stuck, client.ws_connect(provider.ws_url) as reader:
            await subscribe(stuck, "logs", {})
            await subscribe(reader, "newHeads")
            received = 0

            async def read_all() -> None:
                nonlocal received
                async for _ in reader:
                    received += 1

            reading = asyncio.create_task(read_all())
            for _ in range(200):  # the stuck client never reads while logs pile up
                await next_block(server, clock, 100)
                await asyncio.sleep(0)  # let the writers run, as the real feed's sleep does
                if server.stats.slow_consumers_dropped:
                    break
            assert server.stats.slow_consumers_dropped == 1
            await async_wait_for_value(lambda: _value(len(server.sessions)), lambda n: n == 1, timeout=5)
            pushed = server.stats.notifications
            await async_wait_for_value(lambda: _value(received), lambda n: n >= pushed // 10, timeout=5)
            reading.cancel()

    run(scenario, ws_send_queue=256)  # above the 100-head bursts of this test


def test_real_head_feed_pushes_consecutive_heads_at_a_fast_block_time() -> None:
    async def main() -> None:
        async with (
            running_provider("fast", block_time=0.05) as provider,
            aiohttp.ClientSession() as client,
            client.ws_connect(provider.ws_url) as ws,
        ):
            await subscribe(ws, "newHeads")
            numbers = [int((await receive(ws))["params"]["result"]["number"], 16) for _ in range(4)]
            assert numbers == list(range(numbers[0], numbers[0] + 4))

    asyncio.run(main())


def test_shutdown_closes_sessions_with_going_away() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as client:
            async with running_provider("p1", head_feed=False) as provider:
                ws = await client.ws_connect(provider.ws_url)
                await subscribe(ws, "newHeads")
            message = await ws.receive(timeout=RECEIVE_TIMEOUT)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)

    asyncio.run(main())


async def _put(client: aiohttp.ClientSession, provider: ProviderEndpoint, spec: Any) -> None:
    async with client.put(provider.control_url + "behavior", data=orjson.dumps(spec)) as response:
        assert response.status == 200, await response.text()


async def _value(value: Any) -> Any:
    return value
