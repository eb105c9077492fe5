"""Reorgs: the chain's sibling branches, the provider's POST /_lab/reorg over HTTP and newHeads, and the
fault action that makes every target fork at the same block."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from lab.faults.actions import ReorgAction, parse_action
from lab.gateway.launch import GatewayEndpoint, profile_yaml, running_gateway
from lab.provider.chain import Chain
from lab.provider.launch import FakeClock, ProviderEndpoint, running_provider

GENESIS = 1_700_000_000
START = GENESIS + 10_000  # head 10_000


def test_a_reorg_replaces_the_blocks_from_the_fork_on_and_links_the_new_branch() -> None:
    chain = Chain(1, GENESIS, 1.0)
    before = {n: chain.block(n, True) for n in range(95, 101)}
    assert chain.reorg(98) is True
    assert chain.reorg(98) is False  # already on that branch
    for n in (95, 96, 97):
        assert chain.block(n, True) == before[n]  # below the fork: unchanged
    for n in (98, 99, 100):
        block = chain.block(n, True)
        assert block["hash"] != before[n]["hash"]
        assert chain.block_id_of(block["hash"]) == (n, 98)
        assert chain.block_id_of(before[n]["hash"]) == (n, 0)  # the orphaned hash still names its branch
        assert chain.block_number_of(before[n]["hash"]) is None  # but is no longer found
        assert chain.block_number_of(block["hash"]) == n
        for index, tx in enumerate(block["transactions"]):
            assert chain.tx_id_of(tx["hash"]) == (n, index, 98)
            assert chain.tx_position_of(tx["hash"]) == (n, index)
        for tx in before[n]["transactions"]:
            assert chain.tx_position_of(tx["hash"]) is None
    assert chain.block(98, False)["parentHash"] == before[97]["hash"]  # the fork block's parent: old branch
    assert chain.block(99, False)["parentHash"] == chain.block(98, False)["hash"]
    # A deeper reorg later replaces the first one's branch; a shallower one stacks on it.
    chain.reorg(99)
    assert chain.forks == (98, 99)
    assert chain.block(99, False)["parentHash"] == chain.block_hash(98, 98)
    chain.reorg(97)
    assert chain.forks == (97,)


def test_two_chains_given_the_same_reorg_agree_and_a_branch_is_reproducible() -> None:
    a, b = Chain(1, GENESIS, 1.0), Chain(1, GENESIS, 1.0)
    a.reorg(50)
    b.reorg(50)
    assert [a.block(n, True) for n in range(48, 55)] == [b.block(n, True) for n in range(48, 55)]
    assert a.logs(52) == b.logs(52) == Chain(1, GENESIS, 1.0).logs(52, 50)
    with pytest.raises(ValueError, match="genesis"):
        a.reorg(0)


async def _post(client: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with client.post(url, data=orjson.dumps(body)) as response:
        return response.status, await response.json()


def test_provider_reorg_is_seen_over_http_and_pushed_to_new_heads_subscribers() -> None:
    async def main() -> None:
        clock = FakeClock(START)
        async with (
            running_provider("p1", clock=clock, head_feed=False) as provider,
            aiohttp.ClientSession() as client,
        ):
            server = provider.server
            assert server is not None
            old = server.chain.block(9_999, False)["hash"]
            async with client.ws_connect(provider.ws_url) as ws:
                await ws.send_bytes(
                    orjson.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
                    )
                )
                assert "result" in orjson.loads((await ws.receive(timeout=5)).data)
                server.feed.tick()  # pushes head 10_000
                first = orjson.loads((await ws.receive(timeout=5)).data)["params"]["result"]
                status, answer = await _post(client, provider.control_url + "reorg", {"depth": 2})
                assert status == 200 and answer["fork_block"] == 9_999 and answer["replaced"] == 2
                # The subscriber sees numbers 9_999 and 10_000 again, with the new branch's hashes.
                again = [
                    orjson.loads((await ws.receive(timeout=5)).data)["params"]["result"] for _ in range(2)
                ]
                assert [h["number"] for h in again] == [hex(9_999), hex(10_000)]
                assert again[0]["hash"] != old and again[1]["hash"] != first["hash"]
                assert again[1]["parentHash"] == again[0]["hash"]
            async with client.post(
                provider.url,
                data=orjson.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["latest", False]}
                ),
            ) as response:
                latest = (await response.json())["result"]
            assert latest["hash"] == again[1]["hash"]
            status, answer = await _post(client, provider.control_url + "reorg", {"depth": 0})
            assert status == 400 and "depth" in answer["error"]
            status, answer = await _post(
                client, provider.control_url + "reorg", {"depth": 1, "fork_block": 5}
            )
            assert status == 400

    asyncio.run(main())


class _Control:
    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def provider_health(self, url: str) -> dict[str, Any]:
        return {"chain_head": 10_000, "block_time": 60.0}

    def request(self, method: str, url: str, *, json: Any = None) -> Any:
        self.posts.append((url, json))
        return {"head": 10_000, "forks": [json["fork_block"]]}


class _Journal:
    def record(self, action: str, target: str, params: dict[str, Any], inverse: Any, **kw: Any) -> Any:
        return (action, target, params, kw)


class _Injector:
    def __init__(self) -> None:
        self.control = _Control()
        self.journal = _Journal()

    def _control_url(self, target: str) -> str:
        return f"http://{target}"


def test_reorg_action_forks_every_target_at_the_same_block_and_is_instant() -> None:
    action = parse_action({"type": "reorg", "depth": 3})
    assert isinstance(action, ReorgAction) and action.instant
    injector = _Injector()
    results = [action.apply(injector, p) for p in ("p1", "p2", "p3")]  # type: ignore[arg-type]
    assert [json for _, json in injector.control.posts] == [{"fork_block": 9_998}] * 3
    assert results[0][2]["fork_block"] == 9_998 and results[0][3]["instant"] is True
    with pytest.raises(ValueError):
        parse_action({"type": "reorg", "depth": 0})


@asynccontextmanager
async def gateway_lab(
    tmp_path: Path, gateway: dict[str, Any] | None = None
) -> AsyncIterator[tuple[GatewayEndpoint, dict[str, ProviderEndpoint]]]:
    genesis = time.time() - 100
    async with AsyncExitStack() as stack:
        providers = {
            pid: await stack.enter_async_context(running_provider(pid, block_time=0.05, genesis_time=genesis))
            for pid in ("p1", "p2")
        }
        path = tmp_path / "public.yml"
        path.write_text(profile_yaml("public", providers, name="T", block_time_s=0.05, gateway=gateway))
        yield await stack.enter_async_context(running_gateway(path)), providers


async def _heads_around_a_reorg(
    tmp_path: Path, gateway: dict[str, Any] | None
) -> tuple[int, dict[int, str], list[dict[str, Any]], dict[str, Any]]:
    """(fork block, the hashes delivered before the reorg, every head delivered after it until two blocks
    past the old head, the gateway's answer for the fork block over HTTP)."""
    async with gateway_lab(tmp_path, gateway) as (gw, providers), aiohttp.ClientSession() as session:
        async with session.ws_connect(gw.ws_url("ethereum")) as ws:
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            await ws.send_bytes(orjson.dumps(body))
            assert "result" in await ws.receive_json()
            seen: dict[int, str] = {}
            while len(seen) < 3:
                head = (await ws.receive_json())["params"]["result"]
                seen[int(head["number"], 16)] = head["hash"]
            fork = max(seen) - 1  # the last two heads delivered get replaced
            for provider in providers.values():
                status, _ = await _post(session, provider.control_url + "reorg", {"fork_block": fork})
                assert status == 200
            after: list[dict[str, Any]] = []
            while not after or int(after[-1]["number"], 16) < max(seen) + 2:
                after.append((await ws.receive_json())["params"]["result"])
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [hex(fork), False]}
        async with session.post(gw.url + "/rpc/ethereum", data=orjson.dumps(body)) as response:
            block = (await response.json())["result"]
    return fork, seen, after, block


