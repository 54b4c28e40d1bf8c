"""Consent (PROTOCOL.md v1.1, "Consent and privacy"): blocks and who may add a user to groups.

A blocked user reaches the blocker with nothing: in their direct chat the blocked user's messages
are stored (and ACKed: the sender cannot tell) but are a VOID to the blocker (the chat's META
carries `blockedBy`, which the send's own reservation returns, so this costs the send nothing);
its typing, receipts and presence changes are not pushed to anyone who blocks it (one Query of
the actor's BLOCKEDBY# items); it gets none of the blocker's one-time prekeys, cannot see the
blocker's presence, and cannot add the blocker to a group. No answer to the blocked user differs
from one it could get for another reason: a block is invisible.
"""

from __future__ import annotations

from concurrent.futures import Executor

from chat_backend.dal.chat_keys import direct_chat_id
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.presence_store import PresenceStore
from chat_backend.errors import BadRequest
from chat_backend.models.client_frames import BlockFrame, SetPrivacyFrame
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta
from chat_backend.models.server_frames import OkFrame


def block(
    consent: ConsentStore,
    chats: ChatStore,
    presence: PresenceStore,
    caller: Caller,
    frame: BlockFrame,
    now_ms: int,
) -> OkFrame:
    """`block` / `unblock`: idempotent, and the same OK whether the other user exists or not. A
    block also ends the blocked user's subscriptions to the blocker's presence."""
    if frame.user_id == caller.user_id:
        raise BadRequest("a user cannot block itself")
    blocking = frame.action == "block"
    if blocking:
        consent.block(caller.user_id, frame.user_id, now_ms)
    else:
        consent.unblock(caller.user_id, frame.user_id)
    # After the block items: a direct chat created concurrently reads them once it exists
    # (`mark_blocks`), so one of the two always marks it.
    chats.set_blocked(direct_chat_id(caller.user_id, frame.user_id), caller.user_id, blocking)
    if blocking:
        presence.drop_subscriber(caller.user_id, frame.user_id)
    return OkFrame(request_id=frame.request_id)


def set_privacy(consent: ConsentStore, caller: Caller, frame: SetPrivacyFrame) -> OkFrame:
    consent.set_group_add(caller.user_id, frame.group_add)
    return OkFrame(request_id=frame.request_id)


def blockers_of(consent: ConsentStore, chat: ChatMeta, user_id: str) -> frozenset[str] | set[str]:
    """Who, among the chat's members, blocks `user_id`: a direct chat's META says it (no read);
    for a group, one Query of the user's BLOCKEDBY# items."""
    if chat.kind == "direct":
        return chat.blocked_by - {user_id}
    return consent.blockers_of(user_id)


def mark_blocks(consent: ConsentStore, chats: ChatStore, chat_id: str, creator: str, other: str) -> None:
    """A direct chat just created: mark either side's block of the other on its META."""
    if other in consent.blocked_users(creator):
        chats.set_blocked(chat_id, creator, True)
    if other in consent.blockers_of(creator):
        chats.set_blocked(chat_id, other, True)


def presence_visible(chats: ChatStore, pool: Executor, viewer: str, others: list[str]) -> set[str]:
    """Those of `others` whose presence `viewer` may see: a user who chose a direct chat with the
    viewer (created it, or sent a message in it) and does not block the viewer; and the viewer
    itself. A chat someone else made, a group included, opens nothing: presence is consent."""

    def sees(other: str) -> bool:
        if other == viewer:
            return True
        chat = chats.get_chat(direct_chat_id(viewer, other))
        return chat is not None and other in chat.engaged and other not in chat.blocked_by

    return {other for other, seen in zip(others, pool.map(sees, others), strict=True) if seen}


def addable(
    consent: ConsentStore, chats: ChatStore, pool: Executor, adder: str, users: list[str]
) -> tuple[list[str], list[str]]:
    """(who `adder` may put in a group, who is left out): out are those who block the adder, whose
    `groupAdd` is "nobody", or "chatted" with no direct chat with the adder."""
    if not users:
        return [], []
    blockers = consent.blockers_of(adder)
    settings = consent.group_add_of([u for u in users if u not in blockers], pool)
    chatted = [u for u, setting in settings.items() if setting == "chatted"]
    have_direct = dict(
        zip(
            chatted,
            pool.map(lambda u: chats.get_chat(direct_chat_id(adder, u)) is not None, chatted),
            strict=True,
        )
    )

    def allowed(user: str) -> bool:
        setting = settings.get(user)
        return setting == "everyone" or (setting == "chatted" and have_direct[user])

    return [u for u in users if allowed(u)], [u for u in users if not allowed(u)]
