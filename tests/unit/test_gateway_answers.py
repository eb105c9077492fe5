"""The reference gateway's defences against wrong answers: the answer checks on planted answers (the mock
chain's own, damaged ones, another chain's), the chain id verification in routing and head tracking,
and both end to end in-process in front of misbehaving mock providers, strong and weak side by side."""

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
from lab.gateway import answers
from lab.gateway.config import load
from lab.gateway.events import EventBus
from lab.gateway.health import HeadTracker
from lab.gateway.launch import GatewayEndpoint, profile_yaml, running_gateway
from lab.gateway.metrics import Metrics
from lab.gateway.runtime import Registry
from lab.provider.chain import CONTRACT_ADDRESSES, Chain
from lab.provider.damage import AnswerDamage
from lab.provider.launch import ProviderEndpoint, running_provider
from lab.provider.methods import METHODS, NodeConfig, View

GENESIS = 1_700_000_000
CHAIN = Chain(1, GENESIS, 1.0)
OTHER = Chain(5, GENESIS, 1.0)
HEAD = 5_000
TX_BLOCK = next(n for n in range(4_000, 4_100) if CHAIN.tx_count(n) and CHAIN.logs(n))
TX_HASH = CHAIN.tx_hash(TX_BLOCK, 0)

# One request per method the load sends (and a few more), with params the mock answers with content.
REQUESTS: list[tuple[str, list[Any]]] = [
    ("eth_blockNumber", []),
    ("eth_chainId", []),
    ("net_version", []),
    ("eth_gasPrice", []),
    ("eth_getBalance", [CONTRACT_ADDRESSES[0], "latest"]),
    ("eth_getTransactionCount", [CONTRACT_ADDRESSES[1], "latest"]),
    ("eth_getCode", [CONTRACT_ADDRESSES[2], "latest"]),
    ("eth_call", [{"to": CONTRACT_ADDRESSES[0], "data": "0x70a08231"}, "latest"]),
    ("eth_estimateGas", [{"to": CONTRACT_ADDRESSES[0], "data": "0x70a08231"}]),
    ("eth_getBlockByNumber", [hex(TX_BLOCK), False]),
    ("eth_getBlockByNumber", [hex(TX_BLOCK), True]),
    ("eth_getBlockByNumber", ["latest", False]),
    ("eth_getBlockByHash", [CHAIN.block_hash(TX_BLOCK), True]),
    ("eth_getTransactionByHash", [TX_HASH]),
    ("eth_getTransactionReceipt", [TX_HASH]),
    ("eth_getLogs", [{"fromBlock": hex(TX_BLOCK), "toBlock": hex(TX_BLOCK + 20)}]),
    ("eth_feeHistory", ["0x4", "latest", [25, 75]]),
]


def answer(method: str, params: list[Any], chain: Chain = CHAIN) -> Any:
    return METHODS[method](params, View(chain, NodeConfig("p1"), HEAD))


@pytest.mark.parametrize(
    ("method", "params"), REQUESTS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(REQUESTS)]
)
def test_right_answers_pass_and_malformed_ones_never_do(method: str, params: list[Any]) -> None:
    result = answer(method, params)
    assert answers.check_answer(method, params, result, 1) is None
    for seed in range(30):
        damaged, hit = AnswerDamage("malformed", seed).apply(result)
        assert hit is (method != "net_version")  # a decimal string has no hex to damage
        if hit:
            assert answers.check_answer(method, params, damaged, 1) == answers.MALFORMED, damaged


@pytest.mark.parametrize(
    "method",
    [
        "eth_blockNumber",
        "eth_getBalance",
        "eth_call",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_gasPrice",
    ],
)
def test_a_missing_field_the_spec_requires_is_caught(method: str) -> None:
    params = dict(REQUESTS)[method]
    result = answer(method, params)
    for seed in range(40):
        damaged, _ = AnswerDamage("missing", seed).apply(result)
        assert answers.check_answer(method, params, damaged, 1) == answers.MALFORMED, damaged


