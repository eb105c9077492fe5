"""WebSocket subscriptions through an in-process gateway in front of in-process mock providers:
multiplexing, unsubscribing, ordering of the subscription id before notifications, bad params, leaving a
silent upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from lab.eventually import async_wait_for_value
from lab.gateway.launch import GatewayEndpoint, profile_yaml, running_gateway
from lab.provider.launch import ProviderEndpoint, running_provider

BLOCK_TIME_S = 0.05


@asynccontextmanager
async def lab(
    tmp_path: Path, *, block_time_configured: bool = True
) -> AsyncIterator[tuple[GatewayEndpoint, dict[str, ProviderEndpoint]]]:
    genesis = time.time() - 100
    async with AsyncExitStack() as stack:
        providers = {
            pid: await stack.enter_async_context(
                running_provider(pid, block_time=BLOCK_TIME_S, genesis_time=genesis)
            )
            for pid in ("p1", "p2")
        }
        path = tmp_path / "public.yml"
        block_time_s = BLOCK_TIME_S if block_time_configured else None
        path.write_text(profile_yaml("public", providers, name="T", block_time_s=block_time_s))
        yield await stack.enter_async_context(running_gateway(path)), providers


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


async def subscribe(ws: aiohttp.ClientWebSocketResponse, params: list[Any], id_: int = 1) -> dict[str, Any]:
    await ws.send_str(
        orjson.dumps({"jsonrpc": "2.0", "id": id_, "method": "eth_subscribe", "params": params}).decode()
    )
    return await ws.receive_json()


async def next_head(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, int]:
    message = await ws.receive_json()
    assert message["method"] == "eth_subscription"
    return message["params"]["subscription"], int(message["params"]["result"]["number"], 16)


class HeadNumbers:
    """The newHeads numbers a client reads from `ws`, in the background until `stop`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.numbers: list[int] = []
        self._reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            self.numbers.append((await next_head(ws))[1])

    async def count(self) -> int:
        return len(self.numbers)

    def stop(self) -> None:
        self._reader.cancel()

    async def stop_after(self, more: int) -> list[int]:
        """Every number read, once `more` heads came after those read so far."""
        seen = len(self.numbers)
        await async_wait_for_value(self.count, lambda n: n >= seen + more, timeout=10, message="heads after")
        self.stop()
        return self.numbers


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        return await response.json()


