"""ChatClient's outgoing frames: sends retried until the server ACKs them, requests matched to
their replies by requestId, and fire-and-forget frames.

A ``send`` is re-sent with the same clientMsgId (stored once by the server) after ``ack_timeout``
and after every reconnect; RATE_LIMITED and INTERNAL errors are retried after a backoff. A request
fails with ChatConnectionError when its connection drops (the reply cannot arrive on another).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from chat_client.models import Ack, ChatConnectionError, ChatServerError, Message, parse_frame
from chat_client.receipts import AUTO_RECEIPT_PREFIX
from chat_client.util import Backoff
from chat_client.wire import encode_frame, send_text

if TYPE_CHECKING:
    from chat_client.connection import Link

logger = logging.getLogger("chat_client")

RETRYABLE_SEND_CODES = frozenset({"RATE_LIMITED", "INTERNAL"})
RECENT_ACKS_KEPT = 4096  # clientMsgIds whose late duplicate ACKs and ERRORs are recognised
MAX_ACK_TIMEOUT_FACTOR = 8


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


class Sending:
    """Mixed into ChatClient, which sets the options and queues below; it provides the connection
    (``_wait_connected``, ``_check_usable``) and the ordering (``_offer``)."""

    ack_timeout: float
    reconnect_delays: Backoff
    user_id: str | None
    device_id: str | None
    errors: asyncio.Queue[dict[str, Any]]
    unmatched: asyncio.Queue[dict[str, Any]]

    def _init_sending(self) -> None:
        self._pending_sends: dict[str, _PendingSend] = {}
        self._pending_requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._recent_acks: OrderedDict[str, None] = OrderedDict()

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
                delay = told or self.reconnect_delays.jittered(error_attempts)
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

    async def send_frame(self, frame: dict[str, Any], timeout: float = 10.0) -> None:
        """Fire-and-forget a client frame (receipt, presence, typing, publishKeys...)."""
        await self.send_raw(encode_frame(frame), timeout)

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

    # ------------------------------------------------------------------ replies

    def _on_reply(self, frame: dict[str, Any]) -> bool:
        """Hand a frame carrying the requestId of a request in flight to its waiter (a second reply
        to it is dropped); False for a frame no request waits for."""
        rid = frame.get("requestId")
        fut = self._pending_requests.get(rid) if isinstance(rid, str) else None
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(frame)
        return True

    def _on_ack(self, frame: dict[str, Any]) -> None:
        ack = parse_frame(Ack.from_frame, frame)
        if ack is None:
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
        if len(self._recent_acks) > RECENT_ACKS_KEPT:
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
        fut = self._pending_requests.get(rid) if isinstance(rid, str) else None
        if fut is not None and not fut.done():
            fut.set_result(frame)
            return
        self.errors.put_nowait(frame)

    # ------------------------------------------------------------------ the connection goes away

    def _connection_lost(self) -> None:
        """Requests in flight fail (their reply cannot come any more); sends wake to be re-sent
        after the reconnect."""
        lost = ChatConnectionError("connection lost before the reply")
        for fut in self._pending_requests.values():
            if not fut.done():
                fut.set_exception(lost)
                fut.exception()  # a waiter that gave up meanwhile must not leave it "never retrieved"
        for pending in self._pending_sends.values():
            pending.wake.set()  # outcome None: re-send after the reconnect

    def _fail_all(self, exc: BaseException) -> None:
        """The client is done: every request and send in flight raises ``exc``."""
        for fut in self._pending_requests.values():
            if not fut.done():
                fut.set_exception(exc)
        for pending in self._pending_sends.values():
            if not isinstance(pending.outcome, Ack):
                pending.outcome = exc
            pending.wake.set()

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        def _check_usable(self) -> None: ...

        async def _wait_connected(self, end: float | None) -> Link: ...

        def _offer(self, item: Message) -> None: ...
