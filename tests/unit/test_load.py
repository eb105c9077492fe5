"""The traffic's parts that need no Locust: method mix, params, classification, metadata, settings,
the recorder and WebSocket head rows."""

from __future__ import annotations

import base64
import errno
import random
import socket
from collections import Counter
from pathlib import Path

import orjson
import pytest
from geventhttpclient.header import Headers

from lab.load.recorder import Recorder
from lab.load.rpc import ChainKnowledge, MethodMix, classify, exception_class, params_for, read_meta
from lab.load.settings import SettingsError, settings_from_env
from lab.load.ws import head_row
from lab.record import read_table


def test_method_mix_follows_the_weights() -> None:
    mix = MethodMix({"a": 6, "b": 3, "c": 1})
    rng = random.Random(1)
    counts = Counter(mix.choose(rng) for _ in range(20_000))
    assert counts["a"] / 20_000 == pytest.approx(0.6, abs=0.02)
    assert counts["c"] / 20_000 == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError):
        MethodMix({"a": 0})


def test_params_follow_what_the_chain_has_shown() -> None:
    chain, rng = ChainKnowledge(), random.Random(3)
    assert params_for("eth_getTransactionReceipt", chain, rng) == ("eth_getBlockByNumber", ["latest", False])
    block = {"number": "0x64", "hash": "0x" + "ab" * 32, "transactions": ["0x" + "cd" * 32, "0x" + "ef" * 32]}
    chain.learn("eth_getBlockByNumber", block)
    method, params = params_for("eth_getTransactionReceipt", chain, rng)
    assert method == "eth_getTransactionReceipt" and params[0] in block["transactions"]
    assert params_for("eth_getBlockByHash", chain, rng)[1] == [block["hash"], False]
    for _ in range(50):
        _, [log_filter] = params_for("eth_getLogs", chain, rng)
        assert 95 <= int(log_filter["fromBlock"], 16) < int(log_filter["toBlock"], 16) == 100
        _, [call, tag] = params_for("eth_call", chain, rng)
        assert (
            call["to"] in chain.contracts
            and call["data"].startswith("0x70a08231")
            and len(call["data"]) == 74
        )
        assert tag == "latest" or 69 <= int(tag, 16) <= 100
    chain.learn("eth_blockNumber", "0x60")
    assert chain.head == 100, "the head never goes backwards"


def answer(obj: object) -> bytes:
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, answer({"jsonrpc": "2.0", "id": 1, "result": "0x1"}), (True, None, None)),
        (
            200,
            answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "x"}}),
            (False, "rpc_error", -32000),
        ),
        (
            200,
            answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "slow"}}),
            (False, "rate_limited", -32005),
        ),
        (429, b"Too Many Requests", (False, "rate_limited", None)),
        (
            503,
            answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "down"}}),
            (False, "rpc_error", -32000),
        ),
        (503, b"Service Unavailable", (False, "http_status", None)),
        (502, answer({"error": "no upstream"}), (False, "http_status", None)),
        (
            429,
            answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "slow down"}}),
            (False, "rate_limited", -32000),
        ),
        (
            503,
            answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "limit"}}),
            (False, "rate_limited", -32005),
        ),
        (200, b"<html>oops</html>", (False, "invalid_response", None)),
        (200, answer({"jsonrpc": "2.0", "id": 2, "result": "0x1"}), (False, "invalid_response", None)),
        (200, answer({"jsonrpc": "2.0", "id": 1}), (False, "invalid_response", None)),
    ],
)
def test_classify_single_answers(status: int, body: bytes, expected: tuple) -> None:
    [outcome] = classify([(1, "eth_blockNumber")], status, body)
    assert (outcome.ok, outcome.error_class, outcome.rpc_code) == expected


