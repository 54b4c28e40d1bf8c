"""addMembers / removeMembers / getMembers.

Every membership change is one transaction that also appends a system message at the chat's
next seq, so every device sees the change in the chat's order, and that only succeeds from the
head it was decided at: a concurrent send or membership change makes it re-read and decide again.
That is what keeps the 10,000-member limit under concurrent adds, and what stops a removed member
from sending (its send sees the head move and the membership version change, and re-checks).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Literal

from chat_backend.dal.chat_store import ChatStore, HeadMoved
from chat_backend.errors import BadRequest, Forbidden, GroupFull, RateLimited
from chat_backend.logic.chats import chat_frame
from chat_backend.logic.send import new_server_msg_id
from chat_backend.models import (
    MAX_GROUP_MEMBERS,
    AddMembersFrame,
    Caller,
    ChatFrame,
    ChatMeta,
    GetMembersFrame,
    MemberEntry,
    MembersFrame,
    RemoveMembersFrame,
    StoredMessage,
    now_iso,
)

SYSTEM_SENDER = "system"
# One transaction holds the META update, the announcement and the member items (100 at most);
# a removal also deletes the member's receipt watermarks.
MEMBERS_PER_ADD = 95
MEMBERS_PER_REMOVAL = 45
MEMBERS_PAGE = 500
MAX_ATTEMPTS = 12

MembershipEvent = Literal["added", "removed"]


def announcement(
    chat_id: str, seq: int, event: MembershipEvent, members: list[str], by: str, members_version: int
) -> StoredMessage:
    """The system message of a membership change (PROTOCOL.md, Chats), stored under the
    membership it makes."""
    body = json.dumps({"event": event, "members": members, "by": by}, separators=(",", ":"))
    return StoredMessage(
        chat_id=chat_id,
        seq=seq,
        server_msg_id=new_server_msg_id(seq),
        sender=SYSTEM_SENDER,
        sender_device=None,
        ciphertext=body.encode(),
        media_ids=[],
        created_at=now_iso(),
        members_version=members_version,
    )


def removed_by(message: StoredMessage) -> list[str]:
    """The members a system message removed (they still get that message pushed)."""
    if message.sender != SYSTEM_SENDER:
        return []
    try:
        body = json.loads(message.ciphertext)
    except ValueError:
        return []
    return list(body.get("members", [])) if body.get("event") == "removed" else []


def add_members(store: ChatStore, caller: Caller, frame: AddMembersFrame) -> ChatFrame:
    users = list(frame.members)
    chat: ChatMeta | None = None
    if len(users) > MEMBERS_PER_ADD:
        # Several transactions: an add that cannot fit is refused whole, before the first of them.
        # (One transaction decides and checks the limit itself, in `_change`.)
        context = store.membership(frame.chat_id, [caller.user_id, *users])
        chat = _check_can_change(context.chat, context.roles, caller, frame.chat_id, self_leave=False)
        users = [u for u in users if u not in context.roles]
        if chat.member_count + len(users) > MAX_GROUP_MEMBERS:
            raise GroupFull(f"a group holds at most {MAX_GROUP_MEMBERS} members")
    for start in range(0, len(users), MEMBERS_PER_ADD):
        chat = _change(store, caller, frame.chat_id, users[start : start + MEMBERS_PER_ADD], "added")
    assert chat is not None  # members has at least one entry, or the whole-add check read the chat
    return chat_frame(frame.request_id, chat, "admin")


def remove_members(store: ChatStore, caller: Caller, frame: RemoveMembersFrame) -> ChatFrame:
    chat: ChatMeta | None = None
    for start in range(0, len(frame.members), MEMBERS_PER_REMOVAL):
        chat = _change(
            store, caller, frame.chat_id, frame.members[start : start + MEMBERS_PER_REMOVAL], "removed"
        )
    assert chat is not None  # members has at least one entry
    left = caller.user_id in frame.members
    return chat_frame(frame.request_id, chat, "member" if left else "admin")


def get_members(store: ChatStore, caller: Caller, frame: GetMembersFrame) -> MembersFrame:
    if store.role_of(frame.chat_id, caller.user_id) is None:
        raise Forbidden(f"not a member of {frame.chat_id}")
    page, last = store.member_page(frame.chat_id, frame.cursor, MEMBERS_PAGE)
    return MembersFrame(
        request_id=frame.request_id,
        chat_id=frame.chat_id,
        members=[MemberEntry(user_id=u, role="admin" if r == "admin" else "member") for u, r in page],
        next=last,
    )


def _change(
    store: ChatStore,
    caller: Caller,
    chat_id: str,
    users: list[str],
    event: MembershipEvent,
    sleep: Callable[[float], None] = time.sleep,
) -> ChatMeta:
    """Apply one chunk: decide from a consistent read, write from that head, re-read on a race."""
    self_leave = event == "removed" and users == [caller.user_id]
    for attempt in range(MAX_ATTEMPTS):
        context = store.membership(chat_id, [caller.user_id, *users])
        chat = _check_can_change(context.chat, context.roles, caller, chat_id, self_leave)
        if event == "added":
            changed = [u for u in users if u not in context.roles]
            if chat.member_count + len(changed) > MAX_GROUP_MEMBERS:
                raise GroupFull(f"a group holds at most {MAX_GROUP_MEMBERS} members")
        else:
            changed = [u for u in users if u in context.roles]
        if not changed:
            return chat  # nothing to do: adding members again, removing non-members
        message = announcement(
            chat_id, chat.head_seq + 1, event, changed, caller.user_id, chat.members_version + 1
        )
        added = {u: "member" for u in changed} if event == "added" else {}
        removed = changed if event == "removed" else []
        try:
            store.change_members(chat, message, added, removed)
        except HeadMoved:
            sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
            continue
        return chat.model_copy(
            update={
                "head_seq": message.seq,
                "member_count": chat.member_count + len(added) - len(removed),
                "members_version": chat.members_version + 1,
            }
        )
    raise RateLimited(f"chat {chat_id} is busy; try again")


def _check_can_change(
    chat: ChatMeta | None, roles: dict[str, str], caller: Caller, chat_id: str, self_leave: bool
) -> ChatMeta:
    if chat is None or caller.user_id not in roles:
        raise Forbidden(f"not a member of {chat_id}")
    if chat.kind == "direct":
        raise BadRequest("a direct chat's members cannot change")
    if roles[caller.user_id] != "admin" and not self_leave:
        raise Forbidden(f"only admins change the members of {chat_id}; a member may remove itself")
    return chat


def visible_to(store: ChatStore, pool: Executor, user_id: str, others: list[str]) -> set[str]:
    """Those of `others` who share a chat with the user (a user who does not exist shares none)."""
    if not others:
        return set()
    mine = set(store.chat_ids_of(user_id))
    if not mine:
        return set()
    theirs = pool.map(store.chat_ids_of, others)
    return {other for other, chats in zip(others, theirs, strict=True) if mine.intersection(chats)}
