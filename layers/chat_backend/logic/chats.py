"""createChat: direct chats are unique per pair; groups hold at most MAX_GROUP_MEMBERS."""

from __future__ import annotations

import uuid
from concurrent.futures import Executor
from typing import Literal

from chat_backend.dal.chat_keys import direct_chat_id
from chat_backend.dal.chat_listing import ChatListing
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.delivery_queue import FifoQueue
from chat_backend.errors import BadRequest, ChatExists, GroupFull, NotFound
from chat_backend.logic.consent import addable, mark_blocks
from chat_backend.logic.member_jobs import MARGIN_S, TimeLeft, enqueue_adds, no_deadline
from chat_backend.models.client_frames import CreateChatFrame, ListChatsFrame
from chat_backend.models.common import ANSWER_BUDGET_BYTES, CHATS_PAGE, MAX_GROUP_MEMBERS, now_iso
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta
from chat_backend.models.server_frames import ChatEntry, ChatFrame, ChatsFrame, fitting


def create_chat(
    store: ChatStore,
    consent: ConsentStore,
    pool: Executor,
    caller: Caller,
    frame: CreateChatFrame,
    jobs: FifoQueue | None = None,
    time_left: TimeLeft = no_deadline,
) -> ChatFrame:
    """A group leaves out (and lists in `notAdded`) whoever may not be added by the caller; a
    direct chat is created whatever the other side's blocks (its messages are then hidden).
    A group whose members cannot all be written before the invocation's time runs low is made
    with those written; a member job adds the rest, announced as they get in (`pendingMembers`
    counts them)."""
    if caller.user_id in frame.members:
        raise BadRequest("members lists the others; the creator is added by the server")
    if len(frame.members) + 1 > MAX_GROUP_MEMBERS:
        raise GroupFull(f"a group holds at most {MAX_GROUP_MEMBERS} members")
    pair: tuple[str, str] | None = None
    invited, not_added = list(frame.members), None
    if frame.kind == "direct":
        chat_id = direct_chat_id(caller.user_id, frame.members[0])
        name = None
        first, second = sorted((caller.user_id, frame.members[0]))
        pair = (first, second)
    else:
        chat_id = f"g_{uuid.uuid4().hex}"
        name = frame.name
        invited, not_added = addable(consent, store, pool, caller.user_id, invited)
    meta = ChatMeta(
        chat_id=chat_id,
        kind=frame.kind,
        name=name,
        head_seq=0,
        member_count=len(invited) + 1,
        created_at=now_iso(),
        pair=pair,
        engaged=frozenset({caller.user_id}) if pair else frozenset(),
    )
    members = {caller.user_id: "admin"} | {m: "member" for m in invited}
    later: list[str] = []
    try:
        written = store.create_chat(
            meta, caller.user_id, members, lambda: jobs is None or time_left() > MARGIN_S
        )
        done = set(written)
        later = [u for u in invited if u not in done]
        meta = meta.model_copy(update={"member_count": len(written)})
        role = "admin"
        if pair is not None:
            mark_blocks(consent, store, chat_id, caller.user_id, frame.members[0])
    except ChatExists:
        # Only a direct chat's id can collide: answer with the chat both sides already have.
        existing = store.get_chat(chat_id)
        existing_role = store.members.role_of(chat_id, caller.user_id)
        if existing is None or existing_role is None:
            raise NotFound("chat could not be read back") from None
        meta, role = existing, existing_role
    if later and jobs is not None:
        enqueue_adds(jobs, chat_id, caller.user_id, later)
    answer = chat_frame(frame.request_id, meta, "admin" if role == "admin" else "member", not_added or None)
    return answer.model_copy(update={"pending_members": len(later) or None})


def list_chats(listing: ChatListing, pool: Executor, caller: Caller, frame: ListChatsFrame) -> ChatsFrame:
    """A page of the caller's chats (PROTOCOL.md v1.1): at most CHATS_PAGE, and fewer when their
    names would take the frame past ANSWER_BUDGET_BYTES bytes (`next` then resumes after the last)."""
    listed, last = listing.page(caller.user_id, frame.cursor, CHATS_PAGE, pool)
    entries = [
        ChatEntry(
            chat_id=chat.chat_id,
            kind="direct" if chat.kind == "direct" else "group",
            name=chat.name,
            head=chat.head,
            role="admin" if chat.role == "admin" else "member",
        )
        for chat in listed
    ]
    empty = ChatsFrame(request_id=frame.request_id, chats=[], next=frame.cursor)
    fit = fitting(empty, entries, ANSWER_BUDGET_BYTES)
    if fit < len(entries):
        entries = entries[:fit]
        last = entries[-1].chat_id if entries else frame.cursor
    return ChatsFrame(request_id=frame.request_id, chats=entries, next=last)


def chat_frame(
    request_id: str, chat: ChatMeta, role: Literal["admin", "member"], not_added: list[str] | None = None
) -> ChatFrame:
    return ChatFrame(
        not_added=not_added,
        request_id=request_id,
        chat_id=chat.chat_id,
        kind=chat.kind,
        name=chat.name,
        created_at=chat.created_at,
        member_count=chat.member_count,
        role=role,
    )
