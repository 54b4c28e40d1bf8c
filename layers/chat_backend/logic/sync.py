"""sync: replay what a device missed, chat by chat in seq order, then the heads of all its chats."""

from __future__ import annotations

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.models import Caller, SyncDoneFrame, SyncFrame


def sync(store: ChatStore, poster: ConnectionPoster, caller: Caller, frame: SyncFrame) -> SyncDoneFrame:
    """Cursors naming chats the caller is not in are ignored: they yield nothing and are not
    listed in heads, so a non-member learns nothing about them."""
    chat_ids = sorted(store.chat_ids_of(caller.user_id))
    heads = store.heads(caller.user_id, chat_ids)
    remaining = frame.limit
    more = False
    for chat_id in sorted(heads):
        cursor = frame.cursors.get(chat_id, 0)
        if heads[chat_id] <= cursor:
            continue
        if remaining == 0:
            more = True
            break
        messages = store.messages_after(chat_id, cursor, remaining)
        for message in messages:
            poster.post(caller.connection_id, message.to_frame().to_json())
        remaining -= len(messages)
        if messages and messages[-1].seq < heads[chat_id]:
            more = True
    return SyncDoneFrame(request_id=frame.request_id, heads=heads, more=more)
