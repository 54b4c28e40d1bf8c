"""sync: replay what a device missed, chat by chat in seq order, then the heads of all its chats.

Each chat is replayed within the caller's history window (`dal/chat_heads.py`), as a gapless run
from the cursor: a hole (a seq reserved by a writer that
died or stalled) past the hole grace is filled with a VOID and replayed as one; a younger hole
ends that chat's run for now (its writer may still store it; the client asks again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chat_backend.dal.inbox_store import InboxStore
from chat_backend.errors import ConnectionGone
from chat_backend.logic import holes
from chat_backend.logic.frame_sink import FrameSink
from chat_backend.logic.send import Ledger
from chat_backend.logic.to_device import to_device_frame
from chat_backend.models.client_frames import SyncFrame
from chat_backend.models.common import epoch_ms
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta, Stored
from chat_backend.models.server_frames import SyncDoneFrame

# Chats a SYNC_DONE lists at most (PROTOCOL.md v1.1): about 75 KB of heads, under the frame limit.
MAX_SYNC_HEADS = 1000


def sync(
    ledger: Ledger,
    poster: FrameSink,
    caller: Caller,
    frame: SyncFrame,
    grace_s: float,
    clock: Callable[[], float] = time.time,
    *,
    inbox: InboxStore | None = None,
) -> SyncDoneFrame | None:
    """SYNC_DONE; None when the caller's connection went away mid-replay: nobody to answer
    (its next connection syncs again; a client dropping mid-sync is no function error). The replay
    goes to `poster`: the caller's connection, or over HTTP a collector (answered before SYNC_DONE).

    Cursors naming chats the caller is not in are ignored: they yield nothing and are not listed
    in heads, so a non-member learns nothing about them. A chat the caller was removed from is
    replayed, when a cursor names it, through the removal, and listed at that head."""
    chat_ids = sorted(ledger.chats.listing.chat_ids(caller.user_id))
    former = sorted(set(frame.cursors) - set(chat_ids))
    # A user in more than MAX_SYNC_HEADS chats gets (and is replayed) the chats it names; it pages
    # the rest with listChats. So does a sync that asks for `only` those.
    truncated = len(chat_ids) > MAX_SYNC_HEADS
    if frame.only or truncated:
        chat_ids = [c for c in chat_ids if c in frame.cursors]
    views = ledger.chats.heads.views(caller.user_id, chat_ids, former)
    remaining = frame.limit
    more = False
    # The device's to-device messages first: the keys of the messages that follow.
    if inbox is not None:
        waiting = inbox.pending(caller.user_id, caller.device_id, frame.limit)
        try:
            for message in waiting:
                poster.post(caller.connection_id, to_device_frame(message).to_json())
        except ConnectionGone:
            return None
        remaining -= len(waiting)
        more = remaining == 0
    for chat_id, view in sorted(views.items()):
        cursor = max(frame.cursors.get(chat_id, 0), view.window.start - 1)
        if view.head <= cursor:
            continue
        if remaining == 0:
            more = True
            break
        now_ms, archived = int(clock() * 1000), view.archived_through
        run = replay_run(ledger, chat_id, cursor, view.head, remaining, now_ms, grace_s, archived)
        try:
            for item in run.items:
                poster.post(caller.connection_id, item.frame_for(caller.user_id).to_json())
        except ConnectionGone:
            return None
        remaining -= len(run.items)
        more |= run.truncated
    return SyncDoneFrame(
        request_id=frame.request_id,
        heads={chat_id: view.head for chat_id, view in views.items()},
        more=more,
        heads_truncated=truncated,
        starts={chat_id: view.window.start for chat_id, view in views.items() if view.window.start > 1},
    )


@dataclass(frozen=True)
class Run:
    items: list[Stored]
    truncated: bool  # stopped at the limit with more after it


class ArchivedMeanwhile(Exception):
    """A seq missing from the messages table was archived (and deleted) after the chat was read."""

    def __init__(self, through: int) -> None:
        super().__init__(through)
        self.through = through


def replay_run(
    ledger: Ledger,
    chat_id: str,
    cursor: int,
    head: int,
    limit: int,
    now_ms: int,
    grace_s: float,
    archived_through: int = 0,
) -> Run:
    """Up to `limit` items from cursor + 1 to `head`, without a gap: seqs up to `archived_through`
    from the archive, the rest from the messages table (old holes become VOIDs on the way)."""
    archived: list[Stored] = []
    while True:
        if cursor < archived_through:
            if ledger.archive is None:
                raise RuntimeError(f"{chat_id} is archived through {archived_through}: no archive given")
            up_to = min(head, archived_through)
            archived += ledger.archive.after(chat_id, cursor, limit - len(archived), up_to)
            if len(archived) == limit:
                return Run(archived, truncated=archived[-1].seq < head)
            cursor = up_to
        if cursor >= head:
            return Run(archived, truncated=False)
        try:
            hot = _hot_run(ledger, chat_id, cursor, head, limit - len(archived), now_ms, grace_s)
        except ArchivedMeanwhile as moved:  # the archiver deleted what we were about to VOID
            archived_through = moved.through
            continue
        return Run(archived + hot.items, hot.truncated)


def _hot_run(
    ledger: Ledger, chat_id: str, cursor: int, head: int, limit: int, now_ms: int, grace_s: float
) -> Run:
    """replay_run over the messages table. A seq it finds missing may have been archived and
    deleted since the caller read `archivedThrough`: META, read after the Query, tells (the archiver
    deletes only after committing `archivedThrough`), and the seq is never VOIDed then."""
    found = ledger.messages.after(chat_id, cursor, limit, up_to=head)
    run: list[Stored] = []
    expected = cursor + 1
    chat: ChatMeta | None = None

    def fill(seq: int) -> Stored:
        nonlocal chat
        chat = chat or ledger.chats.get_chat(chat_id)
        assert chat is not None  # the chat has a head, so its META exists
        if chat.archived_through >= seq:
            raise ArchivedMeanwhile(chat.archived_through)
        return holes.fill_hole(ledger.messages, ledger.sequencer, chat, seq, now_ms)

    for item in found:
        if expected < item.seq and not holes.is_old(epoch_ms(item.created_at), now_ms, grace_s):
            return Run(run, truncated=False)  # a young hole: its writer may still store it
        while expected < item.seq and len(run) < limit:
            run.append(fill(expected))
            expected += 1
        if len(run) == limit:
            return Run(run, truncated=True)
        run.append(item)
        expected = item.seq + 1
    if len(found) == limit:
        return Run(run, truncated=expected <= head)
    # Nothing stored past the last item up to `head`: the seqs up to it are holes, as old as the
    # chat's head (or older).
    chat = ledger.chats.get_chat(chat_id)
    if chat is None or not holes.is_old(chat.head_at_ms, now_ms, grace_s):
        return Run(run, truncated=False)
    while expected <= head and len(run) < limit:
        run.append(fill(expected))
        expected += 1
    return Run(run, truncated=expected <= head)
