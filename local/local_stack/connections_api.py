"""The @connections management API of the local WebSocket API (PostToConnection, GetConnection,
DeleteConnection), with API Gateway's answers: 410 for a gone connection, 413 for a post over
128 KiB, and the injected post faults (faults.py: 500 / 429, or accepted and lost)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from local_stack.faults import Faults
from local_stack.frame_limits import MAX_MESSAGE_BYTES
from local_stack.websocket_api import Connection

Send = Callable[[Connection, str], Awaitable[bool]]


class ConnectionsApi:
    def __init__(self, connections: dict[str, Connection], send: Send, faults: Faults) -> None:
        self.connections = connections  # the WebSocket endpoint's, by connection id
        self.send = send
        self.faults = faults

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/@connections/{connection_id}", self.post_to_connection),
            web.get("/@connections/{connection_id}", self.get_connection),
            web.delete("/@connections/{connection_id}", self.delete_connection),
        ]

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
        if conn is None or not await self.send(conn, data.decode(errors="replace")):
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
