"""The misbehaviours that make wrong answers possible: `wrong_chain` (another chain's answers) and
`corrupt` (damaged fields), as policies, as damage, and over HTTP and WebSocket in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from lab.provider.chain import Chain
from lab.provider.damage import AnswerDamage
from lab.provider.launch import FakeClock, running_provider
from lab.provider.methods import NodeConfig, View
from lab.provider.policy import SERVE, Call, compile_policy
from lab.provider.specs import BehaviorError, parse_behavior

GENESIS = 1_700_000_000
START = GENESIS + 10_000  # head 10_000 at the default 1 s block time
CHAIN = Chain(1, GENESIS, 1.0)
VIEW = View(CHAIN, NodeConfig("p1"), head=10_000)
WRONG_CHAIN_7 = {"type": "wrong_chain", "chain_id": 5, "head_offset": 7}
WRONG_CHAIN_50 = {"type": "wrong_chain", "chain_id": 5, "head_offset": 50}
MALFORMED_ALL = {"type": "corrupt", "rate": 1, "damage": ["malformed"]}


def decide(
    spec: Any, method: str = "eth_blockNumber", seed: int = 0, n: int = 1, probe: bool = False
) -> list:
    policy = compile_policy(parse_behavior(spec), seed)
    return [policy.decide(Call(method, None, 0.0, VIEW, probe=probe)) for _ in range(n)]


# --- specs and policies ------------------------------------------------------------------------------


def test_specs_validate_and_name_the_field() -> None:
    assert parse_behavior("wrong_chain").chain_id == 11_155_111
    assert parse_behavior({"type": "corrupt"}).damage == ["malformed", "missing", "wrong_value"]
    with pytest.raises(BehaviorError, match="rate"):
        parse_behavior({"type": "corrupt", "rate": 1.5})
    with pytest.raises(BehaviorError, match="damage"):
        parse_behavior({"type": "corrupt", "damage": ["scrambled"]})
    with pytest.raises(BehaviorError, match="chain_id"):
        parse_behavior({"type": "wrong_chain", "chain_id": 0})


def test_wrong_chain_serves_another_chain_offset_by_whole_blocks() -> None:
    (outcome,) = decide({"type": "wrong_chain", "chain_id": 5, "head_offset": -300})
    other = outcome.chain
    assert other is not None and other.chain_id == 5 and other.block_time == CHAIN.block_time
    assert other.head_at(START) == 10_000 - 300
    assert other.block_hash(42) != CHAIN.block_hash(42)
    assert decide("wrong_chain", probe=True)[0].chain is not None  # pushes follow the other chain too


def test_corrupt_damages_a_seeded_share_never_probes_and_only_the_methods_named() -> None:
    spec = {"type": "corrupt", "rate": 0.3}
    outcomes = decide(spec, seed=7, n=2000)
    damaged = [o for o in outcomes if o.damage is not None]
    assert 0.25 < len(damaged) / 2000 < 0.35
    assert {o.damage.kind for o in damaged} == {"malformed", "missing", "wrong_value"}
    assert [o.damage for o in outcomes] == [o.damage for o in decide(spec, seed=7, n=2000)]
    assert all(o is SERVE for o in decide({"type": "corrupt", "rate": 1.0}, probe=True, n=20))
    only_logs = {"type": "corrupt", "rate": 1.0, "methods": ["eth_getLogs"]}
    assert decide(only_logs, method="eth_blockNumber")[0] is SERVE
    assert decide(only_logs, method="eth_getLogs")[0].damage is not None


def test_all_of_keeps_the_other_chain_and_the_damage_with_a_lag() -> None:
    spec = {
        "type": "all_of",
        "behaviors": [{"type": "node_out_of_sync", "lag": 3}, "wrong_chain", {"type": "corrupt", "rate": 1}],
    }
    (outcome,) = decide(spec)
    assert outcome.lag == 3 and outcome.chain is not None and outcome.damage is not None


# --- damage --------------------------------------------------------------------------------------------


def test_malformed_makes_one_hex_value_invalid_without_touching_the_cached_block() -> None:
    block = CHAIN.block(100, False)
    pristine = orjson.dumps(block)
    damaged, hit = AnswerDamage("malformed", 1).apply(block)
    assert hit and orjson.dumps(block) == pristine
    changed = [k for k in block if block[k] != damaged[k]]
    assert len(changed) == 1
    value = damaged[changed[0]]
    if isinstance(value, list):  # a transaction hash in the list
        value = next(v for v, w in zip(value, block[changed[0]], strict=True) if v != w)
    assert value.endswith("z")


def test_wrong_value_stays_well_formed_and_missing_drops_one_field() -> None:
    assert AnswerDamage("wrong_value", 0).apply("0x0") == ("0x1", True)
    assert AnswerDamage("wrong_value", 0).apply("0x1f") == ("0x10", True)
    assert AnswerDamage("wrong_value", 0).apply("0x") == ("0x00", True)
    assert AnswerDamage("missing", 0).apply("0x10") == (None, True)
    receipt = CHAIN.receipt(*next((n, 0) for n in range(1, 100) if CHAIN.tx_count(n)))
    damaged, hit = AnswerDamage("missing", 3).apply(receipt)
    assert hit and orjson.dumps(damaged) != orjson.dumps(receipt)
    assert len(orjson.dumps(damaged)) < len(orjson.dumps(receipt))


@pytest.mark.parametrize("result", [False, [], None, True])
def test_nothing_to_damage_is_left_intact(result: Any) -> None:
    for kind in ("malformed", "missing", "wrong_value"):
        assert AnswerDamage(kind, 0).apply(result) == (result, False)


# --- over HTTP and WebSocket ---------------------------------------------------------------------------


def rpc(method: str, params: Any = None, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}


async def post(client: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with client.post(url, data=orjson.dumps(body)) as response:
        assert response.status == 200
        return orjson.loads(await response.read())


async def put_behavior(client: aiohttp.ClientSession, control_url: str, spec: Any) -> None:
    async with client.put(control_url + "behavior", data=orjson.dumps(spec)) as response:
        assert response.status == 200, await response.text()


def test_wrong_chain_over_http_answers_as_the_other_chain_would() -> None:
    async def main() -> None:
        async with (
            running_provider("p1", clock=FakeClock(START), head_feed=False) as provider,
            aiohttp.ClientSession() as client,
        ):
            await put_behavior(client, provider.control_url, WRONG_CHAIN_7)
            other = Chain(5, GENESIS - 7, 1.0)  # head_offset 7
            number = next(n for n in range(9_000, 9_100) if other.tx_count(n))
            body = await post(
                client,
                provider.url,
                [
                    rpc("eth_chainId", id_=1),
                    rpc("net_version", id_=2),
                    rpc("eth_blockNumber", id_=3),
                    rpc("eth_getBlockByNumber", [hex(number), True], id_=4),
                    rpc("eth_getTransactionByHash", [CHAIN.tx_hash(*_first_tx(CHAIN))], id_=5),
                ],
            )
            answers = {entry["id"]: entry["result"] for entry in body}
            assert answers[1] == "0x5" and answers[2] == "5" and answers[3] == hex(10_007)
            assert answers[4]["hash"] == other.block_hash(number) != CHAIN.block_hash(number)
            assert {tx["chainId"] for tx in answers[4]["transactions"]} == {"0x5"}
            assert answers[5] is None  # this chain's transaction is unknown there
            async with client.get(provider.control_url + "stats") as response:
                stats = await response.json()
            assert stats["requests"]["by_outcome"] == {"wrong_chain": 5}
            assert stats["head"] == 10_007

    asyncio.run(main())


def _first_tx(chain: Chain) -> tuple[int, int]:
    return next((n, 0) for n in range(9_000, 9_100) if chain.tx_count(n))


def test_corrupt_over_http_damages_every_answer_at_rate_one_and_counts_it() -> None:
    async def main() -> None:
        async with (
            running_provider("p1", clock=FakeClock(START), head_feed=False) as provider,
            aiohttp.ClientSession() as client,
        ):
            await put_behavior(client, provider.control_url, MALFORMED_ALL)
            body = await post(
                client, provider.url, [rpc("eth_blockNumber", id_=1), rpc("eth_syncing", id_=2)]
            )
            assert body[0]["result"] == hex(10_000)[:-1] + "z"
            assert body[1]["result"] is False  # nothing to damage
            await put_behavior(client, provider.control_url, "healthy")
            block = await post(client, provider.url, rpc("eth_getBlockByNumber", [hex(9_000), False]))
            assert block["result"] == CHAIN.block(9_000, False)  # the cache was never damaged
            async with client.get(provider.control_url + "stats") as response:
                stats = await response.json()
            assert stats["requests"]["by_outcome"] == {"corrupt": 1, "ok": 2}

    asyncio.run(main())


def test_wrong_chain_new_heads_come_from_the_other_chain_and_resume_on_this_one() -> None:
    async def main() -> None:
        clock = FakeClock(START)
        async with (
            running_provider("p1", clock=clock, head_feed=False) as provider,
            aiohttp.ClientSession() as client,
            client.ws_connect(provider.ws_url) as ws,
        ):
            server = provider.server
            assert server is not None
            await ws.send_bytes(orjson.dumps(rpc("eth_subscribe", ["newHeads"], id_=1)))
            assert "result" in orjson.loads((await ws.receive(timeout=5)).data)

            async def next_head() -> dict[str, Any]:
                clock.advance(1.0)
                server.feed.tick()
                message = orjson.loads((await ws.receive(timeout=5)).data)
                return message["params"]["result"]

            assert (await next_head())["hash"] == CHAIN.block_hash(10_001)
            await put_behavior(client, provider.control_url, WRONG_CHAIN_50)
            head = await next_head()
            other = Chain(5, GENESIS - 50, 1.0)
            assert head["number"] == hex(10_052) and head["hash"] == other.block_hash(10_052)
            await put_behavior(client, provider.control_url, "healthy")
            head = await next_head()  # back on this chain at once, not after 50 blocks of silence
            assert head["hash"] == CHAIN.block_hash(10_003)

    asyncio.run(main())
