"""send: assign the next seq in the chat and store the message, exactly once per clientMsgId."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from chat_backend.dal.chat_store import ChatStore, DuplicateSend, HeadMoved, MediaNotInChat
from chat_backend.errors import Forbidden, NotFound, RateLimited
from chat_backend.models import AckFrame, Caller, ChatMeta, SendFrame, SendRecord, StoredMessage, now_iso

MAX_ATTEMPTS = 12


def new_server_msg_id(seq: int) -> str:
    """`m_<seq>_<random>`: a per-message receipt names a message by this id alone, and the seq in
    it locates the message with one key read (the stored id must match), with no index on ids."""
    return f"m_{seq}_{uuid.uuid4().hex[:24]}"


def seq_of_server_msg_id(server_msg_id: str) -> int | None:
    """The seq a server message id claims (to be checked against the stored message)."""
    parts = server_msg_id.split("_")
    if len(parts) == 3 and parts[0] == "m" and parts[1].isdigit():
        return int(parts[1])
    return None


def send_message(
    store: ChatStore,
    caller: Caller,
    frame: SendFrame,
    dedup_ttl_s: int,
    sleep: Callable[[float], None] = time.sleep,
) -> AckFrame:
    """One read (head, membership, earlier answer), then one transaction per attempt. A lost race
    returns the winner's head, so the retry needs no re-read; a duplicate answers the stored ACK."""
    context = _member_context(store, caller, frame)
    if context.previous is not None:
        return _ack(frame, context.previous)
    head = context.chat.head_seq
    for attempt in range(MAX_ATTEMPTS):
        created_at = now_iso()
        message = StoredMessage(
            chat_id=frame.chat_id,
            seq=head + 1,
            server_msg_id=new_server_msg_id(head + 1),
            sender=caller.user_id,
            sender_device=caller.device_id,
            ciphertext=frame.ciphertext_bytes,
            media_ids=list(frame.media_ids),
            created_at=created_at,
            members_version=context.chat.members_version,
        )
        try:
            store.append_message(message, frame.client_msg_id, int(time.time()) + dedup_ttl_s)
        except MediaNotInChat as exc:
            # Unknown, or another chat's: either way nothing was stored.
            raise NotFound(f"a mediaId of this message is not media of {frame.chat_id}") from exc
        except DuplicateSend:
            previous = store.previous_send(frame.chat_id, caller.user_id, frame.client_msg_id)
            if previous is not None:
                return _ack(frame, previous)
        except HeadMoved as moved:
            if moved.head_seq is not None and moved.members_version == context.chat.members_version:
                head = moved.head_seq  # retry at once above the winner
                continue
            if moved.head_seq is None:
                # Contention without a head (a conflicting transaction): back off first.
                sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
            # Read again: without a head, or when the membership changed (the sender may be out).
            context = _member_context(store, caller, frame)
            if context.previous is not None:
                return _ack(frame, context.previous)
            head = context.chat.head_seq
        else:
            record = SendRecord(server_msg_id=message.server_msg_id, seq=message.seq, created_at=created_at)
            return _ack(frame, record)
    raise RateLimited(f"chat {frame.chat_id} is busy; retry with the same clientMsgId")


@dataclass(frozen=True)
class _MemberContext:
    chat: ChatMeta
    previous: SendRecord | None


def _member_context(store: ChatStore, caller: Caller, frame: SendFrame) -> _MemberContext:
    """The chat head and any earlier answer, or Forbidden when the caller is not a member."""
    context = store.send_context(frame.chat_id, caller.user_id, frame.client_msg_id)
    if context.chat is None or context.role is None:
        raise Forbidden(f"not a member of {frame.chat_id}")
    return _MemberContext(chat=context.chat, previous=context.previous)


def _ack(frame: SendFrame, record: SendRecord) -> AckFrame:
    return AckFrame(
        client_msg_id=frame.client_msg_id,
        chat_id=frame.chat_id,
        server_msg_id=record.server_msg_id,
        seq=record.seq,
        created_at=record.created_at,
    )
