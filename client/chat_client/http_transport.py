"""The HTTP fallback (PROTOCOL.md v1.1 "HTTP fallback"): a stand-in for the WebSocket connection
when the network lets no WebSocket through.

``HttpLink`` looks to ChatClient like its WebSocket connection: ``send(text)`` takes a client frame,
POSTs it to ``<http base>/v1/<action>`` with the token as a bearer token, and hands every frame of
the answer's ``{"frames": [...]}`` to the client's ``_dispatch``, in order, before it returns; so
ACK matching, request replies, ordering, dedup and gap filling are the WebSocket's own. Iterating
it ends when it closes (the client's reader then sees a disconnect and reconnects).

There are no pushes over HTTP. While the link is open it polls ``sync`` (the client's own sync,
from its cursors): ``poll_delays.low`` seconds after activity (a frame sent or something delivered),
the delay doubling up to ``poll_delays.high`` while nothing happens. Short polls, not long ones: an HTTP API
route's integration times out after 30 s (and a Lambda held open waiting is billed for it).
Every ``websocket_retry_s`` it tries the WebSocket (``probe``); once one opens it closes itself,
and the client's reconnect opens the WebSocket again.

Frames that only make sense on a live connection (heartbeat, typing, presence) are not sent.
HTTP statuses become what a WebSocket client would have seen: 401/403 close the link with
``auth_error`` set (auth errors stay errors), 429 an ERROR RATE_LIMITED (retried as such), 413 an
ERROR TOO_LARGE, 404 an ERROR BAD_REQUEST, another status an ERROR INTERNAL; a network failure
closes the link (a disconnect: the client reconnects, trying the WebSocket first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from websockets.exceptions import ConnectionClosedError

from chat_client.models import ChatAuthError
from chat_client.util import Backoff

logger = logging.getLogger("chat_client.http")

# Actions the HTTP API does not serve: they only make sense on a live connection.
WEBSOCKET_ONLY_ACTIONS = frozenset({"heartbeat", "typing", "presence"})
# Frames that tell the poll loop something is going on (poll again soon).
_ACTIVE_SENDS = frozenset({"send", "sendToDevice"})
_ACTIVE_FRAMES = frozenset({"MESSAGE", "VOID", "TO_DEVICE"})
# Poll this soon after activity, the delay doubling up to the high end while nothing happens.
DEFAULT_POLL_DELAYS = Backoff(1.0, 30.0)


def http_twin(ws_url: str) -> str:
    """The WebSocket URL's http(s) twin: ws://127.0.0.1:8080/ -> http://127.0.0.1:8080/ (what the
    local stack serves on one port). On AWS, the HTTP API has a URL of its own (the HttpUrl output)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path or "/", "", ""))