def test_classify_transport_failures() -> None:
    assert classify([(1, "m")], 0, None, TimeoutError("timed out"))[0].error_class == "timeout"
    assert classify([(1, "m")], 0, None, ConnectionRefusedError())[0].error_class == "refused"
    assert classify([(1, "m")], 0, None, ConnectionResetError())[0].error_class == "reset"
    assert classify([(1, "m")], 0, None, BrokenPipeError())[0].error_class == "reset"
    assert classify([(1, "m")], 0, None, socket.gaierror())[0].error_class == "connection"
    torn = classify([(1, "m")], 200, b'{"jsonrpc": "2.0", "id"', ConnectionResetError())  # reset mid-body
    assert torn[0].error_class == "reset"
    assert exception_class(ValueError("x")) == "other"


def test_geventhttpclient_errors_are_unwrapped_and_statuses_read() -> None:
    from geventhttpclient.useragent import BadStatusCode, RetriesExceeded

    timed_out = RetriesExceeded("http://gw/", 0, original=TimeoutError("timed out"))
    assert exception_class(timed_out) == "timeout"
    broken = RetriesExceeded("http://gw/", 0, original=OSError(errno.EPIPE, "Broken pipe"))
    assert exception_class(broken) == "reset"
    # Locust hands a non-2xx over with BadStatusCode: the status and the body decide, not the exception.
    body = answer({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "all providers down"}})
    [outcome] = classify([(1, "m")], 503, body, BadStatusCode("http://gw/", code=503))
    assert (outcome.error_class, outcome.rpc_code) == ("rpc_error", -32000)
    [limited] = classify([(1, "m")], 429, b"", BadStatusCode("http://gw/", code=429))
    assert limited.error_class == "rate_limited"


def test_classify_batches_entry_by_entry() -> None:
    calls = [(1, "eth_blockNumber"), (2, "eth_call"), (3, "eth_getBalance")]
    body = answer(
        [
            {"jsonrpc": "2.0", "id": 2, "error": {"code": 3, "message": "reverted"}},
            {"jsonrpc": "2.0", "id": 1, "result": "0x10"},
        ]
    )
    outcomes = classify(calls, 200, body, batch=True)
    assert [(o.method, o.ok, o.error_class, o.position) for o in outcomes] == [
        ("eth_blockNumber", True, None, 1),
        ("eth_call", False, "rpc_error", 0),
        ("eth_getBalance", False, "invalid_response", None),
    ]
    refused = classify(
        calls,
        200,
        answer({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "big"}}),
        batch=True,
    )
    assert {(o.error_class, o.rpc_code) for o in refused} == {("rpc_error", -32600)}