def test_what_only_a_cross_check_finds_passes_as_documented() -> None:
    block = answer("eth_getBlockByNumber", [hex(TX_BLOCK), False])
    changed, _ = AnswerDamage("wrong_value", 0).apply(block)
    assert answers.check_answer("eth_getBlockByNumber", [hex(TX_BLOCK), False], changed, 1) in (
        None,
        answers.WRONG_BLOCK,  # when the changed digit is the block number's
    )
    no_fork_field = {k: v for k, v in block.items() if k != "baseFeePerGas"}
    assert answers.check_answer("eth_getBlockByNumber", [hex(TX_BLOCK), False], no_fork_field, 1) is None


def test_another_chains_answers_are_told_by_their_chain_id_and_another_block_by_its_number() -> None:
    assert answers.check_answer("eth_chainId", [], answer("eth_chainId", [], OTHER), 1) == answers.WRONG_CHAIN
    assert answers.check_answer("net_version", [], answer("net_version", [], OTHER), 1) == answers.WRONG_CHAIN
    number = next(n for n in range(4_000, 4_100) if OTHER.tx_count(n))
    full = answer("eth_getBlockByNumber", [hex(number), True], OTHER)
    assert answers.check_answer("eth_getBlockByNumber", [hex(number), True], full, 1) == answers.WRONG_CHAIN
    tx = OTHER.transactions(number)[0]
    assert answers.check_answer("eth_getTransactionByHash", [tx["hash"]], tx, 1) == answers.WRONG_CHAIN
    asked = [hex(TX_BLOCK), False]
    assert answers.check_answer("eth_getBlockByNumber", asked, CHAIN.block(TX_BLOCK + 1, False), 1) == (
        answers.WRONG_BLOCK
    )
    assert answers.answer_head("eth_getBlockByNumber", ["latest", False], CHAIN.block(7, False)) == 7
    assert answers.answer_head("eth_getBlockByNumber", [hex(7), False], CHAIN.block(7, False)) is None


# --- routing and head tracking -----------------------------------------------------------------------


def registry(tmp_path: Path, **settings: Any) -> Registry:
    upstreams = {
        pid: ProviderEndpoint(provider_id=pid, port=1 + i) for i, pid in enumerate(("p1", "p2", "p3"))
    }
    path = tmp_path / "public.yml"
    path.write_text(profile_yaml("public", upstreams, block_time_s=1.0, gateway=settings))
    return Registry(load(path), EventBus(), Metrics())


def test_a_wrong_chain_provider_is_never_a_candidate_and_unverified_ones_only_as_a_last_resort(
    tmp_path: Path,
) -> None:
    chain = next(registry(tmp_path).chains())
    providers = list(chain.providers)
    assert chain.unverified == {"p1", "p2", "p3"}
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p1", "p2", "p3"]
    chain.chain_checked("p2", 1)
    chain.chain_checked("p3", None)  # no answer: nothing learnt
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p2"]
    chain.chain_checked("p1", 5)
    chain.chain_checked("p3", 1)
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p2", "p3"]
    assert [e["type"] for e in chain.events.history()] == ["provider_chain_mismatch"]
    assert chain.events.history()[0] | {"ts": 0, "seq": 0} == {
        "type": "provider_chain_mismatch", "ts": 0, "seq": 0, "profile": "public", "chain": "ethereum",
        "provider": "p1", "expected": 1, "got": 5,
    }  # fmt: skip
    chain.observe_heads([("p1", 9_999), ("p2", 100), ("p3", 100)])  # another chain's head is ignored
    assert chain.heads.best_head() == 100 and not chain.heads.lagging
    chain.chain_checked("p1", 1)
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p1", "p2", "p3"]
    assert chain.events.history()[-1]["type"] == "provider_chain_verified"


def test_without_the_check_every_provider_is_used(tmp_path: Path) -> None:
    chain = next(registry(tmp_path, chain_id_check=False).chains())
    assert not chain.unverified
    assert len(chain.healthy_order(list(chain.providers), "http", "eth_call")) == 3


