"""The local API Gateway on one port, as on AWS: the WebSocket API's endpoint
(websocket_api.py) and its @connections management API (connections_api.py), the HTTP
fallback's HTTP API (http_api.py), and the stack's own `/_local/...` routes (`extra_routes`).
This module puts them on one aiohttp server and runs their lifecycle."""

from __future__ import annotations

import asyncio

from aiohttp import web

from chat_backend import wiring
from local_stack.connections_api import ConnectionsApi
from local_stack.faults import Faults
from local_stack.frame_limits import MAX_MESSAGE_BYTES
from local_stack.frame_tap import FrameTap
from local_stack.http_api import HttpApi
from local_stack.invoker import Invoker
from local_stack.timing import TimingProfile, fast_profile
from local_stack.websocket_api import WebSocketApi

# Above the 128 KiB limit, so an over-size post is read and refused with API Gateway's 413.
HTTP_MAX_BYTES = 4 * MAX_MESSAGE_BYTES


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
        self.host = host
        self.timing = timing or fast_profile()
        self.faults = faults or Faults()
        self.tap = FrameTap()
        self.websocket_api = WebSocketApi(
            invoker, host, self.timing, self.tap, idle_timeout_s, max_duration_s
        )
        self.connections = self.websocket_api.connections
        self.connections_api = ConnectionsApi(self.connections, self.websocket_api.send, self.faults)
        self.http_api = HttpApi(invoker, host, self.timing, jwt_secret, http_throttle)
        self.extra_routes: list[web.RouteDef] = []
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, port: int) -> None:
        # The HTTP API's bodies (up to 10 MB) are read here too; a post to a connection is refused
        # past 128 KiB by post_to_connection itself.
        app = web.Application(client_max_size=max(HTTP_MAX_BYTES, wiring.HTTP_MAX_BODY_BYTES + 1))
        app.add_routes(
            [
                web.get("/", self.websocket_api.websocket),
                *self.connections_api.routes(),
                web.post("/v1/{action}", self.http_api.request),
                *self.extra_routes,
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # SO_REUSEADDR: a restart binds at once, past the TIME_WAIT of the last run's connections.
        await web.TCPSite(self._runner, self.host, port, reuse_address=True).start()
        self._reaper = asyncio.create_task(self.websocket_api.reap_expired())

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        await self.drop_connections(1001, "Going away")
        if self._runner:
            await self._runner.cleanup()

    async def drop_connections(self, code: int, reason: str) -> int:
        """Close every connection (each then gets its $disconnect); how many there were."""
        return await self.websocket_api.drop_connections(code, reason)
