"""ChatClient's receipts: the DELIVERED watermark it sends by itself, and READ.

Once messages from other users are released to the application, the client tells the server it
holds them with a DELIVERED watermark (``upToSeq``), at most one frame per chat per
``delivered_delay`` seconds however many messages arrived (``auto_delivered=False`` turns this
off). ``mark_read(chat_id, seq)`` sends the READ watermark. RECEIPT and RECEIPT_SUMMARY frames from
the server land on ``unmatched``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from chat_client.models import ChatAuthError, ChatClosedError, Message
from chat_client.wire import encode_frame, send_text

if TYPE_CHECKING:
    from chat_client.connection import Link

# requestId prefix of the automatic DELIVERED frames: an ERROR echoing it (say FORBIDDEN after the
# user left the chat) concerns no call of the application, so it is logged, not put on ``errors``.
AUTO_RECEIPT_PREFIX = "auto-delivered:"


class Receipts:
    """Mixed into ChatClient, which sets the options below; it provides the connection
    (``_wait_connected``, ``_closed``) and ``send_frame``."""

    auto_delivered: bool
    delivered_delay: float  # coalescing window of the automatic DELIVERED (one frame per chat)
    user_id: str | None
    _closed: bool

    def _init_receipts(self) -> None:
        self._delivered_worker: asyncio.Task[None] | None = None
        self._delivered_wanted = asyncio.Event()
        self._delivered_due: dict[str, int] = {}  # chat -> highest released seq from another user
        self._delivered_sent: dict[str, int] = {}  # chat -> watermark already sent (DELIVERED or READ)

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

    async def mark_read(self, chat_id: str, seq: int) -> None:
        """READ watermark: the user has seen every message of the chat up to ``seq``. READ implies
        DELIVERED, so no automatic DELIVERED follows for those messages."""
        await self.receipt(chat_id, "READ", up_to_seq=seq)
        self._delivered_sent[chat_id] = max(self._delivered_sent.get(chat_id, 0), seq)

    def _released_to_app(self, message: Message) -> None:
        """A message was released in order: one from another user makes its DELIVERED due."""
        if self.auto_delivered and message.sender != self.user_id:
            self._delivered_due[message.chat_id] = message.seq  # released in order: the highest
            self._delivered_wanted.set()

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

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        async def send_frame(self, frame: dict[str, Any], timeout: float = 10.0) -> None: ...

        async def _wait_connected(self, end: float | None) -> Link: ...
