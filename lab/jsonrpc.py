"""JSON-RPC 2.0 framing shared by the mock provider, the reference gateway and the traffic generators.

Only the envelope lives here (parsing, validation, error objects); what a method means is the
provider's business and how a request is routed is the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import orjson

VERSION = "2.0"

# Standard codes (JSON-RPC 2.0 §5.1) and the Ethereum ones gateways classify on (EIP-1474).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # generic "server error" range start; providers use it for many things
EXECUTION_REVERTED = 3
LIMIT_EXCEEDED = -32005  # EIP-1474: "request exceeds defined limit" (rate limits, range limits)
RESOURCE_UNAVAILABLE = -32002

CALLER_ERROR_CODES = frozenset({INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, EXECUTION_REVERTED})

JSON_CONTENT_TYPE = "application/json"


class ErrorObject(TypedDict):
    """The `error` member of a JSON-RPC response (§5.1)."""

    code: int
    message: str
    data: NotRequired[Any]


class JsonRpcError(Exception):
    """An error that becomes a JSON-RPC error object in the response."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> ErrorObject:
        err: ErrorObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


@dataclass(frozen=True, slots=True)
class Request:
    """One validated request object. `is_notification` requests get no response."""

    method: str
    params: Any
    id: Any
    is_notification: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jsonrpc": VERSION, "method": self.method}
        if self.params is not None:
            out["params"] = self.params
        if not self.is_notification:
            out["id"] = self.id
        return out


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def result(id_: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": id_, "result": value}


def error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": id_, "error": JsonRpcError(code, message, data).to_dict()}


def error_from(id_: Any, exc: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": id_, "error": exc.to_dict()}


def validate(obj: Any) -> Request | dict[str, Any]:
    """Validate one request object: a Request, or the -32600 error response to send in its place."""
    if not isinstance(obj, dict):
        return error(None, INVALID_REQUEST, "Invalid Request")
    id_ = obj.get("id")
    has_id = "id" in obj
    if (has_id and not (id_ is None or isinstance(id_, str | int | float))) or isinstance(id_, bool):
        return error(None, INVALID_REQUEST, "Invalid Request", "id must be a string, number or null")
    if obj.get("jsonrpc") != VERSION:
        return error(id_, INVALID_REQUEST, "Invalid Request", "jsonrpc must be exactly '2.0'")
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return error(id_, INVALID_REQUEST, "Invalid Request", "method must be a non-empty string")
    params = obj.get("params")
    if params is not None and not isinstance(params, list | dict):
        return error(id_, INVALID_REQUEST, "Invalid Request", "params must be an array or an object")
    return Request(method=method, params=params, id=id_, is_notification=not has_id)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed HTTP/WS payload: the requests to run and errors already decided, in request order.

    `items` holds, per entry, either a Request or a ready error response. A single (non-batch) payload
    has exactly one item. `error` is set when the whole payload is unusable (parse error, empty batch).
    """

    is_batch: bool
    items: list[Request | dict[str, Any]]
    error: dict[str, Any] | None = None


def parse(body: bytes | str) -> Parsed:
    """Parse a payload as the JSON-RPC 2.0 spec says: parse error, empty batch and garbage entries."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Parsed(False, [], error(None, PARSE_ERROR, "Parse error"))
    if isinstance(obj, list):
        if not obj:
            return Parsed(True, [], error(None, INVALID_REQUEST, "Invalid Request", "empty batch"))
        return Parsed(True, [validate(entry) for entry in obj])
    return Parsed(False, [validate(obj)])


def is_error_response(obj: Any) -> bool:
    return isinstance(obj, dict) and "error" in obj


def error_code(obj: Any) -> int | None:
    """The JSON-RPC error code of a response object, if it is a well-formed error."""
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), int):
            return err["code"]
    return None


def quantity(value: Any) -> int | None:
    """An Ethereum quantity ("0x1b4", or a plain integer or decimal string) as an int; None if it is not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            return None
    return None
