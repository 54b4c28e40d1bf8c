"""ChatClient's connection: one live link to the server at a time, reopened after every loss.

The link is a WebSocket, opened with the token (and the ``device`` query parameter when the token
names no device: Cognito ID tokens), then synced before the client counts as connected. A reader
task hands every frame to the client; a heartbeat task keeps the connection (and presence) alive.
When the link drops, the supervisor reconnects with jittered backoff and syncs again; a refused
handshake (401/403) ends the client for good (ChatAuthError).

HTTP fallback (PROTOCOL.md v1.1): when the WebSocket cannot be opened for a network reason
``websocket_attempts`` times in a row, the link is an ``HttpLink`` to ``http_url`` (default: the
WebSocket URL's http(s) twin; on AWS the stack's HttpUrl output): sends, requests and syncs are
POSTed, their answers' frames handled exactly as pushed ones, ``sync`` is polled
(chat_client/http_transport.py), and the WebSocket is tried again every ``websocket_retry_s``
until it opens. ``transport`` tells which is in use; ``http_fallback=False`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from chat_client.http_transport import HttpLink, http_twin
from chat_client.models import ChatAuthError, ChatClosedError, ChatConnectionError, ChatServerError
from chat_client.tokens import token_identity
from chat_client.util import Backoff, build_url
from chat_client.wire import MAX_MESSAGE_BYTES, send_text

logger = logging.getLogger("chat_client")

DEFAULT_DEVICE = "default"  # the server's device id for a token with no device claim or parameter
# The connection frames go over: a WebSocket, or the HTTP fallback's stand-in for one.
Link = ClientConnection | HttpLink


class Connection:
    """Mixed into ChatClient, which sets the options below; it provides the frame handling
    (``_dispatch``), ``_sync``, the presence subscriptions and the pending sends and requests."""

    url: str
    http_url: str | None
    http_fallback: bool
    websocket_attempts: int
    websocket_retry_s: float
    http_poll_delays: Backoff
    device: str | None
    heartbeat_interval: float
    open_timeout: float
    reconnect_delays: Backoff
    _token: str | Callable[[], str]

    def _init_connection(self) -> None:
        # "websocket" or "http": what the current (or last) connection goes over.
        self.transport = "websocket"
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.user_id: str | None = None
        self.device_id: str | None = None
        self._ws: Link | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._terminal: BaseException | None = None  # what ended the client for good
        self._state_waiters: set[asyncio.Future[None]] = set()

    async def drop_connection(self) -> None:
        """Test hook: abort the transport (no close handshake), as a network failure would.

        Returns once the client has noticed; the reconnect then runs in the background.
        """
        ws, reader = self._ws, self._reader
        if ws is None:
            return
        ws.transport.abort()
        if reader is not None:
            await asyncio.wait([reader])

    # ------------------------------------------------------------------ opening

    def _current_token(self) -> str:
        return self._token() if callable(self._token) else self._token

    async def _open(self) -> Link:
        """The WebSocket; after ``websocket_attempts`` network failures in a row, the HTTP link."""
        failures = 0
        while True:
            try:
                ws = await self._open_websocket()
            except (OSError, TimeoutError, WebSocketException) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code == 429:
                    raise  # throttled: the WebSocket is reachable; the reconnect backs off
                failures += 1
                if not self.http_fallback:
                    raise
                if failures < self.websocket_attempts:
                    await asyncio.sleep(self.reconnect_delays.jittered(failures - 1))
                    continue
                logger.warning("the WebSocket cannot be opened (%r); falling back to HTTP", exc)
                self.transport = "http"
                return HttpLink(
                    self.http_url or http_twin(self.url),
                    self._current_token,
                    self.device,
                    self._dispatch,
                    poll=lambda: self._sync(None),
                    probe=self._probe_websocket,
                    poll_delays=self.http_poll_delays,
                    websocket_retry_s=self.websocket_retry_s,
                )
            self.transport = "websocket"
            return ws

    async def _probe_websocket(self) -> bool:
        """Whether a WebSocket opens now (it is closed again at once: the reconnect opens its own)."""
        try:
            ws = await self._open_websocket()
        except ChatAuthError:
            return True  # reachable: the reconnect meets the refusal and reports it
        except (OSError, TimeoutError, WebSocketException):
            return False
        with contextlib.suppress(WebSocketException, OSError):
            await ws.close()
        return True

    async def _open_websocket(self) -> ClientConnection:
        token = self._current_token()
        self.user_id, claimed_device = token_identity(token)
        # The server's rule: the token's claim, else the `device` parameter, else "default".
        self.device_id = claimed_device or ((self.device or DEFAULT_DEVICE) if self.user_id else None)
        try:
            return await ws_connect(
                build_url(self.url, token, self.device),
                max_size=MAX_MESSAGE_BYTES,  # no server frame is larger (PROTOCOL.md v1.1)
                open_timeout=self.open_timeout,
                close_timeout=2.0,
                compression=None,  # API Gateway does not negotiate permessage-deflate
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                body = (
                    exc.response.body.decode("utf-8", errors="replace").strip() if exc.response.body else ""
                )
                raise ChatAuthError(status, body) from exc
            raise

    async def _open_and_sync(self) -> None:
        ws = await self._open()
        self._ws = ws
        self._reader = asyncio.create_task(self._read_loop(ws), name="chat-reader")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(ws), name="chat-heartbeat")
        try:
            await self._sync(ws)
            if self._closed or self._ws is not ws:
                raise ChatConnectionError("connection lost during the initial sync")
        except BaseException:
            ws.transport.abort()
            await self._teardown_connection()
            if isinstance(ws, HttpLink) and ws.auth_error is not None:
                raise ws.auth_error from None  # the HTTP API refused the token: as a handshake would
            raise
        await self._resubscribe_presence(ws)
        self.connected.set()
        self._notify_state()
        logger.info("connected to %s (%s) as %s/%s", self.url, self.transport, self.user_id, self.device_id)

    async def _teardown_connection(self) -> None:
        reader, heartbeat = self._reader, self._heartbeat
        if heartbeat is not None:
            heartbeat.cancel()
        await asyncio.gather(*(t for t in (reader, heartbeat) if t is not None), return_exceptions=True)
        self._heartbeat = None

    # ------------------------------------------------------------------ keeping it open

    async def _supervise(self) -> None:
        while not self._closed:
            reader = self._reader
            if reader is not None:
                await asyncio.wait([reader])
            if self._closed:
                return
            await self._teardown_connection()
            await self._reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            delay = self.reconnect_delays.jittered(attempt)
            attempt += 1
            logger.info("reconnecting in %.2fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                await self._open_and_sync()
            except ChatAuthError as exc:
                logger.error("reconnect refused, giving up: %s", exc)
                self._closed = True
                self._terminal = exc
                self._fail_all(exc)
                self._notify_state()
                return
            except (OSError, TimeoutError, WebSocketException, ChatConnectionError, ChatServerError) as exc:
                logger.warning("reconnect attempt %d failed: %r", attempt, exc)
                continue
            self.reconnects += 1
            return

    async def _heartbeat_loop(self, ws: Link) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat_interval)
                await send_text(ws, '{"action":"heartbeat"}')

    async def _read_loop(self, ws: Link) -> None:
        try:
            async for data in ws:
                text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
                self._dispatch(text)
        except ConnectionClosed as exc:
            logger.info("connection closed: %s", exc)
        except Exception:
            # A bug while handling a frame must not leave a half-dead connection: drop it and let the
            # reconnect + sync path restore a consistent state.
            logger.exception("reader failed; dropping the connection")
            ws.transport.abort()
        finally:
            self._on_disconnect(ws)

    def _on_disconnect(self, ws: Link) -> None:
        if self._ws is ws:
            self._ws = None
        self.connected.clear()
        self._connection_lost()
        self._notify_state()

    # ------------------------------------------------------------------ waiting for it

    async def _wait_connected(self, end: float | None) -> Link:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise self._terminal or ChatClosedError("client closed")
            if self.connected.is_set() and self._ws is not None:
                return self._ws
            waiter: asyncio.Future[None] = loop.create_future()
            self._state_waiters.add(waiter)
            try:
                timeout = None if end is None else max(end - loop.time(), 0.0)
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise TimeoutError("not connected") from None
            finally:
                self._state_waiters.discard(waiter)

    def _notify_state(self) -> None:
        for waiter in self._state_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _check_usable(self) -> None:
        if self._terminal is not None:
            raise self._terminal
        if self._closed:
            raise ChatClosedError("client closed")
        if not self._started and self._ws is None:
            raise ChatClosedError("not connected: call connect() first")

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        def _dispatch(self, text: str) -> None: ...

        async def _sync(self, ws: Link | None) -> dict[str, int]: ...

        async def _resubscribe_presence(self, ws: Link) -> None: ...

        def _connection_lost(self) -> None: ...

        def _fail_all(self, exc: BaseException) -> None: ...
