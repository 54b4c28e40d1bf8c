"""ChatClient: one device's session with the server, with reconnect, idempotent sends and
in-order delivery (docs/PROTOCOL.md).

Guarantees to the application: every message of every chat is put on ``messages`` exactly once,
in seq order per chat, with no gaps; every ``send`` is retried with the same clientMsgId until
the server ACKs it, across reconnects. ERROR frames no call waits for land on ``errors``, other
frames no call waits for (RECEIPT, PRESENCE, TYPING...) on ``unmatched``.

The client is composed of one part per job, each mixed in here:

- chat_client/connection.py: the WebSocket (or HTTP fallback) link, heartbeat and reconnect;
- chat_client/sync.py: in-order delivery, gaps filled by sync;
- chat_client/sending.py: sends until ACKed, requests matched to their replies;
- chat_client/receipts.py: the automatic DELIVERED watermark, READ;
- chat_client/presence.py: presence subscriptions;
- chat_client/to_device.py: the per-device channel (key material).

This module holds the options, the lifecycle, the routing of inbound frames to the parts, and the
requests of the protocol's actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from websockets.exceptions import WebSocketException

from chat_client.connection import Connection
from chat_client.models import ChatClosedError, Message
from chat_client.presence import Presence
from chat_client.receipts import Receipts
from chat_client.sending import Sending
from chat_client.sync import ChatSync
from chat_client.to_device import ToDeviceChannel
from chat_client.util import Backoff

logger = logging.getLogger("chat_client")


class ChatClient(Connection, ChatSync, Sending, Receipts, Presence, ToDeviceChannel):
    def __init__(
        self,
        url: str,
        token: str | Callable[[], str],
        *,
        heartbeat_interval: float = 50.0,
        ack_timeout: float = 5.0,
        reconnect_min: float = 0.2,
        reconnect_max: float = 10.0,
        sync_limit: int = 500,
        cursors: dict[str, int] | None = None,
        sync_timeout: float = 30.0,
        gap_sync_delay: float = 0.05,
        own_messages: bool = False,
        open_timeout: float = 10.0,
        auto_delivered: bool = True,
        delivered_delay: float = 0.2,
        device: str | None = None,
        http_url: str | None = None,
        http_fallback: bool = True,
        websocket_attempts: int = 2,
        websocket_retry_s: float = 30.0,
        http_poll_min: float = 1.0,
        http_poll_max: float = 30.0,
    ) -> None:
        """``token``: a JWT, or a function returning the current one (called at every connect).
        ``device``: sent as the ``device`` query parameter, which the server uses when the token
        names no device (Cognito ID tokens; local-stack tokens have one). ``cursors``: each chat's
        last seq the application already has (from a previous session)."""
        # The connection (connection.py).
        self.url = url
        self._token = token
        self.device = device
        self.heartbeat_interval = heartbeat_interval
        self.open_timeout = open_timeout
        self.reconnect_delays = Backoff(reconnect_min, reconnect_max)
        self.http_url = http_url
        self.http_fallback = http_fallback
        self.websocket_attempts = max(1, websocket_attempts)
        self.websocket_retry_s = websocket_retry_s
        self.http_poll_delays = Backoff(http_poll_min, http_poll_max)
        # In-order delivery (sync.py), sends (sending.py), receipts (receipts.py).
        self.sync_limit = sync_limit
        self.sync_timeout = sync_timeout
        self.gap_sync_delay = gap_sync_delay
        self.own_messages = own_messages
        self.ack_timeout = ack_timeout
        self.auto_delivered = auto_delivered
        self.delivered_delay = delivered_delay

        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._init_connection()
        self._init_sync(cursors)
        self._init_sending()
        self._init_receipts()
        self._init_presence()
        self._init_to_device()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and run a full sync; returns once that sync is done.

        Raises ChatAuthError if the handshake is refused, or the connect/sync error otherwise.
        """
        if self._started:
            raise RuntimeError("ChatClient.connect() may be called once")
        await self._open_and_sync()
        self._started = True
        self._supervisor = asyncio.create_task(self._supervise(), name="chat-supervisor")
        self._gap_worker = asyncio.create_task(self._gap_sync_loop(), name="chat-gap-sync")
        if self.auto_delivered:
            self._delivered_worker = asyncio.create_task(self._delivered_loop(), name="chat-delivered")

    async def close(self) -> None:
        """Stop everything: no reconnect; pending sends and requests raise ChatClosedError."""
        already = self._closed and self._ws is None and self._supervisor is None
        self._closed = True
        if already:
            return
        current = asyncio.current_task()
        tasks = [
            t
            for t in (self._supervisor, self._gap_worker, self._delivered_worker, self._heartbeat)
            if t is not None and t is not current
        ]
        for task in tasks:
            task.cancel()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()
        if self._reader is not None and self._reader is not current:
            tasks.append(self._reader)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = self._gap_worker = self._delivered_worker = None
        self._heartbeat = self._reader = None
        self.connected.clear()
        self._fail_all(self._terminal or ChatClosedError("client closed"))
        self._notify_state()

    # ------------------------------------------------------------------ inbound frames

    def _dispatch(self, text: str) -> None:
        """Hand one frame from the server to the part that handles it."""
        try:
            frame = json.loads(text)
        except ValueError:
            logger.warning("dropping a non-JSON frame: %.200s", text)
            return
        if not isinstance(frame, dict):
            logger.warning("dropping a non-object frame: %.200s", text)
            return
        kind = frame.get("type")
        if kind == "MESSAGE":
            self._on_message_frame(frame)
        elif kind == "ACK":
            self._on_ack(frame)
        elif kind == "VOID":
            self._on_void_frame(frame)
        elif kind == "PONG":
            self._on_pong(frame)
        elif kind == "TO_DEVICE":
            self._on_to_device(frame)
        elif kind == "DEVICES_CHANGED":
            self.device_changes.put_nowait(frame)
        elif kind == "ERROR":
            self._on_error(frame)
        elif not self._on_reply(frame):
            self.unmatched.put_nowait(frame)

    # ------------------------------------------------------------------ the protocol's requests

    async def create_chat(self, kind: str, members: Sequence[str], name: str | None = None) -> dict[str, Any]:
        """createChat; returns the CHAT frame (chatId, kind, name, createdAt, memberCount, role)."""
        frame: dict[str, Any] = {"action": "createChat", "kind": kind, "members": list(members)}
        if name is not None:
            frame["name"] = name
        return await self.request(frame)

    async def add_members(self, chat_id: str, members: Sequence[str]) -> dict[str, Any]:
        return await self.request({"action": "addMembers", "chatId": chat_id, "members": list(members)})

    async def remove_members(self, chat_id: str, members: Sequence[str]) -> dict[str, Any]:
        return await self.request({"action": "removeMembers", "chatId": chat_id, "members": list(members)})

    async def get_members(self, chat_id: str, cursor: str | None = None) -> dict[str, Any]:
        return await self.request({"action": "getMembers", "chatId": chat_id, "cursor": cursor})

    async def publish_keys(
        self,
        identity_key: str,
        signed_pre_key: dict[str, Any],
        one_time_pre_keys: Sequence[dict[str, Any]] = (),
        timeout: float = 10.0,
        signing_key: str | None = None,
    ) -> dict[str, Any]:
        """publishKeys for this device (public keys, base64); returns the KEYS_PUBLISHED frame
        (``oneTimePreKeys``: how many unused one-time prekeys the device now has). The frame has no
        requestId, so its answer is taken from ``unmatched`` (an ERROR lands on ``errors``)."""
        frame = {
            "action": "publishKeys",
            "identityKey": identity_key,
            "signedPreKey": signed_pre_key,
            "oneTimePreKeys": list(one_time_pre_keys),
        }
        if signing_key is not None:
            frame["signingKey"] = signing_key
        await self.send_frame(frame, timeout)
        return await self.next_frame("KEYS_PUBLISHED", timeout)

    async def fetch_keys(self, user_id: str) -> dict[str, Any]:
        """fetchKeys; returns the KEYS frame: every device of the user with one one-time prekey
        each (null when it has none left, or none for us: the client then uses the signed prekey)."""
        return await self.request({"action": "fetchKeys", "userId": user_id})

    async def register_push(self, platform: str, token: str) -> dict[str, Any]:
        """Notify this device (platform "apns", "apns_sandbox" or "fcm"; the token from the OS)
        when a message comes while none of the user's devices is connected: the chat id and a
        count, never content. Answers OK."""
        return await self.request({"action": "registerPush", "platform": platform, "token": token})

    async def unregister_push(self) -> dict[str, Any]:
        return await self.request({"action": "unregisterPush"})

    async def block(self, user_id: str) -> dict[str, Any]:
        """Block a user: nothing of theirs reaches us any more (PROTOCOL.md v1.1); answers OK."""
        return await self.request({"action": "block", "userId": user_id})

    async def unblock(self, user_id: str) -> dict[str, Any]:
        return await self.request({"action": "unblock", "userId": user_id})

    async def set_privacy(self, group_add: str) -> dict[str, Any]:
        """Who may add us to groups: "everyone", "chatted" (users we share a direct chat with) or
        "nobody"; answers OK."""
        return await self.request({"action": "setPrivacy", "groupAdd": group_add})

    # ------------------------------------------------------------------ what arrived

    async def next_message(self, timeout: float = 5.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_frame(self, frame_type: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame on ``unmatched`` (of ``frame_type`` if given; others are put back)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                frame = await asyncio.wait_for(self.unmatched.get(), max(end - loop.time(), 0.0))
                if frame_type is None or frame.get("type") == frame_type:
                    return frame
                skipped.append(frame)
        finally:
            for frame in skipped:
                self.unmatched.put_nowait(frame)