def test_clients_with_the_same_subscription_share_one_upstream_subscription(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lab(tmp_path) as (gw, providers), aiohttp.ClientSession() as session:
            async with (
                session.ws_connect(gw.ws_url("ethereum")) as first,
                session.ws_connect(gw.ws_url("ethereum")) as second,
            ):
                # Each answer comes before any notification for its id.
                first_id = (await subscribe(first, ["newHeads"]))["result"]
                second_id = (await subscribe(second, ["newHeads"], id_=2))["result"]
                assert first_id != second_id
                assert (await next_head(first))[0] == first_id
                assert (await next_head(second))[0] == second_id
                groups = (await get_json(session, gw.url + "/admin/subscriptions"))["subscriptions"]
                assert [(g["kind"], g["provider"], g["subscribers"]) for g in groups] == [
                    ("newHeads", "p1", 2)
                ]
                stats = await get_json(session, providers["p1"].control_url + "stats")
                assert (stats["ws"]["connections"], stats["ws"]["subscriptions"]) == (1, 1)

                await unsubscribe(first, first_id, expect=True)
                await unsubscribe(first, first_id, expect=False)  # no longer there
                await unsubscribe(first, second_id, expect=False)  # another client's
                groups = (await get_json(session, gw.url + "/admin/subscriptions"))["subscriptions"]
                assert [g["subscribers"] for g in groups] == [1]

            async def groups_left() -> list[Any]:
                return (await get_json(session, gw.url + "/admin/subscriptions"))["subscriptions"]

            # The last client left: the upstream subscription and connection go too.
            await async_wait_for_value(groups_left, lambda g: g == [], timeout=5, message="no groups")

            async def upstream_subscriptions() -> int:
                return (await get_json(session, providers["p1"].control_url + "stats"))["ws"]["subscriptions"]

            await async_wait_for_value(
                upstream_subscriptions, lambda n: n == 0, timeout=5, message="unsubscribed"
            )

    run(scenario)


async def unsubscribe(ws: aiohttp.ClientWebSocketResponse, subscription_id: str, expect: bool) -> None:
    await ws.send_str(
        orjson.dumps(
            {"jsonrpc": "2.0", "id": 9, "method": "eth_unsubscribe", "params": [subscription_id]}
        ).decode()
    )
    while (reply := await ws.receive_json()).get("id") != 9:
        pass  # notifications still in flight
    assert reply["result"] is expect


@pytest.mark.parametrize(
    "params",
    [["newPendingTransactions"], ["newHeads", {"x": 1}], ["logs", {"fromBlock": "0x1"}], [], ["logs", {}, 1]],
)
def test_bad_subscription_params_are_invalid_params(tmp_path: Path, params: Any) -> None:
    async def scenario() -> None:
        async with (
            lab(tmp_path) as (gw, _),
            aiohttp.ClientSession() as session,
            session.ws_connect(gw.ws_url("ethereum")) as ws,
        ):
            assert (await subscribe(ws, params))["error"]["code"] == -32602

    run(scenario)


def test_a_provider_override_subscription_stays_on_its_provider(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            lab(tmp_path) as (gw, _),
            aiohttp.ClientSession() as session,
            session.ws_connect(gw.ws_url("ethereum", provider="p2")) as ws,
        ):
            assert "result" in await subscribe(ws, ["newHeads"])
            await next_head(ws)
            groups = (await get_json(session, gw.url + "/admin/subscriptions"))["subscriptions"]
            assert [(g["override"], g["provider"]) for g in groups] == [("p2", "p2")]

    run(scenario)


def test_a_silent_upstream_is_left_after_three_measured_block_times(tmp_path: Path) -> None:
    """The lab configures the gateway without `block_time_ms`: the silence timeout must then come from the
    measured block time (3 block times, at least 1 s), not the 35 s default, which left a subscription
    on a partitioned provider until the WebSocket heartbeat noticed, 10 to 15 s later. Here the upstream
    stops pushing heads on a live connection (it still answers pings, so only the watchdog can tell)."""

    async def scenario() -> None:
        async with (
            lab(tmp_path, block_time_configured=False) as (gw, providers),
            aiohttp.ClientSession() as session,
            session.ws_connect(gw.ws_url("ethereum")) as ws,
        ):
            assert gw.gateway is not None
            chain = next(gw.gateway.registry.chains())
            events = gw.gateway.events
            assert "result" in await subscribe(ws, ["newHeads"])
            heads = HeadNumbers(ws)
            await async_wait_for_value(heads.count, lambda n: n >= 5, timeout=10, message="first heads")
            assert [e["provider"] for e in events.history() if e["type"] == "subscribed"] == ["p1"]
            assert chain.silence_timeout_s == pytest.approx(1.0)  # 3 × 0.05 s measured, floored at 1 s

            mark = events.history()[-1]["seq"]
            silenced = time.monotonic()
            behavior = {"type": "method_specific", "methods": {"eth_subscription": "always_timeout"}}
            async with session.put(providers["p1"].control_url + "behavior", json=behavior) as response:
                assert response.status == 200

            async def recovery() -> list[dict[str, Any]]:
                return [e for e in events.history(mark) if e["type"] in ("upstream_silent", "resubscribed")]

            # Well within the heartbeat's 10 s (which a live connection never trips) and the 35 s default.
            found = await async_wait_for_value(
                recovery, lambda found: len(found) == 2, timeout=5, message="resubscribed after silence"
            )
            elapsed = time.monotonic() - silenced
            silent, resubscribed = found
            assert (silent["type"], silent["provider"]) == ("upstream_silent", "p1")
            assert 1.0 <= silent["silent_s"] < 2.0 and elapsed < 2.5, (silent, elapsed)
            assert (resubscribed["from"], resubscribed["to"]) == ("p1", "p2")
            numbers = await heads.stop_after(5)
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # the silence gap was filled

    run(scenario)


def test_gap_filling_keeps_few_block_fetches_in_flight(tmp_path: Path) -> None:
    """A gap is filled from the provider the subscription just moved to, which also serves its share of
    live requests: its block fetches go a few at a time. All at once (16), they queued 100 ms and more of
    block building ahead of every live request on that provider (network-partition's recovery FAIL)."""

    async def scenario() -> None:
        async with (
            lab(tmp_path, block_time_configured=False) as (gw, providers),
            aiohttp.ClientSession() as session,
            session.ws_connect(gw.ws_url("ethereum")) as ws,
        ):
            assert gw.gateway is not None
            router, events = gw.gateway.router, gw.gateway.events
            in_flight, most = 0, 0
            execute = router.execute

            async def counting(*args: Any, **kwargs: Any) -> Any:
                nonlocal in_flight, most
                in_flight += 1
                most = max(most, in_flight)
                try:
                    return await execute(*args, **kwargs)
                finally:
                    in_flight -= 1

            router.execute = counting  # type: ignore[method-assign]  # only gap filling uses it here
            assert "result" in await subscribe(ws, ["newHeads"])
            heads = HeadNumbers(ws)
            await async_wait_for_value(heads.count, lambda n: n >= 5, timeout=10, message="first heads")
            mark = events.history()[-1]["seq"]
            behavior = {"type": "method_specific", "methods": {"eth_subscription": "always_timeout"}}
            async with session.put(providers["p1"].control_url + "behavior", json=behavior) as response:
                assert response.status == 200

            async def filled() -> list[dict[str, Any]]:
                return [e for e in events.history(mark) if e["type"] in ("gap_filled", "gap_fill_failed")]

            fill = (await async_wait_for_value(filled, bool, timeout=10, message="gap filled"))[0]
            assert (fill["type"], fill["provider"]) == ("gap_filled", "p2")
            assert fill["blocks"] >= 10  # about 1 s of silence at 0.05 s blocks
            assert most <= 4, most
            numbers = await heads.stop_after(3)
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))

    run(scenario)
