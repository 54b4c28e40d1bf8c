"""An API Gateway WebSocket API on one port: the WebSocket endpoint and the @connections
management API, as on AWS.

- $connect runs the REQUEST authorizer (token from the query string), then the $connect route;
  a Deny is an HTTP 403 (an authorizer that fails, 401) and no connection exists.
- Route selection on `$request.body.action`; a frame that is not JSON, or whose action no route
  serves, goes to `$default`. Events are shaped like API Gateway's (they parse with powertools'
  WebSocket event models) and carry the authorizer context on every route.
- Two-way routes: the handler's `body` is sent back on the connection.
- API Gateway's size rules (local_stack/frame_limits.py): a client frame over 32 KiB or a message
  over 128 KiB closes the connection with 1009; a post over 128 KiB is refused with 413, and a
  route answer over it is dropped with API Gateway's error message.
- Idle (10 min) and maximum (2 h) connection durations are enforced (shortenable for tests).
- For the benchmark, the time each MESSAGE frame of a tracked chat is written to a connection is
  kept (`FrameTap`): delivery timed where the server hands the frame over, not by the clients.
- With the aws timing profile, API Gateway's own overhead (local_stack/timing.py ROUTE_OVERHEAD)
  is waited before a MESSAGE frame's route is invoked, and once before the $connect authorizer.
- The HTTP fallback's HTTP API (PROTOCOL.md v1.1 "HTTP fallback") on the same port:
  `POST /v1/<action>` for the actions `wiring.http_routes()` serves (another path: 404). The
  bearer token is verified as API Gateway's JWT authorizer would (here HS256 with CHAT_JWT_SECRET,
  the local authorizer's own verification; 401 without a valid one), a body over the HTTP API's
  10 MB is a 413, and the function gets a payload format 2.0 event with the token's claims in
  `requestContext.authorizer.jwt.claims`; its response is the HTTP answer. The stage's throttle
  (wiring.HTTP_STAGE_THROTTLE, what the CDK stack deploys) answers 429 first, as API Gateway does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from chat_backend import wiring
from chat_backend.errors import Unauthorized
from chat_backend.logic.auth import TokenVerifier
from local_stack.faults import Faults
from local_stack.frame_limits import MAX_MESSAGE_BYTES, ApiGatewaySocket
from local_stack.invoker import Invoker
from local_stack.stage_throttle import StageThrottle
from local_stack.timing import TimingProfile, fast_profile

log = logging.getLogger("local_stack.gateway")

API_ID = "local"
STAGE = "local"
ACCOUNT = "000000000000"
# Above the 128 KiB limit, so an over-size post is read and refused with API Gateway's 413.
HTTP_MAX_BYTES = 4 * MAX_MESSAGE_BYTES


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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _request_time() -> str:
    return datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _new_id() -> str:
    # API Gateway's connection ids look like "L0SM9cOFvHcCIhw=".
    return base64.b64encode(secrets.token_bytes(10)).decode().replace("/", "_").replace("+", "-")


class FrameTap:
    """When MESSAGE frames of the tracked chats were first written to each connection:
    chatId -> seq -> connectionId -> epoch s (a repeated push of the same frame is not counted)."""

    def __init__(self) -> None:
        self.chats: set[str] = set()
        self.everything = False
        self.writes: dict[str, dict[int, dict[str, float]]] = {}

    def track(self, chat_ids: list[str] | None) -> None:
        """These chats (None: every chat) from now on; forgets what was kept."""
        self.everything = chat_ids is None
        self.chats = set(chat_ids or [])
        self.writes = {}

    def wrote(self, connection_id: str, data: str) -> None:
        if not (self.everything or self.chats) or not data.startswith('{"type":"MESSAGE"'):
            return
        at = time.time()
        frame = json.loads(data)
        if self.everything or frame["chatId"] in self.chats:
            self.writes.setdefault(frame["chatId"], {}).setdefault(frame["seq"], {}).setdefault(
                connection_id, at
            )


class Gateway:
    def __init__(
        self,
        invoker: Invoker,
        idle_timeout_s: float = 600.0,
        max_duration_s: float = 7200.0,
        host: str = "127.0.0.1",
        timing: TimingProfile | None = None,
        faults: Faults | None = None,
        jwt_secret: str | None = None,
        http_throttle: wiring.Rate = wiring.HTTP_STAGE_THROTTLE,
    ) -> None:
        self.invoker = invoker
        self._jwt_secret = jwt_secret  # None: the functions' CHAT_JWT_SECRET, read at the first request
        self._verifier: TokenVerifier | None = None
        self.http_routes = wiring.http_routes()
        self.http_throttle = StageThrottle(http_throttle)
        self.faults = faults or Faults()
        self.timing = timing or fast_profile()
        self.idle_timeout_s = idle_timeout_s
        self.max_duration_s = max_duration_s
        self.host = host
        self.routes = wiring.routes()
        self.authorizer = wiring.authorizer_function()
        self.connections: dict[str, Connection] = {}
        self.tap = FrameTap()
        self.extra_routes: list[web.RouteDef] = []
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, port: int) -> None:
        # The HTTP API's bodies (up to 10 MB) are read here too; a post to a connection is refused
        # past 128 KiB by post_to_connection itself.
        app = web.Application(client_max_size=max(HTTP_MAX_BYTES, wiring.HTTP_MAX_BODY_BYTES + 1))
        app.add_routes(
            [
                web.get("/", self.websocket),
                web.post("/@connections/{connection_id}", self.post_to_connection),
                web.get("/@connections/{connection_id}", self.get_connection),
                web.delete("/@connections/{connection_id}", self.delete_connection),
                web.post("/v1/{action}", self.http_request),
                *self.extra_routes,
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # SO_REUSEADDR: a restart binds at once, past the TIME_WAIT of the last run's connections.
        await web.TCPSite(self._runner, self.host, port, reuse_address=True).start()
        self._reaper = asyncio.create_task(self._reap_expired())

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        await self.drop_connections(1001, "Going away")
        if self._runner:
            await self._runner.cleanup()

    async def drop_connections(self, code: int, reason: str) -> int:
        """Close every connection (each then gets its $disconnect); how many there were."""
        conns = list(self.connections.values())
        await asyncio.gather(*(c.ws.close(code=code, message=reason.encode()) for c in conns))
        return len(conns)

    # --- events ----------------------------------------------------------------------------------

    def _request_context(self, conn: Connection, route_key: str, event_type: str) -> dict[str, Any]:
        request_id = _new_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": conn.connected_at_ms,
            "requestTimeEpoch": _now_ms(),
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

    # --- the WebSocket endpoint ------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Forbidden"}, status=403)
        conn = Connection(
            connection_id=_new_id(),
            ws=ApiGatewaySocket(autoping=True),
            authorizer={},
            connected_at_ms=_now_ms(),
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        await self._route_overhead()
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
        context["messageId"] = _new_id()
        context["authorizer"] = conn.authorizer
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        await self._route_overhead()
        try:
            result = await self.invoker.invoke(fn.name, event, route_key)
        except Exception:
            await self._send(conn, _integration_failed(conn, context))
            return
        if fn.two_way and isinstance(result, dict) and result.get("body") is not None:
            answer = str(result["body"])
            if len(answer.encode()) > MAX_MESSAGE_BYTES:  # API Gateway cannot carry it either
                log.warning("route %s answered %d bytes; dropped", route_key, len(answer.encode()))
                answer = _integration_failed(conn, context)
            await self._send(conn, answer)

    async def _route_overhead(self) -> None:
        """API Gateway's own time between a client's frame and the route's invocation (aws timing)."""
        if (overhead_s := self.timing.route_overhead_s()) > 0:
            await asyncio.sleep(overhead_s)

    async def _send(self, conn: Connection, data: str) -> bool:
        if conn.ws.closed:
            return False
        async with conn.send_lock:
            try:
                await conn.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                return False
        self.tap.wrote(conn.connection_id, data)
        return True

    # --- the @connections management API --------------------------------------------------------

    async def post_to_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        data = await request.read()
        if len(data) > MAX_MESSAGE_BYTES:
            return _payload_too_large()
        if conn is not None:
            fault = self.faults.post_fault(conn.authorizer.get("userId"), conn.authorizer.get("deviceId"))
            if fault == "drop":
                return web.Response(status=200)  # accepted, and lost on the way to the client
            if fault is not None:
                return _refused(int(fault))
        if conn is None or not await self._send(conn, data.decode(errors="replace")):
            return _gone()
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None:
            return _gone()
        connected = datetime.fromtimestamp(conn.connected_at_ms / 1000, UTC).isoformat()
        return web.json_response(
            {
                "ConnectedAt": connected,
                "Identity": {"SourceIp": conn.source_ip, "UserAgent": conn.user_agent},
                "LastActiveAt": connected,
            }
        )

    async def delete_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None:
            return _gone()
        await conn.ws.close(code=1000, message=b"Closed by the server")
        return web.Response(status=204)

    # --- the HTTP API (the HTTP fallback) -----------------------------------------------------------

    async def http_request(self, request: web.Request) -> web.Response:
        fn = self.http_routes.get(request.match_info["action"])
        if fn is None:
            return web.json_response({"message": "Not Found"}, status=404)
        if not self.http_throttle.admit():  # the stage's throttle, before anything runs
            return web.json_response({"message": "Too Many Requests"}, status=429)
        if (request.content_length or 0) > wiring.HTTP_MAX_BODY_BYTES:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        try:
            claims = self._jwt_claims(request.headers.get("Authorization", ""))
        except Unauthorized:
            return web.json_response(
                {"message": "Unauthorized"},
                status=401,
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
            )
        body = await request.read()
        if len(body) > wiring.HTTP_MAX_BODY_BYTES:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        event = self._http_event(request, body, claims)
        await self._route_overhead()
        try:
            result = await self.invoker.invoke(fn.name, event, event["routeKey"])
        except Exception:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if not isinstance(result, dict):
            return web.json_response({"message": "Internal Server Error"}, status=500)
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        answer = result.get("body")
        data = (
            base64.b64decode(str(answer or ""))
            if result.get("isBase64Encoded")
            else str(answer or "").encode()
        )
        return web.Response(status=int(result.get("statusCode", 200)), body=data, headers=headers)

    def _jwt_claims(self, authorization: str) -> dict[str, Any]:
        """The bearer token's claims, as API Gateway's JWT authorizer passes them (strings)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("no bearer token")
        if self._verifier is None:
            secret = self._jwt_secret or os.environ.get(wiring.JWT_SECRET_ENV, "local-dev-secret")
            self._verifier = TokenVerifier(secret=secret)
        claims = self._verifier.claims(token.strip())
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()}

    def _http_event(self, request: web.Request, body: bytes, claims: dict[str, Any]) -> dict[str, Any]:
        """A payload format 2.0 event, as the HTTP API's Lambda proxy integration sends it."""
        route_key = f"POST /v1/{request.match_info['action']}"
        try:
            text, encoded = body.decode(), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        now = datetime.now(UTC)
        return {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": API_ID,
                "authorizer": {"jwt": {"claims": claims, "scopes": None}},
                "domainName": self.host,
                "domainPrefix": self.host.split(".")[0],
                "http": {
                    "method": "POST",
                    "path": request.path,
                    "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                    "sourceIp": request.remote or "127.0.0.1",
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": _new_id(),
                "routeKey": route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "body": text,
            "isBase64Encoded": encoded,
        }

    # --- timeouts --------------------------------------------------------------------------------

    async def _reap_expired(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            now = time.monotonic()
            for conn in list(self.connections.values()):
                age_s = time.time() - conn.connected_at_ms / 1000
                if now - conn.last_active > self.idle_timeout_s or age_s > self.max_duration_s:
                    await conn.ws.close(code=1001, message=b"Going away")

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


def _refused(status: int) -> web.Response:
    """What @connections answers when it is throttled (429) or fails (500)."""
    error = "LimitExceededException" if status == 429 else "InternalServerErrorException"
    return web.json_response({"message": error}, status=status, headers={"x-amzn-ErrorType": error})


def _gone() -> web.Response:
    return web.json_response({"message": "Gone"}, status=410, headers={"x-amzn-ErrorType": "GoneException"})


def _payload_too_large() -> web.Response:
    """What @connections answers to a post over 128 KiB."""
    error = "PayloadTooLargeException"
    return web.json_response({"message": error}, status=413, headers={"x-amzn-ErrorType": error})


def _integration_failed(conn: Connection, context: dict[str, Any]) -> str:
    """What API Gateway sends the caller when the route's integration fails."""
    return json.dumps(
        {
            "message": "Internal server error",
            "connectionId": conn.connection_id,
            "requestId": context["requestId"],
        }
    )
