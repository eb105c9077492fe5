"""Providers as real processes (`python -m lab provider`): start, answer, agree, misbehave from the
environment, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest

from lab.eventually import wait_for_value
from lab.provider.launch import start_provider_process
from lab.serving import ProcessExited

pytestmark = pytest.mark.integration


async def _rpc(url: str, method: str, params: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        ) as response,
    ):
        return response.status, response.headers.get("X-Lab-Provider"), await response.json()


def rpc(url: str, method: str, params: Any = None) -> Any:
    return asyncio.run(_rpc(url, method, params))


def test_a_started_provider_answers_and_stops_on_sigterm() -> None:
    with start_provider_process("proc-1", block_time=0.1) as provider:
        status, header, body = rpc(provider.url, "eth_chainId")
        assert (status, header, body["result"]) == (200, "proc-1", "0x1")
        assert provider.pid is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", provider.port), timeout=1).close()


def test_providers_of_one_chain_agree_on_every_block_and_others_do_not() -> None:
    common = {"chain_id": 1, "block_time": 0.2, "genesis_time": 1_700_000_000}
    with (
        start_provider_process("a", **common) as a,
        start_provider_process("b", **common) as b,
        start_provider_process("other", **{**common, "chain_id": 2}) as other,
    ):
        started = time.monotonic()
        heads = [int(rpc(p.url, "eth_blockNumber")[2]["result"], 16) for p in (a, b)]
        blocks_meanwhile = (time.monotonic() - started) / common["block_time"]
        assert 0 <= heads[1] - heads[0] <= blocks_meanwhile + 1  # the same head for the same wall time
        for number in (0, 1, min(heads) - 100, min(heads)):
            blocks = [
                rpc(p.url, "eth_getBlockByNumber", [hex(number), True])[2]["result"] for p in (a, b, other)
            ]
            assert blocks[0] == blocks[1]
            assert blocks[0]["hash"] != blocks[2]["hash"]


def test_a_provider_can_start_misbehaving_from_the_environment() -> None:
    with start_provider_process(
        "sick", env={"LAB_PROVIDER_BEHAVIOR": '{"type": "rate_limited", "limit": 0}'}
    ) as p:
        status, header, body = rpc(p.url, "eth_blockNumber")
        assert (status, header, body["error"]["code"]) == (429, "sick", -32005)


def test_new_heads_over_a_real_process_at_50_ms() -> None:
    async def main(url: str) -> list[int]:
        async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
            await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}')
            assert "result" in orjson.loads((await ws.receive(timeout=5)).data)
            return [
                int(orjson.loads((await ws.receive(timeout=5)).data)["params"]["result"]["number"], 16)
                for _ in range(5)
            ]

    with start_provider_process("ws", block_time=0.05) as provider:
        numbers = asyncio.run(main(provider.ws_url))
    assert numbers == list(range(numbers[0], numbers[0] + 5))


def lab_provider(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m lab provider *args` run to its end (for start-up failures)."""
    return subprocess.run(
        [sys.executable, "-m", "lab", "provider", *args], capture_output=True, text=True, timeout=30
    )


def test_a_port_in_use_is_a_clear_start_up_failure() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = lab_provider("--id", "x", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_bad_behaviour_stops_the_process_before_it_listens() -> None:
    result = lab_provider("--id", "x", "--port", "0", "--behavior", '{"type": "latency", "ms": "slow"}')
    assert result.returncode == 2
    assert "--behavior / LAB_PROVIDER_BEHAVIOR" in result.stderr and "ms" in result.stderr


def test_the_head_moves_with_wall_time() -> None:
    with start_provider_process("moving", block_time=0.05) as provider:
        first = rpc(provider.url, "eth_blockNumber")[2]["result"]
        wait_for_value(
            lambda: rpc(provider.url, "eth_blockNumber")[2]["result"],
            lambda head: int(head, 16) > int(first, 16),
            timeout=5,
            message="head moves",
        )


def test_the_launcher_reports_a_process_that_exits_during_start_up_with_its_stderr() -> None:
    with (
        pytest.raises(ProcessExited, match=r"(?s)provider x exited with 2: .*--behavior.*ms"),
        start_provider_process("x", behavior={"type": "latency", "ms": "slow"}),
    ):
        pass
