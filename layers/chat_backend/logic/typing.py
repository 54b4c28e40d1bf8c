"""typing: relay "user is typing" to the chat's other members' connected devices. Never stored.

Best effort and unordered: a TYPING notice travels on its own (pushed by the presence function
while a message travels from the send function), so it may arrive before or after a message the
same user sent around the same time; a client clears the typing state when that user's message
arrives. Small chats are pushed at once; large groups go through the delivery queue. The member
list comes from the warm function's cache (one read per membership version, not per keystroke).
"""

from __future__ import annotations

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.errors import Forbidden
from chat_backend.logic.audience import MemberListCache, members_now, recipients_of
from chat_backend.logic.direct import push_to_members
from chat_backend.logic.push import Pusher, envelopes
from chat_backend.models.client_frames import TypingFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import TypingNoticeFrame


def relay_typing(
    chats: ChatStore,
    consent: ConsentStore,
    cache: MemberListCache,
    pusher: Pusher,
    caller: Caller,
    frame: TypingFrame,
    direct_push_max_members: int,
) -> None:
    context = chats.membership(frame.chat_id, [caller.user_id])
    chat = context.chat
    if chat is None or caller.user_id not in context.roles:
        raise Forbidden(f"not a member of {frame.chat_id}")
    # Nobody who blocks the typist is told.
    blockers = consent.blockers_of(caller.user_id)
    members = [m for m in members_now(chats, cache, chat) if m not in blockers]
    notice = TypingNoticeFrame(chat_id=frame.chat_id, user_id=caller.user_id).to_json()
    if chat.member_count <= direct_push_max_members:
        push_to_members(pusher, notice, members, caller.user_id, None)
        return
    devices = pusher.registry.devices_of(members, pusher.pool)
    pusher.queue.enqueue(envelopes(notice, recipients_of(members, devices, caller.user_id, None)))
