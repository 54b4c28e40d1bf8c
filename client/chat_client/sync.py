"""ChatClient's in-order delivery: every message of every chat put on ``messages`` exactly once,
in seq order per chat, with no gaps (holes are filled with ``sync``, never skipped).

Pushed and synced frames are offered to the reorder buffer (chat_client/ordering.py), which
releases them in order. Seqs the server reports as VOID (a writer died before storing its
message) take their place in the order and are never shown. A connected client also learns of
chats whose head moved from the PONG of each heartbeat, and syncs those it is behind in: a push
lost on the way is recovered within one ``heartbeat_interval`` without reconnecting. A chat the
user was removed from is dropped at its removal message (nothing after it will come).

Messages sent by this very device (same user and device as the token) only advance the cursor and
are not put on ``messages`` (the server does not push them back to the sending device either; the
application has them already). ``own_messages=True`` puts them there as well.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from chat_client.models import (
    ChatConnectionError,
    ChatServerError,
    Message,
    Void,
    added_members,
    parse_frame,
    removed_members,
)
from chat_client.ordering import ReorderBuffer
from chat_client.util import Backoff

if TYPE_CHECKING:
    from chat_client.connection import Link

logger = logging.getLogger("chat_client")

# After a sync, re-sync at most this many times at once while a gap it should have filled remains.
MAX_SYNC_FOLLOWUPS = 3
# Cursors one sync frame carries at most (a few hundred keep it far under 32 KiB-ish fragments and
# the 128 KiB message); a user in more chats syncs by listChats pages (PROTOCOL.md v1.1).
SYNC_CURSORS_PER_FRAME = 500


class ChatSync:
    """Mixed into ChatClient, which sets the options and queues below; it provides the connection
    (``_wait_connected``, ``_request_on``...) and the DELIVERED receipts (``_released_to_app``)."""

    sync_limit: int
    sync_timeout: float
    gap_sync_delay: float  # a gap often fills by itself within milliseconds (pushes race)
    own_messages: bool
    reconnect_delays: Backoff
    user_id: str | None
    device_id: str | None
    connected: asyncio.Event
    messages: asyncio.Queue[Message]
    unmatched: asyncio.Queue[dict[str, Any]]
    _closed: bool
    _ws: Link | None

    def _init_sync(self, cursors: dict[str, int] | None) -> None:
        self._buffer: ReorderBuffer[Message | Void] = ReorderBuffer(cursors)
        self.cursors: dict[str, int] = self._buffer.cursors
        self.heads: dict[str, int] = {}
        self._heads_truncated = False  # the last SYNC_DONE listed only the chats it was asked about
        self.left: set[str] = set()  # chats the user was removed from (until a sync lists them again)
        self._gap_worker: asyncio.Task[None] | None = None
        self._gap_wanted = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._sync_requested = 0
        self._sync_completed = 0

    # ------------------------------------------------------------------ inbound items, in order

    def _on_message_frame(self, frame: dict[str, Any]) -> None:
        message = parse_frame(Message.from_frame, frame)
        if message is None:
            self.unmatched.put_nowait(frame)
            return
        self._offer(message)

    def _on_void_frame(self, frame: dict[str, Any]) -> None:
        void = parse_frame(Void.from_frame, frame)
        if void is not None:
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
            self._released_to_app(released)
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
                delay = self.reconnect_delays.doubled(delay)
                self._gap_wanted.set()
            else:
                delay = self.gap_sync_delay

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        def _check_usable(self) -> None: ...

        async def _wait_connected(self, end: float | None) -> Link: ...

        async def _request_on(self, ws: Link, frame: dict[str, Any], end: float) -> dict[str, Any]: ...

        def _released_to_app(self, message: Message) -> None: ...