def test_routing_metadata_from_lasso_headers() -> None:
    # as the HTTP clients hand them over: names in any case (geventhttpclient's case-insensitive headers)
    meta = read_meta(
        Headers({"X-Lasso-Provider": "alpha", "X-Lasso-Attempts": "2", "X-Lasso-Strategy": "fastest"})
    )
    assert meta.at(None) == ("alpha", 2)
    batch = read_meta(Headers({"x-lasso-provider": "alpha,-,beta", "X-LASSO-ATTEMPTS": "1,0,3"}))
    assert [batch.at(i) for i in range(3)] == [("alpha", 1), (None, 0), ("beta", 3)]
    encoded = base64.urlsafe_b64encode(orjson.dumps({"selected_provider": {"id": "gamma"}, "attempts": 4}))
    assert read_meta(Headers({"X-Lasso-Meta": encoded.decode().rstrip("=")})).at(None) == ("gamma", 4)
    assert read_meta(Headers({"X-Lab-Provider": "direct"})).at(None) == ("direct", None)
    assert read_meta(Headers({"Content-Type": "application/json"})).at(None) == (None, None)
    assert read_meta(None).at(None) == (None, None)


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "LAB_RUN_DIR": str(tmp_path),
        "LAB_LOAD": orjson.dumps({"users": 3, "duration": "2m", "strategy": "fastest"}).decode(),
        "LAB_LOAD_METHODS": "eth_blockNumber=3, eth_call",
        "LAB_LOAD_TIMEOUT": "750ms",
        "LAB_LOAD_NEW_HEADS": "2",
        "LAB_CHAIN": "base",
    }
    settings = settings_from_env(env)
    assert settings.load.users == 3 and settings.load.duration == 120 and settings.load.timeout == 0.75
    assert settings.load.methods == {"eth_blockNumber": 3.0, "eth_call": 1.0}
    assert settings.load.subscribers.new_heads == 2
    assert settings.rpc_url_path() == "/rpc/fastest/base?include_meta=headers"
    assert settings.ws_url_for("http://127.0.0.1:4000") == "ws://127.0.0.1:4000/ws/rpc/base"
    assert settings.run_dir == tmp_path
    defaults = settings_from_env({})
    assert defaults.run_dir is None and defaults.rpc_url_path() == "/rpc/ethereum?include_meta=headers"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LAB_LOAD": "{not json"}, "LAB_LOAD"),
        ({"LAB_LOAD_TIMEOUT": "soon"}, "LAB_LOAD_TIMEOUT"),
        ({"LAB_LOAD_METHODS": "eth_call=heavy"}, "LAB_LOAD_METHODS"),
        ({"LAB_LOAD_BATCH_SHARE": "2"}, "batch.share"),
        ({"LAB_SEED": "x"}, "LAB_SEED"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        settings_from_env(env)


def test_recorder_writes_requests_batches_and_heads(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, flush_interval=3600)
    recorder.on_request(
        "POST",
        "eth_call",
        12.5,
        10,
        None,
        {
            "transport": "http",
            "http_status": 200,
            "entries": [
                {
                    "method": "eth_call",
                    "ok": True,
                    "error_class": None,
                    "rpc_code": None,
                    "provider": "alpha",
                    "attempts": 1,
                }
            ],
        },
        start_time=1_700_000_000.25,
    )
    recorder.on_request(
        "POST",
        "batch",
        30.0,
        10,
        RuntimeError("x"),
        {
            "transport": "batch",
            "batch_id": "b1",
            "http_status": 200,
            "entries": [
                {"method": "eth_blockNumber", "ok": True, "error_class": None, "rpc_code": None},
                {"method": "eth_call", "ok": False, "error_class": "rpc_error", "rpc_code": -32000},
            ],
        },
        start_time=1_700_000_001.0,
    )
    recorder.on_request("GET", "/other", 5.0, 0, ConnectionResetError(), {}, start_time=1_700_000_002.0)
    recorder.on_request(
        "WS",
        "newHeads",
        1.0,
        0,
        None,
        {
            "head": head_row(
                "newHeads",
                "s1",
                {"number": "0x10", "hash": "0xaa", "parentHash": "0x99", "timestamp": "0x6553f100"},
                1_700_000_003.0,
            )
        },
    )
    recorder.on_request("WS", "ignored", 1.0, 0, None, {"record": False})
    recorder.close()
    requests = read_table(tmp_path, "requests")
    assert list(requests["method"]) == ["eth_call", "eth_blockNumber", "eth_call", "/other"]
    assert list(requests["transport"]) == ["http", "batch", "batch", "http"]
    assert list(requests["ok"]) == [True, True, False, False]
    assert requests.loc[0, "provider"] == "alpha" and requests.loc[0, "latency_ms"] == 12.5
    assert requests.loc[2, "rpc_code"] == -32000 and requests.loc[2, "batch_size"] == 2
    assert requests.loc[3, "error_class"] == "other"
    assert requests["ts"].iloc[0].timestamp() == 1_700_000_000.25
    heads = read_table(tmp_path, "heads")
    assert heads.loc[
        0, ["subscriber", "subscription", "block_number", "parent_hash", "block_timestamp"]
    ].tolist() == [
        "s1",
        "newHeads",
        16,
        "0x99",
        0x6553F100,
    ]


def test_head_rows_for_logs_and_garbage() -> None:
    log = {"blockNumber": "0x20", "blockHash": "0xbb", "logIndex": "0x0"}
    row = head_row("logs", "s2", log, 5.0)
    assert row is not None and (row["block_number"], row["block_hash"], row["parent_hash"]) == (
        32,
        "0xbb",
        None,
    )
    assert head_row("newHeads", "s", "not a header", 1.0) is None
    assert head_row("newHeads", "s", {"number": "0xzz"}, 1.0)["block_number"] is None
