"""The WebSocket endpoint of the local API Gateway WebSocket API: connections and their routes.

- $connect runs the REQUEST authorizer (token from the query string), then the $connect route;
  a Deny is an HTTP 403 (an authorizer that fails, 401) and no connection exists.
- Route selection on `$request.body.action`; a frame that is not JSON, or whose action no route
  serves, goes to `$default`. Events are shaped like API Gateway's (they parse with powertools'
  WebSocket event models) and carry the authorizer context on every route.
- Two-way routes: the handler's `body` is sent back on the connection.
- API Gateway's size rules (local_stack/frame_limits.py): a client frame over 32 KiB or a message
  over 128 KiB closes the connection with 1009; a route answer over 128 KiB is dropped with API
  Gateway's error message.
- Idle (10 min) and maximum (2 h) connection durations are enforced (shortenable for tests).
- Every frame written to a connection is shown to the FrameTap (frame_tap.py), for the benchmark.
- With the aws timing profile, API Gateway's own overhead (api_gateway.route_overhead) is waited
  before a MESSAGE frame's route is invoked, and once before the $connect authorizer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from chat_backend import wiring
from local_stack.api_gateway import ACCOUNT, API_ID, STAGE, new_id, now_ms, request_time, route_overhead
from local_stack.frame_limits import MAX_MESSAGE_BYTES, ApiGatewaySocket
from local_stack.frame_tap import FrameTap
from local_stack.invoker import Invoker
from local_stack.timing import TimingProfile

log = logging.getLogger("local_stack.gateway")


@dataclass
class Connection:
    connection_id: str
    ws: ApiGatewaySocket
    authorizer: dict[str, Any]
    connected_at_ms: int
    source_ip: str
    user_agent: str
    last_active: float = field(default_factory=time.monotonic)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class WebSocketApi:
    invoker: Invoker
    host: str
    timing: TimingProfile
    tap: FrameTap
    idle_timeout_s: float
    max_duration_s: float
    routes: dict[str, wiring.Function] = field(default_factory=wiring.routes)
    authorizer: wiring.Function = field(default_factory=wiring.authorizer_function)
    connections: dict[str, Connection] = field(default_factory=dict)  # by connection id
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    # --- events ----------------------------------------------------------------------------------

    def _request_context(self, conn: Connection, route_key: str, event_type: str) -> dict[str, Any]:
        request_id = new_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": conn.connected_at_ms,
            "requestTimeEpoch": now_ms(),
            "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            "requestId": request_id,
            "domainName": self.host,
            "connectionId": conn.connection_id,
            "apiId": API_ID,
        }

    def _handshake_event(self, conn: Connection, request: web.Request) -> dict[str, Any]:
        headers = dict(request.headers)
        return {
            "headers": headers,
            "multiValueHeaders": {k: request.headers.getall(k) for k in request.headers},
            "queryStringParameters": dict(request.query) or None,
            "multiValueQueryStringParameters": {k: request.query.getall(k) for k in request.query} or None,
            "requestContext": self._request_context(conn, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }

    def _authorizer_event(self, conn: Connection, request: web.Request) -> dict[str, Any]:
        event = self._handshake_event(conn, request)
        return {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API_ID}/{STAGE}/$connect",
            "stageVariables": {},
            **event,
        }

    # --- a connection's life -----------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Forbidden"}, status=403)
        conn = Connection(
            connection_id=new_id(),
            ws=ApiGatewaySocket(autoping=True),
            authorizer={},
            connected_at_ms=now_ms(),
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        await route_overhead(self.timing)
        try:
            policy = await self.invoker.invoke(
                self.authorizer.name, self._authorizer_event(conn, request), "authorizer $connect"
            )
        except Exception:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if not _allows(policy):
            return web.json_response({"message": "Forbidden"}, status=403)
        conn.authorizer = {"principalId": policy.get("principalId"), **(policy.get("context") or {})}
        connect_event = self._handshake_event(conn, request)
        connect_event["requestContext"]["authorizer"] = conn.authorizer
        answer = await self._invoke_lifecycle("$connect", connect_event)
        status = int(answer.get("statusCode", 200))
        if status == 429:  # the $connect route throttled the user: its status and Retry-After pass
            return web.json_response(
                {"message": "Too Many Requests"}, status=429, headers=answer.get("headers")
            )
        if not 200 <= status < 300:
            return web.json_response({"message": "Forbidden"}, status=403)

        await conn.ws.prepare(request)
        self.connections[conn.connection_id] = conn
        close_code, reason = 1000, "Client closed the connection"
        try:
            async for msg in conn.ws:
                conn.last_active = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    self._spawn(self._on_frame(conn, msg.data))
                elif msg.type == WSMsgType.BINARY:
                    self._spawn(self._on_frame(conn, msg.data.decode(errors="replace")))
                elif msg.type == WSMsgType.ERROR:
                    close_code, reason = 1006, "Connection error"
                    break
        finally:
            self.connections.pop(conn.connection_id, None)
            if conn.ws.close_code is not None:
                close_code = conn.ws.close_code
            event = self._handshake_event(conn, request)
            event["requestContext"] = self._request_context(conn, "$disconnect", "DISCONNECT")
            event["requestContext"]["authorizer"] = conn.authorizer
            event["requestContext"]["disconnectStatusCode"] = close_code
            event["requestContext"]["disconnectReason"] = reason
            self._spawn(self._invoke_lifecycle("$disconnect", event))
        return conn.ws

    async def _invoke_lifecycle(self, route_key: str, event: dict[str, Any]) -> dict[str, Any]:
        """The route's answer ({"statusCode": 500} when its function failed)."""
        fn = self.routes.get(route_key)
        if fn is None:
            return {"statusCode": 200}
        try:
            result = await self.invoker.invoke(fn.name, event, route_key)
        except Exception:
            return {"statusCode": 500}
        return result if isinstance(result, dict) else {"statusCode": 200}

    async def drop_connections(self, code: int, reason: str) -> int:
        """Close every connection (each then gets its $disconnect); how many there were."""
        conns = list(self.connections.values())
        await asyncio.gather(*(c.ws.close(code=code, message=reason.encode()) for c in conns))
        return len(conns)

    async def reap_expired(self) -> None:
        """Close connections past the idle timeout or the maximum duration, until cancelled."""
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            now = time.monotonic()
            for conn in list(self.connections.values()):
                age_s = time.time() - conn.connected_at_ms / 1000
                if now - conn.last_active > self.idle_timeout_s or age_s > self.max_duration_s:
                    await conn.ws.close(code=1001, message=b"Going away")

    # --- frames ------------------------------------------------------------------------------------

    def _select_route(self, body: str) -> str:
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError, RecursionError):  # RecursionError: nested too deep
            return "$default"
        return action if isinstance(action, str) and action in self.routes else "$default"

    async def _on_frame(self, conn: Connection, body: str) -> None:
        route_key = self._select_route(body)
        fn = self.routes.get(route_key)
        if fn is None:
            return
        context = self._request_context(conn, route_key, "MESSAGE")
        context["messageId"] = new_id()
        context["authorizer"] = conn.authorizer
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        await route_overhead(self.timing)
        try:
            result = await self.invoker.invoke(fn.name, event, route_key)
        except Exception:
            await self.send(conn, _integration_failed(conn, context))
            return
        if fn.two_way and isinstance(result, dict) and result.get("body") is not None:
            answer = str(result["body"])
            if len(answer.encode()) > MAX_MESSAGE_BYTES:  # API Gateway cannot carry it either
                log.warning("route %s answered %d bytes; dropped", route_key, len(answer.encode()))
                answer = _integration_failed(conn, context)
            await self.send(conn, answer)

    async def send(self, conn: Connection, data: str) -> bool:
        """Write a frame to the connection; False when it is closed or the write failed."""
        if conn.ws.closed:
            return False
        async with conn.send_lock:
            try:
                await conn.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                return False
        self.tap.wrote(conn.connection_id, data)
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _allows(policy: Any) -> bool:
    if not isinstance(policy, dict):
        return False
    statements = (policy.get("policyDocument") or {}).get("Statement") or []
    effects = {s.get("Effect") for s in statements}
    return "Allow" in effects and "Deny" not in effects


def _integration_failed(conn: Connection, context: dict[str, Any]) -> str:
    """What API Gateway sends the caller when the route's integration fails."""
    return json.dumps(
        {
            "message": "Internal server error",
            "connectionId": conn.connection_id,
            "requestId": context["requestId"],
        }
    )
