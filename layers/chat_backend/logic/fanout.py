"""Fan-out of a stored message: members x live connections -> chunked delivery envelopes.

Runs off the messages stream, so the send path stays O(1) whatever the group size. Members are
read a page at a time and their connections looked up 100 users per call; offline members cost
one key lookup and nothing more (they catch up with sync).
"""

from __future__ import annotations

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.models import DeliveryEnvelope, Recipient, StoredMessage

RECIPIENTS_PER_ENVELOPE = 100


def recipients_of(store: ChatStore, registry: ConnectionRegistry, message: StoredMessage) -> list[Recipient]:
    """Every connected device of every member, except the device that sent the message."""
    recipients: list[Recipient] = []
    for page in store.member_pages(message.chat_id):
        for user_id, devices in registry.devices_of(page).items():
            recipients.extend(
                Recipient(user_id=user_id, device_id=device_id, connection_id=connection_id)
                for device_id, connection_id in sorted(devices.items())
                if not (user_id == message.sender and device_id == message.sender_device)
            )
    return recipients


def fan_out(
    store: ChatStore, registry: ConnectionRegistry, queue: DeliveryQueue, message: StoredMessage
) -> int:
    """Enqueue the message for its online recipients; returns how many envelopes it took.

    One FIFO group per chat keeps every recipient's order; the dedup id makes a retried stream
    record enqueue nothing twice.
    """
    recipients = recipients_of(store, registry, message)
    frame = message.to_frame().to_json()
    envelopes = [
        (
            message.chat_id,
            f"{message.chat_id}:{message.seq}:{n}",
            DeliveryEnvelope(frame=frame, recipients=recipients[start : start + RECIPIENTS_PER_ENVELOPE]),
        )
        for n, start in enumerate(range(0, len(recipients), RECIPIENTS_PER_ENVELOPE))
    ]
    queue.enqueue(envelopes)
    return len(envelopes)
