"""typing: relay "user is typing" to the chat's other members' connected devices. Never stored.

In groups over the direct-push size, a chat's typing notices reach at most `wiring.TYPING_FANOUT`
devices a second (a bucket per chat), so 10,000 members typing cannot flood anyone.

Best effort and unordered: a TYPING notice travels on its own (pushed by the presence function
while a message travels from the send function), so it may arrive before or after a message the
same user sent around the same time; a client clears the typing state when that user's message
arrives. Small chats are pushed at once; large groups go through the delivery queue. The member
list comes from the warm function's cache (one read per membership version, not per keystroke).
"""

from __future__ import annotations

import random

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.errors import Forbidden, RateLimited
from chat_backend.logic.audience import MemberListCache, members_now, recipients_of
from chat_backend.logic.consent import blockers_of
from chat_backend.logic.push import Pusher, envelopes, push_to_members
from chat_backend.logic.rate_limits import Party, RateLimiter
from chat_backend.models.client_frames import TypingFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import TypingNoticeFrame
from chat_backend.observability import count
from chat_backend.wiring import TYPING_FANOUT


def relay_typing(
    chats: ChatStore,
    consent: ConsentStore,
    cache: MemberListCache,
    limiter: RateLimiter,
    pusher: Pusher,
    caller: Caller,
    frame: TypingFrame,
    direct_push_max_members: int,
) -> None:
    context = chats.members.membership(frame.chat_id, [caller.user_id])
    chat = context.chat
    if chat is None or caller.user_id not in context.roles:
        raise Forbidden(f"not a member of {frame.chat_id}")
    # Nobody who blocks the typist is told.
    blockers = blockers_of(consent, chat, caller.user_id)
    members = [m for m in members_now(chats, cache, chat) if m not in blockers]
    notice = TypingNoticeFrame(chat_id=frame.chat_id, user_id=caller.user_id).to_json()
    if chat.member_count <= direct_push_max_members:
        push_to_members(pusher, notice, members, caller.user_id, None)
        return
    devices = pusher.registry.devices_of(members, pusher.pool)
    recipients = recipients_of(members, devices, caller.user_id, None)
    if len(recipients) > TYPING_FANOUT.burst:
        recipients = random.sample(recipients, TYPING_FANOUT.burst)
    try:
        limiter.take(
            f"chat#{chat.chat_id}", "typing", [Party("devices", TYPING_FANOUT, cost=len(recipients))]
        )
    except RateLimited:
        count("TypingDropped")
        return
    pusher.queue.enqueue(envelopes(notice, recipients))
