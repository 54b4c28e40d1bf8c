"""typing: relay "user is typing" to the chat's other members' connected devices. Never stored.

It rides the delivery queue like a message (same envelopes, same chat FIFO group, same pushes
and 410 handling), so a typing notice never overtakes a message sent before it.
"""

from __future__ import annotations

import uuid

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.errors import Forbidden
from chat_backend.logic.fanout import envelopes_for, members_of, recipients_of
from chat_backend.models import Caller, TypingFrame, TypingNoticeFrame


def relay_typing(
    store: ChatStore, registry: ConnectionRegistry, queue: DeliveryQueue, caller: Caller, frame: TypingFrame
) -> None:
    members = members_of(store, frame.chat_id)  # also answers whether the caller is in the chat
    if caller.user_id not in members:
        raise Forbidden(f"not a member of {frame.chat_id}")
    recipients = recipients_of(members, registry.devices_of(members), caller.user_id, None)
    notice = TypingNoticeFrame(chat_id=frame.chat_id, user_id=caller.user_id).to_json()
    queue.enqueue(envelopes_for(frame.chat_id, f"typing:{uuid.uuid4().hex}", notice, recipients))