def test_lagging_providers_are_dropped_unless_every_fresh_one_is_shut(tmp_path: Path) -> None:
    """A fresh provider whose breaker is open (e.g. ejected as slow) does not get all head-sensitive
    traffic through panic routing: the lagging ones are tried first."""
    chain = next(registry(tmp_path, chain_id_check=False).chains())
    providers = list(chain.providers)
    chain.observe_heads([("p1", 110), ("p2", 100), ("p3", 100)])
    assert chain.heads.lagging == {"p2", "p3"}
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p1"]
    assert [p.id for p in chain.healthy_order(providers, "http", "net_version")] == ["p1", "p2", "p3"]
    chain.providers[0].http_breaker.force_open()
    assert [p.id for p in chain.healthy_order(providers, "http", "eth_call")] == ["p2", "p3", "p1"]


def test_forgetting_a_providers_head_takes_the_best_from_the_others() -> None:
    changes: list[tuple[str, bool]] = []
    tracker = HeadTracker(
        ["a", "b"], max_lag_blocks=1, block_time_s=1.0, clock=lambda: 0.0,
        on_lag_change=lambda pid, lagging, lag, best: changes.append((pid, lagging)),
    )  # fmt: skip
    tracker.observe_all([("a", 2_000), ("b", 100)])
    assert tracker.lagging == {"b"} and tracker.highest_head() == 2_000
    tracker.forget("a")
    assert tracker.best_head() == 100 and tracker.highest_head() == 100 and not tracker.lagging
    assert changes == [("b", True), ("b", False)]


# --- end to end in-process: mock providers misbehaving behind the gateway -----------------------------

BLOCK_TIME_S = 0.1
FAST = {"head_poll_interval_s": 0.1, "chain_check_interval_s": 0.2, "max_lag_blocks": 3}
WEAK = {**FAST, "chain_id_check": False, "answer_check": False, "lag_check": False}


@asynccontextmanager
async def lab(
    tmp_path: Path, behaviors: dict[str, Any], strong: dict[str, Any] = FAST, weak: dict[str, Any] = WEAK
) -> AsyncIterator[tuple[GatewayEndpoint, dict[str, ProviderEndpoint], aiohttp.ClientSession]]:
    genesis = time.time() - 1_000 * BLOCK_TIME_S
    async with AsyncExitStack() as stack:
        providers = {
            pid: await stack.enter_async_context(
                running_provider(pid, block_time=BLOCK_TIME_S, genesis_time=genesis, behavior=behavior)
            )
            for pid, behavior in behaviors.items()
        }
        for slug, settings in (("strong", strong), ("weak", weak)):
            yaml_text = profile_yaml(slug, providers, block_time_s=BLOCK_TIME_S, gateway=settings)
            (tmp_path / f"{slug}.yml").write_text(yaml_text)
        gateway = await stack.enter_async_context(running_gateway(tmp_path))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield gateway, providers, session


async def ask(
    session: aiohttp.ClientSession,
    gw: GatewayEndpoint,
    profile: str,
    method: str,
    params: Any,
    route: str = "ethereum",
) -> Any:
    url = f"{gw.url}/rpc/profile/{profile}/{route}"
    async with session.post(
        url, data=orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    ) as r:
        return orjson.loads(await r.read())


