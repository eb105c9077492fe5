"""JSON-RPC 2.0 framing as the spec's examples (§7) have it."""

from __future__ import annotations

import pytest

from lab import jsonrpc
from lab.jsonrpc import Request


def test_single_request_is_validated() -> None:
    parsed = jsonrpc.parse(b'{"jsonrpc": "2.0", "method": "eth_chainId", "id": 7}')
    assert not parsed.is_batch and parsed.error is None
    assert parsed.items == [Request("eth_chainId", None, 7, False)]


def test_notification_has_no_id() -> None:
    (item,) = jsonrpc.parse(b'{"jsonrpc": "2.0", "method": "eth_chainId"}').items
    assert isinstance(item, Request) and item.is_notification
    assert "id" not in item.to_dict()


def test_malformed_json_is_a_parse_error() -> None:
    parsed = jsonrpc.parse(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert parsed.error == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}


def test_empty_batch_is_one_invalid_request() -> None:
    parsed = jsonrpc.parse(b"[]")
    assert parsed.is_batch and jsonrpc.error_code(parsed.error) == jsonrpc.INVALID_REQUEST


def test_garbage_batch_yields_one_error_per_entry() -> None:
    parsed = jsonrpc.parse(b"[1, 2, 3]")
    assert parsed.is_batch and len(parsed.items) == 3
    assert all(jsonrpc.error_code(item) == jsonrpc.INVALID_REQUEST for item in parsed.items)


def test_mixed_batch_keeps_request_order() -> None:
    parsed = jsonrpc.parse(
        b'[{"jsonrpc": "2.0", "method": "a", "id": "1"}, {"foo": "boo"},'
        b' {"jsonrpc": "2.0", "method": "b", "params": [1]}]'
    )
    first, second, third = parsed.items
    assert isinstance(first, Request) and first.id == "1"
    assert jsonrpc.error_code(second) == jsonrpc.INVALID_REQUEST
    assert isinstance(third, Request) and third.is_notification and third.params == [1]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"jsonrpc": "1.0", "method": "a", "id": 1}', "jsonrpc"),
        (b'{"jsonrpc": "2.0", "method": 1, "id": 1}', "method"),
        (b'{"jsonrpc": "2.0", "method": "", "id": 1}', "method"),
        (b'{"jsonrpc": "2.0", "method": "a", "params": "x", "id": 1}', "params"),
        (b'{"jsonrpc": "2.0", "method": "a", "id": {"x": 1}}', "id"),
        (b'{"jsonrpc": "2.0", "method": "a", "id": true}', "id"),
    ],
)
def test_invalid_requests_say_which_member_is_wrong(body: bytes, detail: str) -> None:
    (item,) = jsonrpc.parse(body).items
    assert jsonrpc.error_code(item) == jsonrpc.INVALID_REQUEST
    assert detail in item["error"]["data"]


def test_error_code_ignores_non_errors() -> None:
    assert jsonrpc.error_code(jsonrpc.result(1, "0x1")) is None
    assert jsonrpc.error_code({"error": "not an object"}) is None
    assert jsonrpc.error_code(jsonrpc.error(1, -32005, "limit", {"retry": 1})) == -32005


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0x1b4", 436),
        ("0x0", 0),
        (436, 436),
        ("436", 436),
        ("0xzz", None),
        (None, None),
        (True, None),
        ([], None),
    ],
)
def test_quantity(value: object, expected: int | None) -> None:
    assert jsonrpc.quantity(value) == expected
