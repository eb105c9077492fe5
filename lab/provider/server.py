"""The provider's HTTP side: JSON-RPC over POST, the WebSocket upgrade, and the `/_lab/` control API.

One `ProviderServer` owns the chain, the behaviour in force, the stats and the WebSocket sessions.
`answer()` is the single path every request takes (HTTP and WebSocket alike): decide the outcome with
the behaviour's policy, wait what it says, then run the method or produce the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from lab import jsonrpc
from lab.jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, SERVER_ERROR, JsonRpcError, Request
from lab.provider.chain import Chain
from lab.provider.methods import METHODS, NodeConfig, View, runs_off_loop
from lab.provider.policy import HEALTHY, SERVE, Action, Call, Outcome, compile_policy
from lab.provider.settings import ProviderSettings
from lab.provider.specs import BehaviorError, BehaviorSpec, dump_behavior, parse_behavior
from lab.provider.stats import INVALID_REQUEST, UNKNOWN_METHOD, Stats
from lab.provider.ws import SESSION_METHODS, HeadFeed, WsSession

if TYPE_CHECKING:
    from aiohttp.web_request import BaseRequest

log = logging.getLogger("lab.provider")

PROVIDER_HEADER = "X-Lab-Provider"
TIMED_OUT_ERROR = JsonRpcError(SERVER_ERROR, "request timed out")
Clock = Callable[[], float]


class ProviderServer:
    def __init__(
        self, settings: ProviderSettings, clock: Clock = time.time, *, head_feed: bool = True
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.chain = Chain(settings.chain_id, settings.genesis_time, settings.block_time)
        self.node = NodeConfig(settings.provider_id, settings.logs_max_range, settings.logs_max_results)
        self.stats = Stats()
        self.sessions: set[WsSession] = set()
        self.feed = HeadFeed(self)
        self.started_at = clock()
        self.set_behavior(settings.behavior)
        self.app = self._make_app(head_feed)

    # --- behaviour ----------------------------------------------------------------------------------

    def set_behavior(self, spec: BehaviorSpec) -> None:
        """Put a behaviour in force from now on, with fresh state and seeds."""
        self.behavior = spec
        self.policy = compile_policy(spec, self.settings.seed)
        self.healthy = self.policy is HEALTHY
        self.behavior_set_at = self.clock()

    def view(self, now: float, lag: int = 0, chain: Chain | None = None) -> View:
        chain = chain or self.chain  # another chain's (wrong_chain)
        return View(chain, self.node, chain.head_at(now), lag)

    def probe(self, method: str, now: float, transport: str) -> Outcome:
        """The node's state for `method` now, without consuming any behaviour state."""
        if self.healthy:
            return SERVE
        call = Call(method, None, now - self.behavior_set_at, self.view(now), transport, probe=True)
        return self.policy.decide(call)

    # --- answering ---------------------------------------------------------------------------------

    async def answer(
        self, request: Request, transport: str, session: WsSession | None = None
    ) -> tuple[dict[str, Any] | None, Outcome]:
        """The response to one request (None for a notification) and the outcome that produced it."""
        now = self.clock()
        outcome = SERVE
        if not self.healthy:
            call = Call(request.method, request.params, now - self.behavior_set_at, self.view(now), transport)
            outcome = self.policy.decide(call)
            if outcome.delay_s > 0:
                await self._wait(outcome.delay_s)
                now = self.clock()
        method = request.method if request.method in METHODS or request.method in SESSION_METHODS else None
        stat_name = method or UNKNOWN_METHOD
        action = outcome.action
        if action is Action.SERVE:
            view = self.view(now, outcome.lag, outcome.chain)
            if runs_off_loop(method, request.params, view):
                with self._in_flight():
                    response = await asyncio.to_thread(self._execute, request, method, view, session)
            else:
                response = self._execute(request, method, view, session)
            self.stats.record(stat_name, _served_label(response, outcome), now)
        elif action is Action.HANG:
            self.stats.record(stat_name, outcome.label, now)  # the client may give up first: count it now
            await self._wait(outcome.hold_s)
            response = jsonrpc.error_from(request.id, TIMED_OUT_ERROR)
        else:
            self.stats.record(stat_name, outcome.label, now)
            response = {"jsonrpc": "2.0", "id": request.id, "error": outcome.error}
        return (None if request.is_notification else response), outcome

    async def _wait(self, seconds: float) -> None:
        """A behaviour's delay or hold; cancelled with the request when its client disconnects."""
        with self._in_flight():
            await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count a request that waits (a delay, a hold, work off the event loop) while it waits."""
        self.stats.in_flight += 1
        try:
            yield
        finally:
            self.stats.in_flight -= 1

    def _execute(
        self, request: Request, method: str | None, view: View, session: WsSession | None
    ) -> dict[str, Any]:
        try:
            if method is None:
                raise JsonRpcError(
                    METHOD_NOT_FOUND, f"the method {request.method} does not exist/is not available"
                )
            if method in SESSION_METHODS:
                if session is None:
                    raise JsonRpcError(
                        METHOD_NOT_FOUND, "notifications not supported (use the WebSocket endpoint)"
                    )
                value = session.call(method, request.params)
            else:
                value = METHODS[method](request.params, view)
        except JsonRpcError as exc:
            return jsonrpc.error_from(request.id, exc)
        except Exception:  # a bug in a handler must not take the node down
            log.exception("method %s failed", request.method)
            return jsonrpc.error(request.id, INTERNAL_ERROR, "Internal error")
        return {"jsonrpc": "2.0", "id": request.id, "result": value}

    async def answer_payload(
        self, payload: bytes | str, transport: str, session: WsSession | None = None
    ) -> tuple[Any, list[Outcome]]:
        """The response body for a raw payload (None when nothing is owed) and each request's outcome."""
        parsed = jsonrpc.parse(payload)
        if parsed.error is not None:
            self.stats.record(INVALID_REQUEST, "error", self.clock())
            return parsed.error, []
        if not parsed.is_batch:
            response, outcome = await self._answer_item(parsed.items[0], transport, session)
            return response, [] if outcome is None else [outcome]
        results = await asyncio.gather(
            *(self._answer_item(item, transport, session) for item in parsed.items)
        )
        responses = [response for response, _ in results if response is not None]
        return responses or None, [outcome for _, outcome in results if outcome is not None]

    async def _answer_item(
        self, item: Request | dict[str, Any], transport: str, session: WsSession | None
    ) -> tuple[dict[str, Any] | None, Outcome | None]:
        if isinstance(item, dict):  # already an "Invalid Request" error
            self.stats.record(INVALID_REQUEST, "error", self.clock())
            return item, None
        return await self.answer(item, transport, session)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        response, outcomes = await self.answer_payload(body, "http")
        if any(outcome.action is Action.DROP for outcome in outcomes):
            _drop(request)
            return web.Response(status=499)  # never sent: the connection is gone
        return _http_reply(response, outcomes)

    def _too_large(self) -> web.Response:
        self.stats.record(INVALID_REQUEST, "error", self.clock())
        limit = self.settings.max_body_bytes
        body = jsonrpc.error(None, jsonrpc.INVALID_REQUEST, f"request body larger than {limit} bytes")
        return web.Response(status=413, body=orjson.dumps(body), content_type=jsonrpc.JSON_CONTENT_TYPE)

    async def handle_get(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.settings.ws_heartbeat_s,
            max_msg_size=self.settings.max_body_bytes,
            compress=False,
            decode_text=False,
        )
        if not ws.can_prepare(request).ok:
            return _json(
                {
                    "error": "POST JSON-RPC requests here, or upgrade to a WebSocket",
                    "id": self.node.provider_id,
                },
                status=405,
            )
        await ws.prepare(request)
        await WsSession(self, ws, request.transport).run()
        return ws

    # --- control API --------------------------------------------------------------------------------

    def _heads(self, now: float) -> dict[str, int]:
        head = self.chain.head_at(now)
        outcome = self.probe("eth_blockNumber", now, "http")
        served_chain = outcome.chain or self.chain  # another chain's head when serving one (wrong_chain)
        return {"head": max(0, served_chain.head_at(now) - outcome.lag), "chain_head": head}

    async def handle_health(self, request: web.Request) -> web.Response:
        now = self.clock()
        return _json(
            {
                "status": "ok",
                "id": self.node.provider_id,
                **self._heads(now),
                "chain_id": self.chain.chain_id,
                "block_time": self.chain.block_time,
                "genesis_time": self.chain.genesis_time,
                "forks": list(self.chain.forks),
                "behavior": self.behavior.type,
                "uptime_s": round(now - self.started_at, 3),
            }
        )

    async def handle_get_behavior(self, request: web.Request) -> web.Response:
        return _json(dump_behavior(self.behavior))

    async def handle_put_behavior(self, request: web.Request) -> web.Response:
        try:
            spec = parse_behavior(orjson.loads(await request.read()))
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"malformed JSON: {exc}"}, status=400)
        except BehaviorError as exc:
            return _json({"error": f"invalid behavior: {exc}", "problems": exc.problems}, status=400)
        self.set_behavior(spec)
        log.info("provider %s: behaviour set to %s", self.node.provider_id, spec.type)
        return _json(dump_behavior(spec))

    async def handle_stats(self, request: web.Request) -> web.Response:
        now = self.clock()
        return _json(
            {
                "id": self.node.provider_id,
                "ts": now,
                **self._heads(now),
                "behavior": self.behavior.type,
                "behavior_elapsed_s": round(now - self.behavior_set_at, 3),
                "forks": list(self.chain.forks),
                **self.stats.snapshot(),
            }
        )

    async def handle_reorg(self, request: web.Request) -> web.Response:
        """Replace the last `depth` blocks (or every block from `fork_block` on) by a sibling branch."""
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"malformed JSON: {exc}"}, status=400)
        try:
            result = self.reorg(body if isinstance(body, dict) else {}, self.clock())
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        log.info("provider %s: reorg from block %d", self.node.provider_id, result["fork_block"])
        return _json(result)

    def reorg(self, body: dict[str, Any], now: float) -> dict[str, Any]:
        """A reorg asked for by `{"depth": K}` or `{"fork_block": N}` (ValueError naming the field)."""
        head = self.chain.head_at(now)
        depth, fork_block = body.get("depth"), body.get("fork_block")
        if (depth is None) == (fork_block is None):
            raise ValueError('give one of "depth" (blocks replaced, ≥ 1) or "fork_block" (≥ 1)')
        if fork_block is None:
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ValueError(f'"depth": expected a whole number ≥ 1, got {depth!r}')
            fork_block = max(1, head - depth + 1)
        elif not isinstance(fork_block, int) or isinstance(fork_block, bool) or fork_block < 1:
            raise ValueError(f'"fork_block": expected a whole number ≥ 1, got {fork_block!r}')
        changed = self.chain.reorg(fork_block)
        if changed:
            self.feed.reorged(fork_block)
        return {
            "fork_block": fork_block,
            "head": head,
            "replaced": max(0, head - fork_block + 1),
            "forks": list(self.chain.forks),
            "changed": changed,
        }

    async def handle_reset(self, request: web.Request) -> web.Response:
        self.set_behavior(self.settings.behavior)
        self.stats.reset()
        return _json({"status": "reset", "behavior": dump_behavior(self.behavior)})

    # --- app ----------------------------------------------------------------------------------------

    def _make_app(self, head_feed: bool) -> web.Application:
        # aiohttp's own body limit sits above ours so that an oversize body gets our 413 JSON answer.
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        header_value = self.node.provider_id

        async def name_provider(_request: BaseRequest, response: web.StreamResponse) -> None:
            response.headers[PROVIDER_HEADER] = header_value

        app.on_response_prepare.append(name_provider)
        for path in ("/", "/ws"):
            app.router.add_post(path, self.handle_post)
            app.router.add_get(path, self.handle_get)
        app.router.add_get("/_lab/health", self.handle_health)
        app.router.add_get("/_lab/behavior", self.handle_get_behavior)
        app.router.add_put("/_lab/behavior", self.handle_put_behavior)
        app.router.add_get("/_lab/stats", self.handle_stats)
        app.router.add_post("/_lab/reset", self.handle_reset)
        app.router.add_post("/_lab/reorg", self.handle_reorg)
        if head_feed:
            app.cleanup_ctx.append(self._run_head_feed)
        app.on_shutdown.append(self._close_sessions)
        return app

    async def _run_head_feed(self, _app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.feed.run(), name="head-feed")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _close_sessions(self, _app: web.Application) -> None:
        await asyncio.gather(*(session.close() for session in list(self.sessions)), return_exceptions=True)


def _served_label(response: dict[str, Any], outcome: Outcome) -> str:
    """The stats outcome of a served answer, damaging its result first when the behaviour says so."""
    if "error" in response:
        return "error"
    if outcome.damage is not None:
        response["result"], damaged = outcome.damage.apply(response["result"])
        return "corrupt" if damaged else "ok"
    return "wrong_chain" if outcome.chain is not None else "ok"


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=jsonrpc.JSON_CONTENT_TYPE)


def _http_reply(body: Any, outcomes: list[Outcome]) -> web.Response:
    """HTTP status and headers for a body: a failure's status when every request in it failed."""
    failures = [outcome for outcome in outcomes if outcome.action is not Action.SERVE]
    status = failures[0].http_status if failures and len(failures) == len(outcomes) else 200
    headers = {}
    retry_after = max((o.retry_after_s for o in outcomes if o.retry_after_s is not None), default=None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if body is None:
        return web.Response(status=204 if status == 200 else status, headers=headers)
    if len(outcomes) == 1 and failures and failures[0].plain_http:
        return web.Response(status=status, text=f"{status} {_phrase(status)}\n", headers=headers)
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=jsonrpc.JSON_CONTENT_TYPE, headers=headers
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
