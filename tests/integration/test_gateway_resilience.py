"""The reference gateway in front of real mock provider processes, failed through their control API.

One gateway process serves two profiles over the same three providers: `strong` (the defaults:
breakers, retries, lag check, gap filling) and `weak` (all four off). Each test shows the behaviour the
lab checks on `strong` and, where it applies, that `weak` is measurably worse under the same fault.
Waiting is on the gateway's event stream (GatewayEventStream) or on conditions, never on sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import requests

from lab.eventually import async_wait_for_value, wait_for_value
from lab.gateway.launch import GatewayEndpoint, profile_yaml, start_gateway_process
from lab.provider.launch import ProviderEndpoint, start_provider_process
from lab.serving import ProcessExited
from lab.topology.event_stream import Event, GatewayEventStream

pytestmark = pytest.mark.integration

BLOCK_TIME_S = 0.1
PROVIDERS = ("p1", "p2", "p3")
STRONG = {
    "head_poll_interval_s": 0.2,
    "attempt_timeout_s": 1.0,
    "max_lag_blocks": 3,
    "breaker": {"cooldown_s": 60},
}
WEAK = {
    **STRONG,
    "breaker": {"enabled": False},
    "retries": 0,
    "lag_check": False,
    "gap_filling": False,
}


class Lab:
    def __init__(
        self, gateway: GatewayEndpoint, providers: dict[str, ProviderEndpoint], events: GatewayEventStream
    ):
        self.gateway = gateway
        self.providers = providers
        self.events = events
        self.http = requests.Session()
        self.http.trust_env = False

    def url(self, profile: str, route: str = "ethereum") -> str:
        return f"{self.gateway.url}/rpc/profile/{profile}/{route}?include_meta=headers"

    def ws_url(self, profile: str) -> str:
        return f"{self.gateway.ws_base}/ws/rpc/profile/{profile}/ethereum"

    def rpc(
        self, url: str, method: str = "eth_blockNumber", params: Any = None, id_: Any = 1
    ) -> tuple[Any, dict]:
        payload = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}
        response = self.http.post(url, data=orjson.dumps(payload), timeout=10)
        return response.json(), dict(response.headers)

    def behave(self, provider: str, spec: dict[str, Any]) -> None:
        self.http.put(
            self.providers[provider].control_url + "behavior", json=spec, timeout=5
        ).raise_for_status()

    def wait_event(self, predicate: Any, after: int, message: str, timeout: float = 10.0) -> Event:
        return self.events.wait_for(predicate, timeout=timeout, after=after, message=message)


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    genesis = time.time() - 1000 * BLOCK_TIME_S
    config_dir: Path = tmp_path_factory.mktemp("profiles")
    with (
        start_provider_process("p1", block_time=BLOCK_TIME_S, genesis_time=genesis) as p1,
        start_provider_process("p2", block_time=BLOCK_TIME_S, genesis_time=genesis) as p2,
        start_provider_process("p3", block_time=BLOCK_TIME_S, genesis_time=genesis) as p3,
    ):
        providers = {"p1": p1, "p2": p2, "p3": p3}
        (config_dir / "strong.yml").write_text(
            profile_yaml("strong", providers, block_time_s=BLOCK_TIME_S, gateway=STRONG)
        )
        (config_dir / "weak.yml").write_text(
            profile_yaml("weak", providers, block_time_s=BLOCK_TIME_S, gateway=WEAK)
        )
        with start_gateway_process(config_dir) as gateway, GatewayEventStream(gateway.events_url) as events:
            yield Lab(gateway, providers, events)


@pytest.fixture
def lab(running_lab: Lab) -> Iterator[Lab]:
    """Every provider healthy, every breaker closed, no provider excluded for lag."""
    yield running_lab
    for provider in running_lab.providers.values():
        running_lab.http.post(provider.control_url + "reset", timeout=5).raise_for_status()
    running_lab.http.post(running_lab.gateway.url + "/admin/breakers/reset", timeout=5).raise_for_status()

    def lagging() -> list[Any]:
        providers = running_lab.http.get(running_lab.gateway.url + "/admin/providers", timeout=5).json()[
            "providers"
        ]
        return [p for p in providers if p["head"] and p["head"]["lagging"]]

    wait_for_value(lagging, lambda found: not found, timeout=10, message="no provider lagging")


def test_failover_hides_a_failing_primary_and_its_breaker_opens(lab: Lab) -> None:
    mark = lab.events.mark()
    lab.behave("p1", {"type": "always_fail"})
    answers = [lab.rpc(lab.url("strong"), id_=i) for i in range(40)]
    assert all("result" in body for body, _ in answers)
    assert {headers["X-Lasso-Provider"] for _, headers in answers} == {"p2"}
    lab.wait_event(
        lambda e: (
            e["type"] == "breaker"
            and e["profile"] == "strong"
            and e["provider"] == "p1"
            and e["to"] == "open"
        ),
        mark,
        "p1's http breaker opened",
    )
    failovers = lab.events.matching(
        lambda e: e["type"] == "failover" and e["profile"] == "strong", after=mark
    )
    assert len(failovers) == 5  # the failure threshold; then p1 is skipped without an attempt
    assert {(e["from"], e["to"], e["reason"]) for e in failovers} == {("p1", "p2", "server_error")}


def test_without_retries_and_breakers_errors_leak_to_clients(lab: Lab) -> None:
    lab.behave("p1", {"type": "always_fail"})
    strong = [lab.rpc(lab.url("strong", "load-balanced/ethereum"), id_=i)[0] for i in range(60)]
    weak = [lab.rpc(lab.url("weak", "load-balanced/ethereum"), id_=i)[0] for i in range(60)]
    strong_errors = sum("error" in body for body in strong)
    weak_errors = sum("error" in body for body in weak)
    assert strong_errors == 0
    assert weak_errors >= 10  # about a third: every request load-balanced onto p1 fails
    assert all(body["error"]["code"] == -32603 for body in weak if "error" in body)


def test_a_provider_override_never_fails_over(lab: Lab) -> None:
    mark = lab.events.mark()
    lab.behave("p2", {"type": "always_fail"})
    answers = [lab.rpc(lab.url("strong", "provider/p2/ethereum"), id_=i) for i in range(10)]
    # p2's own error until its breaker opens (5 failures), then the breaker's; never another provider.
    attribution = [(h["X-Lasso-Provider"], h["X-Lasso-Attempts"], h["X-Lasso-Strategy"]) for _, h in answers]
    assert attribution == [("p2", "1", "provider")] * 5 + [("-", "0", "provider")] * 5
    assert [body["error"]["code"] for body, _ in answers] == [-32603] * 5 + [-32000] * 5
    assert answers[-1][0]["error"]["data"] == {"provider": "p2", "reason": "circuit_open"}
    assert lab.events.matching(lambda e: e["type"] == "failover", after=mark) == []


def test_lagging_providers_are_avoided_for_head_sensitive_methods(lab: Lab) -> None:
    mark = lab.events.mark()
    lab.behave("p1", {"type": "node_out_of_sync", "lag": 20})
    excluded = lab.wait_event(
        lambda e: e["type"] == "provider_lag_excluded" and e["profile"] == "strong" and e["provider"] == "p1",
        mark,
        "p1 excluded for lag",
    )
    assert excluded["lag"] >= 19
    strong = [lab.rpc(lab.url("strong"), id_=i) for i in range(20)]
    assert {headers["X-Lasso-Provider"] for _, headers in strong} == {"p2"}
    # Methods that do not depend on the head still go to the first provider by priority.
    _, headers = lab.rpc(lab.url("strong"), "eth_chainId")
    assert headers["X-Lasso-Provider"] == "p1"
    # With the lag check off, the weak profile keeps serving p1's stale head.
    best = max(int(body["result"], 16) for body, _ in strong)
    weak = [lab.rpc(lab.url("weak"), id_=i) for i in range(20)]
    assert {headers["X-Lasso-Provider"] for _, headers in weak} == {"p1"}
    assert all(int(body["result"], 16) <= best - 15 for body, _ in weak)
    lab.behave("p1", {"type": "healthy"})
    lab.wait_event(
        lambda e: e["type"] == "provider_lag_included" and e["profile"] == "strong" and e["provider"] == "p1",
        mark,
        "p1 included again once caught up",
    )


def test_a_batch_never_loses_an_entry(lab: Lab) -> None:
    lab.behave("p1", {"type": "always_fail"})
    lab.behave("p3", {"type": "rate_limited", "limit": 3, "window_s": 60})
    methods = ["eth_blockNumber", "eth_chainId", "eth_gasPrice", "net_version"]
    batch = [{"jsonrpc": "2.0", "id": i, "method": methods[i % 4], "params": []} for i in range(40)]
    url = lab.url("strong", "load-balanced/ethereum")
    response = lab.http.post(url, data=orjson.dumps(batch), timeout=10)
    body = response.json()
    assert [entry["id"] for entry in body] == list(range(40))
    assert all("result" in entry for entry in body)
    providers = response.headers["X-Lasso-Provider"].split(",")
    assert len(providers) == 40 and set(providers) <= {"p2", "p3"}


async def _collect_heads(ws: aiohttp.ClientWebSocketResponse, into: list[int]) -> None:
    async for message in ws:
        data = orjson.loads(message.data)
        if data.get("method") == "eth_subscription":
            into.append(int(data["params"]["result"]["number"], 16))


async def _fail_upstream_and_watch(lab: Lab, profile: str, blocks_after: int) -> tuple[list[int], Event]:
    """Subscribe to newHeads on a profile, fail the provider its subscription is on, and collect heads
    until `blocks_after` more arrived after the gateway resubscribed elsewhere."""
    mark = lab.events.mark()
    heads: list[int] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(lab.ws_url(profile)) as ws:
        await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}')
        assert (await ws.receive_json())["result"].startswith("0x")
        reader = asyncio.create_task(_collect_heads(ws, heads))

        async def count() -> int:
            return len(heads)

        await async_wait_for_value(count, lambda n: n >= 5, timeout=10, message="first heads")
        subscribed = await asyncio.to_thread(
            lab.wait_event,
            lambda e: e["type"] == "subscribed" and e["profile"] == profile,
            mark,
            "subscribed",
        )
        await asyncio.to_thread(lab.behave, subscribed["provider"], {"type": "always_fail"})
        resubscribed = await asyncio.to_thread(
            lab.wait_event,
            lambda e: e["type"] == "resubscribed" and e["profile"] == profile,
            mark,
            "resubscribed elsewhere",
        )
        assert resubscribed["from"] == subscribed["provider"] and resubscribed["to"] != resubscribed["from"]
        seen = len(heads)
        await async_wait_for_value(
            count, lambda n: n >= seen + blocks_after, timeout=10, message="heads after"
        )
        reader.cancel()
    return heads, resubscribed


def test_websocket_subscribers_see_every_block_once_in_order_across_a_failed_upstream(lab: Lab) -> None:
    heads, _ = asyncio.run(_fail_upstream_and_watch(lab, "strong", blocks_after=10))
    assert heads == list(range(heads[0], heads[0] + len(heads)))
    filled = lab.events.matching(lambda e: e["type"] == "gap_filled" and e["profile"] == "strong")
    assert filled and filled[-1]["blocks"] >= 1


def test_without_gap_filling_a_failed_upstream_leaves_a_gap(lab: Lab) -> None:
    heads, _ = asyncio.run(_fail_upstream_and_watch(lab, "weak", blocks_after=10))
    assert heads == sorted(set(heads))  # still no duplicates and in order: dedup is not optional
    missing = set(range(heads[0], heads[-1] + 1)) - set(heads)
    assert len(missing) >= 2  # the silence timeout is 3 block times


def test_log_subscribers_get_every_log_once_in_order_across_a_failed_upstream(lab: Lab) -> None:
    async def scenario() -> list[tuple[int, int]]:
        mark = lab.events.mark()
        keys: list[tuple[int, int]] = []

        async def collect(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                data = orjson.loads(message.data)
                if data.get("method") == "eth_subscription":
                    log = data["params"]["result"]
                    keys.append((int(log["blockNumber"], 16), int(log["logIndex"], 16)))

        async def last_block() -> int:
            return keys[-1][0] if keys else 0

        async with aiohttp.ClientSession() as session, session.ws_connect(lab.ws_url("strong")) as ws:
            await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["logs",{}]}')
            assert "result" in await ws.receive_json()
            reader = asyncio.create_task(collect(ws))
            subscribed = await asyncio.to_thread(
                lab.wait_event,
                lambda e: e["type"] == "subscribed" and e["kind"] == "logs",
                mark,
                "subscribed",
            )
            start = await async_wait_for_value(last_block, lambda b: b > 0, timeout=10, message="first logs")
            await asyncio.to_thread(lab.behave, subscribed["provider"], {"type": "always_fail"})
            await asyncio.to_thread(
                lab.wait_event,
                lambda e: e["type"] == "gap_filled" and e["kind"] == "logs",
                mark,
                "logs backfilled",
            )
            await async_wait_for_value(
                last_block, lambda b: b >= start + 20, timeout=10, message="later logs"
            )
            reader.cancel()
        return keys

    keys = asyncio.run(scenario())
    assert keys == sorted(set(keys))
    first, last = keys[0][0] + 1, keys[-1][0] - 1  # whole blocks only
    body, _ = lab.rpc(lab.url("strong"), "eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last)}])
    expected = [(int(e["blockNumber"], 16), int(e["logIndex"], 16)) for e in body["result"]]
    assert [k for k in keys if first <= k[0] <= last] == expected


def test_a_gateway_with_a_bad_configuration_fails_to_start_naming_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "broken.yml"
    config.write_text("---\nname: B\nslug: b\n---\nchains:\n  eth: {chain_id: x, providers: []}\n")
    with (
        pytest.raises(ProcessExited, match=r"(?s)gateway exited with 2: .*broken\.yml: chains.eth.chain_id"),
        start_gateway_process(config),
    ):
        pass