def test_a_wrong_chain_provider_first_in_priority_never_answers_through_the_strong_profile(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        behaviors = {
            "p1": {"type": "wrong_chain", "chain_id": 5, "head_offset": 500},
            "p2": "healthy",
            "p3": "healthy",
        }
        async with lab(tmp_path, behaviors) as (gw, providers, session):
            chain = Chain(1, providers["p2"].server.chain.genesis_time, BLOCK_TIME_S)  # type: ignore[union-attr]
            for _ in range(20):
                assert (await ask(session, gw, "strong", "eth_chainId", []))["result"] == "0x1"
                head = int((await ask(session, gw, "strong", "eth_blockNumber", []))["result"], 16)
                assert abs(head - chain.head_at(time.time())) <= 5
                block = (await ask(session, gw, "strong", "eth_getBlockByNumber", [hex(head - 10), False]))[
                    "result"
                ]
                assert block["hash"] == chain.block_hash(head - 10)
            weak = {(await ask(session, gw, "weak", "eth_chainId", []))["result"] for _ in range(5)}
            assert weak == {"0x5"}  # priority: p1 first, and nothing checks it
            # p3 turns to another chain mid-run: kept out within a check interval.
            async with session.put(
                providers["p3"].control_url + "behavior", json={"type": "wrong_chain"}
            ) as r:
                assert r.status == 200
            strong = gw.gateway.registry.profiles["strong"].chains["ethereum"]  # type: ignore[union-attr]

            async def p3_excluded() -> bool:
                return "p3" in strong.wrong_chain

            await async_wait_for_value(p3_excluded, timeout=5, message="p3 kept out")
            assert strong.wrong_chain == {"p1", "p3"}
            async with session.get(f"{gw.url}/admin/providers") as r:
                listed = (await r.json())["providers"]
            status = {(p["profile"], p["provider"]): p["chain_id"] for p in listed}
            assert status[("strong", "p1")] == status[("strong", "p3")] == "wrong"
            assert (status[("strong", "p2")], status[("weak", "p2")]) == ("ok", "unverified")
            assert (await ask(session, gw, "strong", "eth_chainId", []))["result"] == "0x1"

    asyncio.run(asyncio.wait_for(main(), 60))


def test_corrupt_answers_fail_over_through_the_strong_profile_and_reach_clients_through_the_weak(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        methods = ["eth_getBalance", "eth_getTransactionReceipt", "eth_getLogs", "eth_call"]
        corrupt = {"type": "corrupt", "rate": 0.5, "damage": ["malformed", "missing"], "methods": methods}
        async with lab(tmp_path, {"p1": corrupt, "p2": "healthy"}) as (gw, providers, session):
            view_chain = Chain(1, providers["p2"].server.chain.genesis_time, BLOCK_TIME_S)  # type: ignore[union-attr]
            head = view_chain.head_at(time.time())
            number = next(n for n in range(head - 200, head) if view_chain.tx_count(n) and view_chain.logs(n))
            tx = view_chain.tx_hash(number, 0)
            requests = [
                ("eth_getTransactionReceipt", [tx]),
                ("eth_getLogs", [{"fromBlock": hex(number), "toBlock": hex(number)}]),
                ("eth_getBalance", [CONTRACT_ADDRESSES[0], hex(number)]),
                ("eth_call", [{"to": CONTRACT_ADDRESSES[0], "data": "0x70a08231"}, hex(number)]),
            ]
            expected = [METHODS[m](p, View(view_chain, NodeConfig("x"), head)) for m, p in requests]
            wrong = {"strong": 0, "weak": 0}
            for _ in range(15):
                for (method, params), right in zip(requests, expected, strict=True):
                    for profile in wrong:
                        body = await ask(session, gw, profile, method, params)
                        wrong[profile] += body.get("result") != right
            assert wrong["strong"] == 0 and wrong["weak"] > 5, wrong

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_head_answer_behind_a_head_already_seen_fails_over_before_any_poll_notices(tmp_path: Path) -> None:
    """No poll after the start (interval 1 h): only the answers themselves show p1 falling behind."""

    async def main() -> None:
        no_polls = {**FAST, "head_poll_interval_s": 3600}
        behaviors = {"p1": "healthy", "p2": "healthy"}
        async with lab(tmp_path, behaviors, no_polls, {**no_polls, "lag_check": False}) as (
            gw,
            providers,
            session,
        ):
            for profile in ("strong", "weak"):  # a head seen from p2 (served answers are observed)
                await ask(session, gw, profile, "eth_blockNumber", [], route="provider/p2/ethereum")
            lagging = {"type": "node_out_of_sync", "lag": 50}
            async with session.put(providers["p1"].control_url + "behavior", json=lagging) as r:
                assert r.status == 200
            truth = providers["p2"].server.chain  # type: ignore[union-attr]
            strong = int((await ask(session, gw, "strong", "eth_blockNumber", []))["result"], 16)
            weak = int((await ask(session, gw, "weak", "eth_blockNumber", []))["result"], 16)
            assert truth.head_at(time.time()) - strong <= 2
            assert truth.head_at(time.time()) - weak >= 45  # p1 first (priority), nothing checked
            events = gw.gateway.events.history()  # type: ignore[union-attr]
            assert any(e["type"] == "failover" and e["reason"] == "stale_head" for e in events)
            assert any(e["type"] == "provider_lag_excluded" and e["provider"] == "p1" for e in events)
            # Every provider behind: the (freshest) stale answer rather than an error, as when all lag.
            async with session.put(providers["p2"].control_url + "behavior", json=lagging) as r:
                assert r.status == 200
            body = await ask(session, gw, "strong", "eth_blockNumber", [])
            assert 45 <= truth.head_at(time.time()) - int(body["result"], 16) <= 55, body

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_subscription_on_a_provider_turned_to_another_chain_moves_to_one_on_this_chain(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with lab(tmp_path, {"p1": "healthy", "p2": "healthy"}) as (gw, providers, session):
            url = f"{gw.ws_base}/ws/rpc/profile/strong/ethereum"
            async with session.ws_connect(url) as ws:
                await ws.send_str(orjson.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
                ).decode())  # fmt: skip
                assert "result" in orjson.loads((await ws.receive(timeout=5)).data)
                events = gw.gateway.events  # type: ignore[union-attr]
                assert [e["provider"] for e in events.history() if e["type"] == "subscribed"] == ["p1"]
                async with session.put(
                    providers["p1"].control_url + "behavior", json={"type": "wrong_chain"}
                ) as r:
                    assert r.status == 200

                async def moved() -> bool:
                    return any(
                        e["type"] == "resubscribed" and e["reason"] == "wrong_chain" for e in events.history()
                    )

                await async_wait_for_value(moved, timeout=10, message="resubscribed away from p1")
                truth = providers["p2"].server.chain  # type: ignore[union-attr]
                right = []
                for _ in range(15):  # the other chain's heads sent before the move, then this chain's only
                    head = orjson.loads((await ws.receive(timeout=5)).data)["params"]["result"]
                    right.append(head["hash"] == truth.block_hash(int(head["number"], 16)))
                assert right[-5:] == [True] * 5 and right == sorted(right), right

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_chain_id_checker_asks_unverified_and_wrong_providers_every_round_verified_ones_per_interval(
    tmp_path: Path,
) -> None:
    from lab.gateway.chain_check import ChainIdChecker

    chain = next(registry(tmp_path, chain_check_interval_s=5.0).chains())
    answers_by_provider: dict[str, int | None] = {"p1": 1, "p2": 5, "p3": None}  # p3: down
    asked: list[str] = []
    now = [100.0]

    async def fetch(_chain: Any, provider_id: str) -> int | None:
        asked.append(provider_id)
        return answers_by_provider[provider_id]

    checker = ChainIdChecker(chain, fetch, clock=lambda: now[0])

    async def rounds() -> list[list[str]]:
        seen = []
        for step in (0.0, 1.0, 4.5, 5.0):
            now[0] = 100.0 + step
            asked.clear()
            await checker.check_due()
            seen.append(sorted(asked))
        return seen

    assert asyncio.run(rounds()) == [
        ["p1", "p2", "p3"],  # at start: everyone
        ["p2", "p3"],  # p2 on another chain, p3 never answered: every round
        ["p2", "p3"],
        ["p1", "p2", "p3"],  # p1 verified 5 s ago: due again
    ]
    assert chain.wrong_chain == {"p2"} and chain.unverified == {"p3"}
