"""addMembers / removeMembers / getMembers: the routes. Each chunk of an add or a removal is one
membership change (`logic/membership_changes.py`); an add too large for one invocation goes on
as a member job (`logic/member_jobs.py`)."""

from __future__ import annotations

from concurrent.futures import Executor

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.delivery_queue import FifoQueue
from chat_backend.errors import Forbidden, GroupFull
from chat_backend.logic.chats import chat_frame
from chat_backend.logic.consent import addable
from chat_backend.logic.member_jobs import TimeLeft, add_in_time, enqueue_adds, no_deadline
from chat_backend.logic.membership_changes import MEMBERS_PER_REMOVAL, change_members, check_can_change
from chat_backend.logic.send import Ledger
from chat_backend.models.client_frames import AddMembersFrame, GetMembersFrame, RemoveMembersFrame
from chat_backend.models.common import MAX_GROUP_MEMBERS
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta
from chat_backend.models.server_frames import ChatFrame, MemberEntry, MembersFrame

MEMBERS_PAGE = 500


def add_members(
    ledger: Ledger,
    consent: ConsentStore,
    pool: Executor,
    caller: Caller,
    frame: AddMembersFrame,
    grace_s: float,
    jobs: FifoQueue | None = None,
    time_left: TimeLeft = no_deadline,
) -> ChatFrame:
    """Those the caller may not add (a block, their `groupAdd`) are left out and listed in
    `notAdded`; members already in change nothing. What cannot be added before the invocation's
    time runs out goes to a member job (`logic/member_jobs.py`), counted in `pendingMembers`."""
    context = ledger.chats.members.membership(frame.chat_id, [caller.user_id, *frame.members])
    chat = check_can_change(context.chat, context.roles, caller.user_id, frame.chat_id, self_leave=False)
    users, not_added = addable(
        consent, ledger.chats, pool, caller.user_id, [u for u in frame.members if u not in context.roles]
    )
    # Several transactions: an add that cannot fit is refused whole, before the first of them.
    # (Each transaction also decides and checks the limit itself, in `change_members`.)
    if chat.member_count + len(users) > MAX_GROUP_MEMBERS:
        raise GroupFull(f"a group holds at most {MAX_GROUP_MEMBERS} members")
    added, rest = add_in_time(
        ledger, caller.user_id, frame.chat_id, users, grace_s, time_left if jobs else no_deadline
    )
    if rest and jobs is not None:
        enqueue_adds(jobs, frame.chat_id, caller.user_id, rest)
    answer = chat_frame(frame.request_id, added or chat, "admin", not_added or None)
    return answer.model_copy(update={"pending_members": len(rest) or None})


def remove_members(ledger: Ledger, caller: Caller, frame: RemoveMembersFrame, grace_s: float) -> ChatFrame:
    chat: ChatMeta | None = None
    for start in range(0, len(frame.members), MEMBERS_PER_REMOVAL):
        chunk = frame.members[start : start + MEMBERS_PER_REMOVAL]
        chat = change_members(ledger, caller.user_id, frame.chat_id, chunk, "removed", grace_s)
    assert chat is not None  # members has at least one entry
    left = caller.user_id in frame.members
    return chat_frame(frame.request_id, chat, "member" if left else "admin")


def get_members(store: ChatStore, caller: Caller, frame: GetMembersFrame) -> MembersFrame:
    if store.members.role_of(frame.chat_id, caller.user_id) is None:
        raise Forbidden(f"not a member of {frame.chat_id}")
    page, last = store.members.page(frame.chat_id, frame.cursor, MEMBERS_PAGE)
    return MembersFrame(
        request_id=frame.request_id,
        chat_id=frame.chat_id,
        members=[MemberEntry(user_id=u, role="admin" if r == "admin" else "member") for u, r in page],
        next=last,
    )
