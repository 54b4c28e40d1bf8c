"""Live delivery in one hop: the function that stores or makes a frame pushes it to the members'
online devices itself, before it answers.

On AWS the stream (polled 4 times a second) and a queue hop each cost hundreds of milliseconds at
p99; a small chat's message goes out from the send function right after its commit instead.
Large groups keep the durable path (stream -> fan-out -> delivery queue), and any recipient
whose push fails is retried through the queue alone (logic/push.py). The store stays the truth:
the ACK is answered after the message is stored, whatever happens to the pushes.
"""

from __future__ import annotations

from chat_backend.dal.delivery_queue import NotifyQueue
from chat_backend.logic.audience import members_at
from chat_backend.logic.notifications import enqueue_offline, offline_jobs
from chat_backend.logic.push import Pusher, PushResult, push_to_connected, push_to_members
from chat_backend.logic.send import Ledger, SendPolicy, Sent, send_message
from chat_backend.models.client_frames import SendFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import AckFrame, VoidFrame


def send_and_push(
    ledger: Ledger, pusher: Pusher, notify: NotifyQueue, caller: Caller, frame: SendFrame, policy: SendPolicy
) -> AckFrame:
    """Store the message (exactly once), push it to the online members of a small chat, answer ACK.
    A duplicate pushes again: its first attempt may have died between the commit and the push
    (the SDK drops what it already has)."""
    sent = send_message(ledger, caller, frame, policy)
    push_sent(ledger, pusher, sent, notify)
    return sent.ack


def push_sent(ledger: Ledger, pusher: Pusher, sent: Sent, notify: NotifyQueue | None = None) -> PushResult:
    """Push a stored message to its small chat's connected devices; members with none connected
    go to `notify` (mobile push)."""
    message = sent.message
    if message.fanout != "direct":
        return PushResult()  # the stream's fan-out pushes it
    audience = sent.audience
    if audience is None:  # a duplicate: the members of the version it was stored under
        version = message.members_version or 0
        audience = members_at(
            ledger.chats, ledger.messages, ledger.member_lists, message.chat_id, version, message.seq
        )
    shown = [m for m in audience if m not in message.hidden_from]
    result, devices = push_to_connected(
        pusher, message.to_frame().to_json(), shown, message.sender, message.sender_device
    )
    if notify is not None:
        # A user whose every connection turned out gone (410) is as offline as one with none.
        connected = {
            user
            for user, connections in devices.items()
            if any(c not in result.gone_connections for c in connections.values())
        }
        enqueue_offline(
            notify, offline_jobs(message.chat_id, message.seq, shown, connected, message.sender, False)
        )
    hidden = [m for m in audience if m in message.hidden_from]
    if hidden:  # a member who blocks the sender sees the seq pass as a VOID
        void = VoidFrame(chat_id=message.chat_id, seq=message.seq).to_json()
        result = result + push_to_members(pusher, void, hidden, None, None)
    return result