def _delivered(seen: dict[int, str], after: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    """(number, hash, parent hash) of every head delivered, in order (the first ones without parents)."""
    return [(n, h, None) for n, h in sorted(seen.items())] + [
        (int(h["number"], 16), h["hash"], h["parentHash"]) for h in after
    ]


def test_the_reference_gateway_passes_a_reorg_on_to_new_heads_subscribers_and_http_readers(
    tmp_path: Path,
) -> None:
    fork, seen, after, block = asyncio.run(asyncio.wait_for(_heads_around_a_reorg(tmp_path, None), 30))
    checker = Chain(1, 0, 1.0)
    heads = _delivered(seen, after)
    branch = [checker.block_id_of(h)[1] for _, h, _ in heads]  # type: ignore[index]
    first_new = branch.index(fork)
    assert all(b == 0 for b in branch[:first_new]) and all(b == fork for b in branch[first_new:])
    assert heads[first_new][0] == fork  # the new branch from its fork block, in order
    old_below = {n: h for (n, h, _), b in zip(heads, branch, strict=True) if b == 0}
    assert heads[first_new][2] == old_below[fork - 1]  # on top of the head delivered below it
    assert all(b[2] == a[1] for a, b in itertools.pairwise(heads[first_new:]))
    assert block["hash"] == heads[first_new][1]  # HTTP readers get the new branch too


def test_with_follow_reorgs_off_subscribers_never_see_the_new_branch(tmp_path: Path) -> None:
    run = _heads_around_a_reorg(tmp_path, {"follow_reorgs": False})
    fork, seen, after, block = asyncio.run(asyncio.wait_for(run, 30))
    heads = _delivered(seen, after)
    assert all(b[0] == a[0] + 1 for a, b in itertools.pairwise(heads))  # the replaced numbers are dropped
    broken = [b for a, b in itertools.pairwise(heads) if b[2] is not None and b[2] != a[1]]
    assert len(broken) == 1 and broken[0][0] > fork  # a head on top of blocks they were never shown
    assert block["hash"] != seen[fork]


def test_the_nemesis_records_the_fork_block_a_reorg_found() -> None:
    from lab.faults.nemesis import ManualClock, Nemesis
    from lab.scenario import parse_scenario, plan_timeline

    s = parse_scenario(
        "name: t\ntopology:\n  providers: [{id: alpha}, {id: beta}]\nload: {duration: 30s}\n"
        "faults: [{start: 10s, target: all, action: {type: reorg, depth: 2}}]\n"
    )

    class Applied:
        def __init__(self) -> None:
            self.params = {"fork_block": 41, "depth": 99}  # planned params win over what applying found

    class Target:
        def apply(self, action: Any, target: str, *, name: str | None = None) -> Any:
            return Applied()

    clock = ManualClock()
    events: list[dict[str, Any]] = []
    nemesis = Nemesis(plan_timeline(s), Target(), events.append, clock=clock, wall_clock=lambda: clock.now())
    with nemesis:
        nemesis.run()
    assert [(e["event"], e["target"], e["params"]["fork_block"], e["params"]["depth"]) for e in events] == [
        ("start", "alpha", 41, 2),
        ("end", "alpha", 41, 2),
        ("start", "beta", 41, 2),
        ("end", "beta", 41, 2),
    ]