class LinkClosed(ConnectionClosedError):
    """The HTTP link is closed (or just failed): to the client, the connection was lost."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, None)
        self.why = reason

    def __str__(self) -> str:
        return f"HTTP link closed: {self.why}"


class HttpLink:
    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        device: str | None,
        on_frame: Callable[[str], None],
        *,
        poll: Callable[[], Awaitable[Any]],
        probe: Callable[[], Awaitable[bool]],
        poll_delays: Backoff = DEFAULT_POLL_DELAYS,
        websocket_retry_s: float = 30.0,
        request_timeout: float = 35.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.device = device
        self._on_frame = on_frame
        self._poll = poll
        self._probe = probe
        self.poll_delays = poll_delays
        self.websocket_retry_s = websocket_retry_s
        self.auth_error: ChatAuthError | None = None
        self.delivered = 0  # MESSAGE / VOID / TO_DEVICE frames handed over so far
        self.transport = self  # what ChatClient aborts, as on a WebSocket connection
        self._closed = asyncio.Event()
        self._kick = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout))
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # --- what ChatClient uses of a WebSocket connection -------------------------------------------

    async def send(self, message: str | list[str]) -> None:
        """POST one client frame (continuation fragments are joined: HTTP carries it whole) and hand
        the answer's frames to the client. LinkClosed when the link is (or just became) unusable."""
        text = message if isinstance(message, str) else "".join(message)
        if self.closed:
            raise LinkClosed("closed")
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        action = frame.get("action") if isinstance(frame, dict) else None
        if action in WEBSOCKET_ONLY_ACTIONS:
            logger.debug("%s is not served over HTTP; not sent", action)
            return
        if not isinstance(action, str) or not action:
            return  # no route would take it; the WebSocket's $default answers nothing useful either
        if action in _ACTIVE_SENDS:
            self._kick.set()
        for answer in await self._post(action, text, frame if isinstance(frame, dict) else {}):
            if isinstance(answer, dict) and answer.get("type") in _ACTIVE_FRAMES:
                self.delivered += 1
            self._on_frame(json.dumps(answer))

    async def close(self) -> None:
        self._finish("closed by the client")
        await self._session.close()

    def abort(self) -> None:
        self._finish("aborted")

    def __aiter__(self) -> HttpLink:
        self._start()
        return self

    async def __anext__(self) -> str:
        await self._closed.wait()
        raise StopAsyncIteration

    # --- HTTP ------------------------------------------------------------------------------------

    async def _post(self, action: str, text: str, frame: dict[str, Any]) -> list[Any]:
        headers = {"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"}
        if self.device is not None:
            headers["X-Chat-Device"] = self.device
        try:
            async with self._session.post(
                f"{self.base_url}/v1/{action}", data=text.encode(), headers=headers
            ) as resp:
                status, body = resp.status, await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: the session was closed under a request in flight
            self._finish(f"{action} failed: {exc!r}")
            raise LinkClosed(f"{action} failed: {exc!r}") from exc
        if status == 200:
            try:
                frames = json.loads(body)["frames"]
            except (ValueError, KeyError, TypeError):
                return [_error(frame, "INTERNAL", f"unreadable answer to {action}")]
            return list(frames) if isinstance(frames, list) else []
        if status in (401, 403):
            message = body.decode("utf-8", errors="replace").strip()
            self.auth_error = ChatAuthError(status, message)
            self._finish(f"HTTP {status}")
            raise LinkClosed(f"{action} refused with HTTP {status}")
        if status == 429:
            wait_ms = 1000
            with contextlib.suppress(ValueError, TypeError):
                wait_ms = max(1, int(float(retry_after or 1) * 1000))
            return [_error(frame, "RATE_LIMITED", "throttled by the HTTP API", wait_ms)]
        if status == 413:
            return [_error(frame, "TOO_LARGE", "request body over the HTTP API's limit")]
        if status == 404:
            return [_error(frame, "BAD_REQUEST", f"{action!r} is not served over HTTP")]
        return [_error(frame, "INTERNAL", f"HTTP {status}")]

    # --- polling and the way back to the WebSocket -----------------------------------------------

    def _start(self) -> None:
        if self._started or self.closed:
            return
        self._started = True
        for coro in (self._poll_loop(), self._probe_loop()):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _poll_loop(self) -> None:
        delay = self.poll_delays.low
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), delay)
            if self._kick.is_set():  # something was sent: poll soon for what follows
                self._kick.clear()
                delay = self.poll_delays.low
                await asyncio.sleep(delay)
            if self.closed:
                return
            before = self.delivered
            try:
                await self._poll()
            except Exception as exc:  # a failed poll: the link closes itself on network failures
                logger.info("poll failed: %r", exc)
            delay = self.poll_delays.low if self.delivered > before else self.poll_delays.doubled(delay)

    async def _probe_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.websocket_retry_s)
            if self.closed:
                return
            if await self._probe():
                logger.info("the WebSocket opens again; leaving the HTTP fallback")
                self._finish("the WebSocket is reachable")
                return

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        logger.info("HTTP link closing: %s", reason)
        self._closed.set()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        closing = asyncio.get_running_loop().create_task(self._session.close())
        self._tasks.add(closing)
        closing.add_done_callback(self._tasks.discard)


def _error(
    frame: dict[str, Any], code: str, message: str, retry_after_ms: int | None = None
) -> dict[str, Any]:
    """The ERROR frame a WebSocket client would have got, echoing the frame's ids."""
    error: dict[str, Any] = {
        "type": "ERROR",
        "code": code,
        "message": message,
        "requestId": frame.get("requestId") if isinstance(frame.get("requestId"), str) else None,
        "clientMsgId": frame.get("clientMsgId") if isinstance(frame.get("clientMsgId"), str) else None,
    }
    if retry_after_ms is not None:
        error["retryAfterMs"] = retry_after_ms
    return error
