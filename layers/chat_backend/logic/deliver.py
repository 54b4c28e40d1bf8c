"""deliver: push an envelope's frame to each recipient connection, with bounded concurrency.

A 410 means the recipient's connection is gone: its record is removed (only if it still names
that connection) and the message waits in the store for the device's next sync. Any other
failure fails the envelope, so the queue retries it; duplicates on the wire are dropped by the
SDK by (chatId, seq).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.errors import ConnectionGone
from chat_backend.models import DeliveryEnvelope, Recipient


def deliver(
    envelope: DeliveryEnvelope,
    poster: ConnectionPoster,
    registry: ConnectionRegistry,
    pool: ThreadPoolExecutor,
) -> int:
    """Returns how many connections were gone."""

    def push(recipient: Recipient) -> bool:
        try:
            poster.post(recipient.connection_id, envelope.frame)
        except ConnectionGone:
            registry.unregister(recipient.user_id, recipient.device_id, recipient.connection_id)
            return True
        return False

    if len(envelope.recipients) == 1:  # the common 1:1 case: no thread hop
        return int(push(envelope.recipients[0]))
    return sum(pool.map(push, envelope.recipients))
