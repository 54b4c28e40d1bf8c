"""Membership changes: how one chunk of an add or a removal is ordered and committed.

A membership change is appended to the chat as a system message at its own seq, so every device
sees it in the chat's order, and it is ordered against sends by the chat's counter
(`dal/sequencer.py`): the change reserves its seq with the membership version it was decided at
and marks itself in flight, which holds every later send back until the change's transaction
(announcement + member items + count) commits. A send reserved before it is sequenced before it;
a removed member's later send reads the new membership and is refused. So no message of a removed
member is sequenced after its removal, and the 10,000-member limit holds under concurrent adds
(one change at a time, each decided on the membership it commits over).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Literal

from chat_backend.backoff import Backoff, Sleep
from chat_backend.dal.chat_store import ChatStore
from chat_backend.errors import (
    BadRequest,
    ChangeConflict,
    ChangeLost,
    Forbidden,
    GroupFull,
    MembershipMoved,
    RateLimited,
)
from chat_backend.logic import holes
from chat_backend.logic.send import Ledger
from chat_backend.models.common import MAX_GROUP_MEMBERS, SYSTEM_SENDER, iso_at, new_server_msg_id
from chat_backend.models.records import ChatMeta, PendingChange, StoredMessage

# One transaction holds the META update, the announcement and the member items (100 at most);
# a removal deletes the member item and the member's receipt watermarks and puts its former window.
MEMBERS_PER_ADD = 95
MEMBERS_PER_REMOVAL = 32
MAX_ATTEMPTS = 12
COMMIT_ATTEMPTS = 4  # a change's transaction meeting another operation on its items
RETRY = Backoff(first_s=0.005, max_s=0.2)  # before deciding or committing again

MembershipEvent = Literal["added", "removed"]


def announcement(
    chat_id: str,
    seq: int,
    event: MembershipEvent,
    members: list[str],
    by: str,
    members_version: int,
    at: float,
    promoted: str | None = None,
) -> StoredMessage:
    """The system message of a membership change (PROTOCOL.md, Chats), stored under the
    membership it makes; `promoted` names the member made admin when the last admin left."""
    event_body: dict[str, object] = {"event": event, "members": members, "by": by}
    if promoted is not None:
        event_body["promoted"] = [promoted]
    body = json.dumps(event_body, separators=(",", ":"))
    return StoredMessage(
        chat_id=chat_id,
        seq=seq,
        server_msg_id=new_server_msg_id(seq),
        sender=SYSTEM_SENDER,
        sender_device=None,
        ciphertext=body.encode(),
        media_ids=[],
        created_at=iso_at(at),
        members_version=members_version,
    )


def change_members(
    ledger: Ledger,
    by: str,
    chat_id: str,
    users: list[str],
    event: MembershipEvent,
    grace_s: float,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = time.sleep,
) -> ChatMeta:
    """Apply one chunk as `by` asks: decide from a consistent read, reserve the seq at that
    membership, commit; decide again if the membership moved or the change could not commit."""
    self_leave = event == "removed" and users == [by]
    for attempt in range(MAX_ATTEMPTS):
        context = ledger.chats.members.membership(chat_id, [by, *users])
        chat = check_can_change(context.chat, context.roles, by, chat_id, self_leave)
        if chat.change is not None:  # another change in flight: wait for it, or end it if it died
            if not holes.abandon_stale_change(
                ledger.messages, ledger.sequencer, chat, int(clock() * 1000), grace_s
            ):
                RETRY.pause(attempt, sleep)
            continue
        if event == "added":
            changed = [u for u in users if u not in context.roles]
            if chat.member_count + len(changed) > MAX_GROUP_MEMBERS:
                raise GroupFull(f"a group holds at most {MAX_GROUP_MEMBERS} members")
        else:
            changed = [u for u in users if u in context.roles]
        if not changed:
            return chat  # nothing to do: adding members again, removing non-members
        token = uuid.uuid4().hex
        try:
            seq = ledger.sequencer.begin_change(chat_id, chat.members_version, token, int(clock() * 1000))
        except MembershipMoved:
            RETRY.pause(attempt, sleep)
            continue
        # Read while our change is the one in flight: no other change can move the members now.
        promoted = _successor(ledger.chats, chat_id, set(changed)) if event == "removed" else None
        message = announcement(chat_id, seq, event, changed, by, chat.members_version + 1, clock(), promoted)
        added = {u: "member" for u in changed} if event == "added" else {}
        removed = {u: context.starts[u] for u in changed} if event == "removed" else {}
        if not _commit(ledger, chat, token, message, added, removed, clock, sleep, promoted):
            continue
        return chat.model_copy(
            update={
                "head_seq": seq,
                "member_count": chat.member_count + len(added) - len(removed),
                "members_version": chat.members_version + 1,
                "change": None,
            }
        )
    raise RateLimited(f"chat {chat_id} is busy with other membership changes; try again", 500)


def _successor(chats: ChatStore, chat_id: str, leaving: set[str]) -> str | None:
    """When the last admin leaves, the longest-standing member who stays becomes admin (the
    earliest join; the creation's members by userId); None when an admin stays or nobody does."""
    staying = [
        (joined, user, role) for joined, user, role in chats.members.standings(chat_id) if user not in leaving
    ]
    if not staying or any(role == "admin" for _, _, role in staying):
        return None
    return staying[0][1]


def _commit(
    ledger: Ledger,
    chat: ChatMeta,
    token: str,
    message: StoredMessage,
    added: dict[str, str],
    removed: dict[str, int],
    clock: Callable[[], float],
    sleep: Sleep,
    promoted: str | None = None,
) -> bool:
    """The change's transaction, retried while it only met other operations on its items. A
    change that cannot commit fills its own seq (so nothing can land there later) and ends."""
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            ledger.chats.members.commit_change(chat, token, message, added, removed, promoted)
            return True
        except ChangeLost:
            return False
        except ChangeConflict:
            RETRY.pause(attempt, sleep)
    pending = chat.model_copy(update={"change": _pending(token, message.seq)})
    holes.fill_hole(ledger.messages, ledger.sequencer, pending, message.seq, int(clock() * 1000))
    return False


def _pending(token: str, seq: int) -> PendingChange:
    return PendingChange(token=token, seq=seq, at_ms=0)


def check_can_change(
    chat: ChatMeta | None, roles: dict[str, str], by: str, chat_id: str, self_leave: bool
) -> ChatMeta:
    if chat is None or by not in roles:
        raise Forbidden(f"not a member of {chat_id}")
    if chat.kind == "direct":
        raise BadRequest("a direct chat's members cannot change")
    if roles[by] != "admin" and not self_leave:
        raise Forbidden(f"only admins change the members of {chat_id}; a member may remove itself")
    return chat
