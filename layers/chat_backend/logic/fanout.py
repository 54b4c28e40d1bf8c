"""Fan-out of stored messages: members x live connections -> chunked delivery envelopes.

Runs off the messages stream, so the send path stays O(1) whatever the group size. A whole
stream batch is fanned out together: each chat's members are read once, the connections of all
their members are looked up 100 users per call, and envelopes go to SQS 10 per call, so the
calls per message fall as load rises. Offline members cost one key lookup and nothing more
(they catch up with sync).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, Envelope
from chat_backend.logic.members import removed_by
from chat_backend.models import DeliveryEnvelope, Recipient, StoredMessage

RECIPIENTS_PER_ENVELOPE = 100
Devices = dict[str, dict[str, str]]  # userId -> {deviceId: connectionId}


def members_of(store: ChatStore, chat_id: str) -> list[str]:
    """Every member of the chat (all pages)."""
    return [user for page in store.member_pages(chat_id) for user in page]


def recipients_of(
    members: Sequence[str], devices: Devices, sender: str, sender_device: str | None
) -> list[Recipient]:
    """Every connected device of every member except the sender's `sender_device` (every device
    of the sender when it is None)."""
    return [
        Recipient(user_id=user_id, device_id=device_id, connection_id=connection_id)
        for user_id in members
        for device_id, connection_id in sorted(devices.get(user_id, {}).items())
        if not (user_id == sender and (sender_device is None or device_id == sender_device))
    ]


def envelopes_for(chat_id: str, dedup_prefix: str, frame: str, recipients: list[Recipient]) -> list[Envelope]:
    """One FIFO group per chat keeps every recipient's order; the dedup id (prefix + chunk) makes
    a retry enqueue nothing twice."""
    return [
        Envelope(
            group_id=chat_id,
            dedup_id=f"{dedup_prefix}:{n}",
            body=DeliveryEnvelope(
                frame=frame, recipients=recipients[start : start + RECIPIENTS_PER_ENVELOPE]
            ),
        )
        for n, start in enumerate(range(0, len(recipients), RECIPIENTS_PER_ENVELOPE))
    ]


def fan_out(
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    messages: Sequence[StoredMessage],
    pool: Executor,
) -> int:
    """Enqueue the messages for their online recipients, each chat in seq order (stream records
    are ordered per item, not per chat). Returns how many envelopes it took.

    The chats' member lists are read concurrently on `pool`: a busy stream batch spans many chats.
    """
    ordered = sorted(messages, key=lambda m: (m.chat_id, m.seq))
    chat_ids = list(dict.fromkeys(m.chat_id for m in ordered))

    members = dict(zip(chat_ids, pool.map(lambda chat_id: members_of(store, chat_id), chat_ids), strict=True))
    # A removal's announcement also goes to those it removed: the last thing they get of the chat.
    audience = {
        (m.chat_id, m.seq): list(dict.fromkeys([*members[m.chat_id], *removed_by(m)])) for m in ordered
    }
    devices = registry.devices_of(sorted({user for users in audience.values() for user in users}), pool)
    envelopes = [
        envelope
        for message in ordered
        for envelope in envelopes_for(
            message.chat_id,
            f"{message.chat_id}:{message.seq}",
            message.to_frame().to_json(),
            recipients_of(
                audience[(message.chat_id, message.seq)], devices, message.sender, message.sender_device
            ),
        )
    ]
    queue.enqueue(envelopes)
    return len(envelopes)
