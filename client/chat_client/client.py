"""ChatClient: one device's WebSocket session with reconnect, idempotent sends and in-order delivery.

Guarantees to the application (PROTOCOL.md): every message of every chat is put on ``messages``
exactly once, in seq order per chat, with no gaps (holes are filled with ``sync``, never skipped);
every ``send`` is retried with the same clientMsgId until the server ACKs it, across reconnects.

Messages sent by this very device (same user and device as the token) only advance the cursor and
are not put on ``messages`` (the server does not push them back to the sending device either; the
application has them already). Pass ``own_messages=True`` to receive them as well.

The device is the token's ``device`` claim (local-stack tokens have one). Cognito ID tokens have
none: pass ``device="..."`` and the client sends it as the ``device`` query parameter, which the
server uses when the token names no device (without either, the device is "default").

Seqs the server reports as VOID (a writer died before storing its message) take their place in
the order and are never shown. A connected client also learns of chats whose head moved from the
PONG of each heartbeat, and syncs those it is behind in: a push lost on the way is recovered within
one ``heartbeat_interval`` without reconnecting. A chat the user was removed from is dropped at
its removal message (nothing after it will come).

Receipts: once messages from other users are released to the application, the client tells the
server it holds them with a DELIVERED watermark (``upToSeq``), at most one frame per chat per
``delivered_delay`` seconds however many messages arrived (``auto_delivered=False`` turns this off).
``mark_read(chat_id, seq)`` sends the READ watermark. RECEIPT and RECEIPT_SUMMARY frames from the
server land on ``unmatched``.

HTTP fallback (PROTOCOL.md v1.1): when the WebSocket cannot be opened for a network reason (a 401
or 403 stays a ChatAuthError) ``websocket_attempts`` times in a row, the client goes over HTTP to
``http_url`` (default: the WebSocket URL's http(s) twin; on AWS the stack's HttpUrl output): sends,
requests and syncs are POSTed, their answers' frames handled exactly as pushed ones, ``sync`` is
polled (chat_client/http_transport.py), and the WebSocket is tried again every ``websocket_retry_s``
until it opens. ``transport`` tells which is in use; ``http_fallback=False`` turns it off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from chat_client.http_transport import HttpLink, http_twin
from chat_client.models import (
    Ack,
    ChatAuthError,
    ChatClosedError,
    ChatConnectionError,
    ChatServerError,
    Message,
    Void,
    added_members,
    removed_members,
)
from chat_client.ordering import ReorderBuffer
from chat_client.to_device import ToDeviceChannel
from chat_client.tokens import token_identity
from chat_client.util import backoff_delay, build_url
from chat_client.wire import MAX_MESSAGE_BYTES, encode_frame, send_text

logger = logging.getLogger("chat_client")

RETRYABLE_SEND_CODES = frozenset({"RATE_LIMITED", "INTERNAL"})
# After a sync, re-sync at most this many times at once while a gap it should have filled remains.
MAX_SYNC_FOLLOWUPS = 3
# Cursors one sync frame carries at most (a few hundred keep it far under 32 KiB-ish fragments and
# the 128 KiB message); a user in more chats syncs by listChats pages (PROTOCOL.md v1.1).
SYNC_CURSORS_PER_FRAME = 500
_RECENT_ACKS = 4096
MAX_ACK_TIMEOUT_FACTOR = 8
MAX_PRESENCE_USERS = 100  # per list of one presence frame
# requestId prefix of the automatic DELIVERED frames: an ERROR echoing it (say FORBIDDEN after the
# user left the chat) concerns no call of the application, so it is logged, not put on ``errors``.
AUTO_RECEIPT_PREFIX = "auto-delivered:"
DEFAULT_DEVICE = "default"  # the server's device id for a token with no device claim or parameter
# The connection frames go over: a WebSocket, or the HTTP fallback's stand-in for one.
Link = ClientConnection | HttpLink


@dataclass
class _PendingSend:
    client_msg_id: str
    chat_id: str
    ciphertext: bytes
    media_ids: list[str]
    text: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Ack, an ERROR frame (dict), an exception to raise, or None (woken by a disconnect: re-send).
    outcome: Ack | dict[str, Any] | BaseException | None = None


class ChatClient(ToDeviceChannel):
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
        self.url = url
        self.http_url = http_url
        self.http_fallback = http_fallback
        self.websocket_attempts = max(1, websocket_attempts)
        self.websocket_retry_s = websocket_retry_s
        self.http_poll_min = http_poll_min
        self.http_poll_max = http_poll_max
        # "websocket" or "http": what the current (or last) connection goes over.
        self.transport = "websocket"
        self._token = token
        self.device = device
        self.heartbeat_interval = heartbeat_interval
        self.ack_timeout = ack_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = max(reconnect_max, reconnect_min)
        self.sync_limit = sync_limit
        self.sync_timeout = sync_timeout
        # A gap often fills by itself within milliseconds (pushes race); wait this long before syncing.
        self.gap_sync_delay = gap_sync_delay
        self.own_messages = own_messages
        self.open_timeout = open_timeout
        self.auto_delivered = auto_delivered
        # Coalescing window of the automatic DELIVERED watermark (one frame per chat per window).
        self.delivered_delay = delivered_delay

        self._buffer: ReorderBuffer[Message | Void] = ReorderBuffer(cursors)
        self.cursors: dict[str, int] = self._buffer.cursors
        self.heads: dict[str, int] = {}
        self._heads_truncated = False  # the last SYNC_DONE listed only the chats it was asked about
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._init_to_device()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.left: set[str] = set()  # chats the user was removed from (until a sync lists them again)
        self.user_id: str | None = None
        self.device_id: str | None = None

        self._ws: Link | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._gap_worker: asyncio.Task[None] | None = None
        self._gap_wanted = asyncio.Event()
        self._delivered_worker: asyncio.Task[None] | None = None
        self._delivered_wanted = asyncio.Event()
        self._delivered_due: dict[str, int] = {}  # chat -> highest released seq from another user
        self._delivered_sent: dict[str, int] = {}  # chat -> watermark already sent (DELIVERED or READ)
        self._started = False
        self._closed = False
        self._terminal: BaseException | None = None
        self._state_waiters: set[asyncio.Future[None]] = set()
        self._pending_sends: dict[str, _PendingSend] = {}
        self._pending_requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._recent_acks: OrderedDict[str, None] = OrderedDict()
        self._sync_lock = asyncio.Lock()
        self._sync_requested = 0
        self._sync_completed = 0
        # Users whose presence this device watches: subscribed again after every reconnect.
        self.presence_watched: set[str] = set()

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

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        chat_id: str,
        ciphertext: bytes,
        media_ids: Iterable[str] = (),
        client_msg_id: str | None = None,
        *,
        deadline: float | None = None,
    ) -> Ack:
        """Send until ACKed: the same frame (same clientMsgId) is re-sent after ``ack_timeout`` and after
        every reconnect. RATE_LIMITED / INTERNAL errors are retried after a backoff; any other ERROR
        raises ChatServerError. ``deadline``: give up (TimeoutError) after this many seconds.
        """
        self._check_usable()
        cmid = client_msg_id or str(uuid.uuid4())
        if cmid in self._pending_sends:
            raise ValueError(f"a send with clientMsgId {cmid} is already in flight")
        media = list(media_ids)
        frame = {
            "action": "send",
            "clientMsgId": cmid,
            "chatId": chat_id,
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "mediaIds": media,
        }
        pending = _PendingSend(cmid, chat_id, ciphertext, media, encode_frame(frame))
        loop = asyncio.get_running_loop()
        end = None if deadline is None else loop.time() + deadline
        self._pending_sends[cmid] = pending
        error_attempts = 0
        attempt = 0
        last_ws: Link | None = None
        timeouts_here = 0  # ACK timeouts on the current connection
        try:
            while True:
                ws = await self._wait_connected(end)
                if ws is not last_ws:
                    last_ws, timeouts_here = ws, 0
                if pending.outcome is None:
                    pending.wake.clear()
                    attempt += 1
                    if attempt > 1:
                        logger.info("re-sending %s to %s (attempt %d)", cmid, chat_id, attempt)
                    with contextlib.suppress(ConnectionClosed):
                        await send_text(ws, pending.text)
                    # On a live connection a missing ACK usually means an overloaded server, not a lost
                    # frame: wait longer after each timeout (x2, up to x8) so re-sends do not pile on.
                    wait_s = self.ack_timeout * min(2**timeouts_here, MAX_ACK_TIMEOUT_FACTOR)
                    if end is not None:
                        wait_s = min(wait_s, end - loop.time())
                    try:
                        await asyncio.wait_for(pending.wake.wait(), max(wait_s, 0.0))
                    except TimeoutError:
                        if end is not None and loop.time() >= end:
                            raise TimeoutError(f"send {cmid} not acknowledged before the deadline") from None
                        timeouts_here += 1
                        continue
                outcome, pending.outcome = pending.outcome, None
                if outcome is None:
                    continue  # the connection dropped: wait for the reconnect, then re-send
                if isinstance(outcome, Ack):
                    return outcome
                if isinstance(outcome, BaseException):
                    raise outcome
                code = str(outcome.get("code"))
                if code not in RETRYABLE_SEND_CODES:
                    raise ChatServerError.from_frame(outcome)
                told = ChatServerError.from_frame(outcome).retry_after_s  # PROTOCOL.md v1.1
                delay = told or backoff_delay(error_attempts, self.reconnect_min, self.reconnect_max)
                error_attempts += 1
                if end is not None and loop.time() + delay >= end:
                    raise ChatServerError.from_frame(outcome)
                logger.info("send %s got %s; retrying in %.2fs", cmid, code, delay)
                await asyncio.sleep(delay)
        finally:
            self._pending_sends.pop(cmid, None)

    async def send_raw(self, text: str, timeout: float = 10.0) -> None:
        """Send a text frame as-is (for tests of bad input). Replies land in errors / unmatched."""
        self._check_usable()
        ws = await self._wait_connected(asyncio.get_running_loop().time() + timeout)
        await send_text(ws, text)

    # ------------------------------------------------------------------ requests

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a frame with a requestId (one is set if missing) and return the reply frame carrying it.

        Raises ChatServerError for an ERROR reply, TimeoutError after ``timeout``, ChatConnectionError
        if the connection drops first (the reply cannot arrive on another connection). RATE_LIMITED
        is retried after its ``retryAfterMs`` while that fits in ``timeout``.
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        frame = dict(frame)
        if not isinstance(frame.get("requestId"), str) or not frame["requestId"]:
            frame["requestId"] = str(uuid.uuid4())
        while True:
            ws = await self._wait_connected(end)
            try:
                return await self._request_on(ws, frame, end)
            except ChatServerError as exc:
                # RATE_LIMITED: the same request again (same requestId) once the server's wait is over.
                wait_s = exc.retry_after_s
                if wait_s is None or loop.time() + wait_s >= end:
                    raise
                logger.info("%s rate limited; retrying in %.2fs", frame.get("action"), wait_s)
                await asyncio.sleep(wait_s)

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

    async def send_frame(self, frame: dict[str, Any], timeout: float = 10.0) -> None:
        """Fire-and-forget a client frame (receipt, presence, typing, publishKeys...)."""
        await self.send_raw(encode_frame(frame), timeout)

    async def receipt(
        self,
        chat_id: str,
        receipt_type: str = "READ",
        *,
        server_msg_id: str | None = None,
        up_to_seq: int | None = None,
    ) -> None:
        if (server_msg_id is None) == (up_to_seq is None):
            raise ValueError("give exactly one of server_msg_id and up_to_seq")
        frame: dict[str, Any] = {"action": "receipt", "chatId": chat_id, "type": receipt_type}
        if server_msg_id is not None:
            frame["serverMsgId"] = server_msg_id
        else:
            frame["upToSeq"] = up_to_seq
        await self.send_frame(frame)

    async def subscribe_presence(self, users: Iterable[str]) -> None:
        """Watch these users' presence: the server answers at once with one PRESENCE frame per user,
        then pushes their changes (all on ``unmatched``; a user one shares no chat with makes the
        frame an ERROR FORBIDDEN on ``errors``). The subscription lives while this client heartbeats,
        and is made again after a reconnect."""
        wanted = list(dict.fromkeys(users))
        await self._send_presence(subscribe=wanted)
        self.presence_watched.update(wanted)

    async def unsubscribe_presence(self, users: Iterable[str]) -> None:
        dropped = list(dict.fromkeys(users))
        self.presence_watched.difference_update(dropped)
        await self._send_presence(unsubscribe=dropped)

    async def _send_presence(
        self,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        ws: Link | None = None,
    ) -> None:
        """One frame per 100 users of each list (the protocol's maximum)."""
        step = MAX_PRESENCE_USERS
        for start in range(0, max(len(subscribe), len(unsubscribe)), step):
            frame = {
                "action": "presence",
                "subscribe": list(subscribe[start : start + step]),
                "unsubscribe": list(unsubscribe[start : start + step]),
            }
            if ws is None:
                await self.send_frame(frame)
            else:
                await send_text(ws, encode_frame(frame))

    async def mark_read(self, chat_id: str, seq: int) -> None:
        """READ watermark: the user has seen every message of the chat up to ``seq``. READ implies
        DELIVERED, so no automatic DELIVERED follows for those messages."""
        await self.receipt(chat_id, "READ", up_to_seq=seq)
        self._delivered_sent[chat_id] = max(self._delivered_sent.get(chat_id, 0), seq)

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

    # ------------------------------------------------------------------ sync

    async def sync(self) -> dict[str, int]:
        """Catch up every chat from the released cursors; returns the heads from SYNC_DONE.

        One sync runs at a time; calls made while one runs are served by a single sync after it.
        """
        self._check_usable()
        await self._wait_connected(asyncio.get_running_loop().time() + self.sync_timeout)
        return await self._sync(None)

    async def _sync(self, ws: Link | None) -> dict[str, int]:
        self._sync_requested += 1
        ticket = self._sync_requested
        async with self._sync_lock:
            if self._sync_completed >= ticket:
                return dict(self.heads)
            covers = self._sync_requested
            # Never wait for a connection while holding the lock: the reconnect's own sync needs it.
            conn = ws if ws is not None else self._ws
            if conn is None:
                raise ChatConnectionError("not connected")
            await self._sync_rounds(conn)
            self._sync_completed = max(self._sync_completed, covers)
            return dict(self.heads)

    async def _sync_rounds(self, ws: Link) -> None:
        if len(self.cursors) > SYNC_CURSORS_PER_FRAME:
            await self._sync_by_pages(ws)  # too many chats for one sync frame's cursors
        followups = 0
        while True:
            before = dict(self.cursors)
            if len(self.cursors) > SYNC_CURSORS_PER_FRAME:
                if self._unfilled_gaps() and followups < MAX_SYNC_FOLLOWUPS:
                    followups += 1
                    await self._sync_by_pages(ws)
                    continue
                break
            more = await self._sync_once(ws)
            if self._heads_truncated:
                await self._sync_by_pages(ws)
                break
            if more:
                if self.cursors == before:
                    logger.warning("sync said more=true but nothing new arrived; stopping this round")
                    break
                continue
            if followups < MAX_SYNC_FOLLOWUPS and self._unfilled_gaps():
                followups += 1
                logger.info("gaps remain after sync (%s); syncing again", self._unfilled_gaps())
                continue
            break
        if self._behind():
            self._gap_wanted.set()

    def _unfilled_gaps(self) -> list[str]:
        return [
            g.chat_id
            for g in self._buffer.gaps()
            if self.heads.get(g.chat_id, 0) > self._buffer.cursor(g.chat_id)
        ]

    async def _sync_by_pages(self, ws: Link) -> None:
        """For a user in more chats than one SYNC_DONE lists (PROTOCOL.md v1.1): page every chat's
        head with listChats, then sync `only` the chats that are behind, a few hundred at a time."""
        end = asyncio.get_running_loop().time() + self.sync_timeout
        heads: dict[str, int] = {}
        cursor: str | None = None
        while True:
            page = await self._request_on(ws, {"action": "listChats", "cursor": cursor}, end)
            heads.update({c["chatId"]: c["head"] for c in page.get("chats", [])})
            cursor = page.get("next")
            if not cursor:
                break
        # Every chat of the user is listed: one no longer there (the user was removed) is forgotten.
        self.heads = {chat_id: max(self.heads.get(chat_id, 0), head) for chat_id, head in heads.items()}
        self.left.difference_update(self.heads)
        behind = sorted(c for c, head in self.heads.items() if head > self.cursors.get(c, 0))
        for start in range(0, len(behind), SYNC_CURSORS_PER_FRAME):
            chunk = behind[start : start + SYNC_CURSORS_PER_FRAME]
            while await self._sync_once(ws, chunk):
                pass

    async def _sync_once(self, ws: Link, only: list[str] | None = None) -> bool:
        """One sync; `only`: just those chats (the reply then lists their heads alone)."""
        frame: dict[str, Any] = {
            "action": "sync",
            "requestId": str(uuid.uuid4()),
            "cursors": dict(self.cursors) if only is None else {c: self.cursors.get(c, 0) for c in only},
            "limit": self.sync_limit,
        }
        if only is not None:
            frame["only"] = True
        end = asyncio.get_running_loop().time() + self.sync_timeout
        reply = await self._request_on(ws, frame, end)
        if reply.get("type") != "SYNC_DONE":
            raise ChatServerError("BAD_REPLY", f"expected SYNC_DONE, got {reply.get('type')!r}", reply)
        heads = reply.get("heads") or {}
        self._heads_truncated = reply.get("headsTruncated") is True
        self._apply_starts(reply.get("starts"))
        if isinstance(heads, dict):
            listed = {
                chat_id: max(self.heads.get(chat_id, 0), head)
                for chat_id, head in heads.items()
                if isinstance(chat_id, str) and isinstance(head, int) and not isinstance(head, bool)
            }
            if only is not None or self._heads_truncated:
                self.heads.update(listed)  # a partial list: the other chats are as they were
                return bool(reply.get("more"))
            # The server lists every chat the user is in now (and those it was removed from that
            # the cursors named, at their removal): a chat it no longer lists is forgotten; pushes
            # may already have taken a listed head further.
            self.heads = listed
            for gap in self._buffer.gaps():
                if gap.chat_id not in self.heads:  # no longer a member: that gap never fills
                    self._buffer.drop_held(gap.chat_id)
            # A chat we left whose head moved past our removal: we were added back. The others
            # we left are listed at our removal: not ours any more.
            self.left.difference_update(c for c, head in listed.items() if head > self._buffer.cursor(c))
            self.heads = {c: head for c, head in listed.items() if c not in self.left}
        return bool(reply.get("more"))

    def _apply_starts(self, starts: Any) -> None:
        """SYNC_DONE `starts`: chats whose history for us begins after seq 1 (we were added later);
        nothing before the start will come, so a cursor behind it moves up to it."""
        if not isinstance(starts, dict):
            return
        for chat_id, start in starts.items():
            if (
                isinstance(chat_id, str)
                and isinstance(start, int)
                and not isinstance(start, bool)
                and start > 0
            ):
                self._release(self._buffer.start_at(chat_id, start))

    async def _gap_sync_loop(self) -> None:
        """Sync while some chat is behind (a gap, or a head past the cursor: a hole whose writer may
        still store it, or a push that was lost), backing off while it stays behind."""
        delay = self.gap_sync_delay
        while not self._closed:
            await self._gap_wanted.wait()
            await asyncio.sleep(delay)
            self._gap_wanted.clear()
            if not self._behind():
                delay = self.gap_sync_delay
                continue
            if not self.connected.is_set():
                continue  # the reconnect runs a sync, which re-arms this if gaps remain
            try:
                await self._sync(None)
            except (ChatConnectionError, ChatServerError, TimeoutError) as exc:
                logger.warning("gap sync failed: %s", exc)
            if self._behind():
                delay = min(max(delay * 2, self.reconnect_min), self.reconnect_max)
                self._gap_wanted.set()
            else:
                delay = self.gap_sync_delay

    async def _delivered_loop(self) -> None:
        """Send the DELIVERED watermark of each chat that released messages from other users,
        coalesced: one frame per chat per ``delivered_delay``. What a dropped connection kept from
        going out is sent after the reconnect."""
        while not self._closed:
            await self._delivered_wanted.wait()
            await asyncio.sleep(self.delivered_delay)
            self._delivered_wanted.clear()
            try:
                ws = await self._wait_connected(None)
            except (ChatClosedError, ChatAuthError):
                return
            for chat_id, seq in list(self._delivered_due.items()):
                if seq > self._delivered_sent.get(chat_id, 0):
                    frame = {
                        "action": "receipt",
                        "chatId": chat_id,
                        "type": "DELIVERED",
                        "upToSeq": seq,
                        "requestId": f"{AUTO_RECEIPT_PREFIX}{uuid.uuid4()}",
                    }
                    try:
                        await send_text(ws, encode_frame(frame))
                    except ConnectionClosed:
                        self._delivered_wanted.set()  # try again once reconnected
                        break
                    self._delivered_sent[chat_id] = max(self._delivered_sent.get(chat_id, 0), seq)
                if self._delivered_due.get(chat_id) == seq:
                    del self._delivered_due[chat_id]

    # ------------------------------------------------------------------ connection

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
                    await asyncio.sleep(backoff_delay(failures - 1, self.reconnect_min, self.reconnect_max))
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
                    poll_min=self.http_poll_min,
                    poll_max=self.http_poll_max,
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
        if self.presence_watched:
            # The current status of each again (changes while away were not pushed to this device).
            with contextlib.suppress(ConnectionClosed):
                await self._send_presence(subscribe=sorted(self.presence_watched), ws=ws)
        self.connected.set()
        self._notify_state()
        logger.info("connected to %s (%s) as %s/%s", self.url, self.transport, self.user_id, self.device_id)

    async def _teardown_connection(self) -> None:
        reader, heartbeat = self._reader, self._heartbeat
        if heartbeat is not None:
            heartbeat.cancel()
        await asyncio.gather(*(t for t in (reader, heartbeat) if t is not None), return_exceptions=True)
        self._heartbeat = None

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
            delay = backoff_delay(attempt, self.reconnect_min, self.reconnect_max)
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
        lost = ChatConnectionError("connection lost before the reply")
        for fut in self._pending_requests.values():
            if not fut.done():
                fut.set_exception(lost)
                fut.exception()  # a waiter that gave up meanwhile must not leave it "never retrieved"
        for pending in self._pending_sends.values():
            pending.wake.set()  # outcome None: re-send after the reconnect
        self._notify_state()

    # ------------------------------------------------------------------ inbound frames

    def _dispatch(self, text: str) -> None:
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
        elif isinstance(frame.get("requestId"), str) and frame["requestId"] in self._pending_requests:
            fut = self._pending_requests[frame["requestId"]]
            if not fut.done():
                fut.set_result(frame)
        else:
            self.unmatched.put_nowait(frame)

    def _on_message_frame(self, frame: dict[str, Any]) -> None:
        try:
            message = Message.from_frame(frame)
        except ValueError as exc:
            logger.warning("malformed MESSAGE frame (%s): %.200s", exc, frame)
            self.unmatched.put_nowait(frame)
            return
        self._offer(message)

    def _on_void_frame(self, frame: dict[str, Any]) -> None:
        try:
            void = Void.from_frame(frame)
        except ValueError as exc:
            logger.warning("malformed VOID frame (%s): %.200s", exc, frame)
            return
        self._offer(void)

    def _on_pong(self, frame: dict[str, Any]) -> None:
        """PONG `heads`: chats whose head moved since the previous heartbeat; sync those behind."""
        heads = frame.get("heads")
        if not isinstance(heads, dict):
            return
        for chat_id, head in heads.items():
            if isinstance(chat_id, str) and isinstance(head, int) and not isinstance(head, bool):
                self.heads[chat_id] = max(self.heads.get(chat_id, 0), head)
        if self._behind():
            self._gap_wanted.set()

    def _behind(self) -> list[str]:
        """Chats with something to fetch: held items behind a gap, or a known head past the cursor."""
        held = {g.chat_id for g in self._buffer.gaps()}
        ahead = {c for c, head in self.heads.items() if head > self._buffer.cursor(c) and c not in self.left}
        return sorted(held | ahead)

    def _offer(self, item: Message | Void) -> None:
        if item.chat_id in self.left:
            if item.seq <= self._buffer.cursor(item.chat_id):
                return  # a late push of what we had before leaving
            self.left.discard(item.chat_id)  # a frame past the cursor: we were added back
        head = self.heads.get(item.chat_id, 0)
        if item.seq > head:
            self.heads[item.chat_id] = item.seq
        if isinstance(item, Message) and self.user_id is not None and self.user_id in added_members(item):
            # Our window starts here: nothing before our `added` announcement is ours to get.
            self._release(self._buffer.start_at(item.chat_id, item.seq))
        result = self._buffer.offer(item.chat_id, item.seq, item)
        self._release(result.released)
        if result.gap:
            logger.debug(
                "gap in %s before #%d (cursor %d)",
                item.chat_id,
                item.seq,
                self._buffer.cursor(item.chat_id),
            )
            self._gap_wanted.set()

    def _release(self, items: list[Message | Void]) -> None:
        """Hand the items released in order to the application (VOIDs are only seqs)."""
        for released in items:
            if isinstance(released, Void):
                continue
            if self.own_messages or not self._is_own(released):
                self.messages.put_nowait(released)
            if self.auto_delivered and released.sender != self.user_id:
                self._delivered_due[released.chat_id] = released.seq  # released in order: the highest
                self._delivered_wanted.set()
            if self.user_id is not None and self.user_id in removed_members(released):
                self._leave(released.chat_id, released.seq)
                return  # nothing after our removal is ours to show

    def _leave(self, chat_id: str, removal_seq: int) -> None:
        """Removed from the chat at `removal_seq`: nothing after it will come (or is ours), so stop
        waiting for it; the cursor stays at the removal."""
        self.left.add(chat_id)
        self._buffer.drop_held(chat_id)
        self.cursors[chat_id] = removal_seq
        self.heads.pop(chat_id, None)

    def _is_own(self, message: Message) -> bool:
        return (
            self.user_id is not None
            and message.sender == self.user_id
            and message.sender_device == (self.device_id or "")
        )

    def _on_ack(self, frame: dict[str, Any]) -> None:
        try:
            ack = Ack.from_frame(frame)
        except ValueError as exc:
            logger.warning("malformed ACK frame (%s): %.200s", exc, frame)
            self.unmatched.put_nowait(frame)
            return
        pending = self._pending_sends.get(ack.client_msg_id)
        if pending is None or isinstance(pending.outcome, Ack):
            if ack.client_msg_id not in self._recent_acks:
                self.unmatched.put_nowait(frame)
            return  # a duplicate ACK for a re-sent frame
        pending.outcome = ack
        pending.wake.set()
        self._recent_acks[ack.client_msg_id] = None
        if len(self._recent_acks) > _RECENT_ACKS:
            self._recent_acks.popitem(last=False)
        if self.user_id is not None:
            # Our own message is stored at ack.seq: release it into the ordering so it is not a gap.
            self._offer(
                Message(
                    chat_id=ack.chat_id,
                    seq=ack.seq,
                    server_msg_id=ack.server_msg_id,
                    sender=self.user_id,
                    sender_device=self.device_id or "",
                    ciphertext=pending.ciphertext,
                    media_ids=list(pending.media_ids),
                    created_at=ack.created_at,
                )
            )

    def _on_error(self, frame: dict[str, Any]) -> None:
        cmid, rid = frame.get("clientMsgId"), frame.get("requestId")
        if isinstance(cmid, str):
            pending = self._pending_sends.get(cmid)
            if pending is not None and not isinstance(pending.outcome, Ack):
                pending.outcome = frame
                pending.wake.set()
                return
            if cmid in self._recent_acks:
                logger.debug("ignoring an ERROR for already acknowledged %s: %s", cmid, frame)
                return
        if isinstance(rid, str) and rid.startswith(AUTO_RECEIPT_PREFIX):
            logger.info("automatic DELIVERED refused: %s", frame)
            return
        if isinstance(rid, str):
            fut = self._pending_requests.get(rid)
            if fut is not None and not fut.done():
                fut.set_result(frame)
                return
        self.errors.put_nowait(frame)

    # ------------------------------------------------------------------ helpers

    async def _request_on(self, ws: Link, frame: dict[str, Any], end: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        frame = dict(frame)
        rid = frame.get("requestId")
        if not isinstance(rid, str) or not rid:
            rid = frame["requestId"] = str(uuid.uuid4())
        if rid in self._pending_requests:
            raise ValueError(f"requestId {rid} is already in flight")
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending_requests[rid] = fut
        try:
            try:
                await send_text(ws, encode_frame(frame))
            except ConnectionClosed as exc:
                raise ChatConnectionError(f"connection closed: {exc}") from exc
            reply = await asyncio.wait_for(fut, max(end - loop.time(), 0.0))
        finally:
            self._pending_requests.pop(rid, None)
        if reply.get("type") == "ERROR":
            raise ChatServerError.from_frame(reply)
        return reply

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

    def _fail_all(self, exc: BaseException) -> None:
        for fut in self._pending_requests.values():
            if not fut.done():
                fut.set_exception(exc)
        for pending in self._pending_sends.values():
            if not isinstance(pending.outcome, Ack):
                pending.outcome = exc
            pending.wake.set()
