"""deliver: push a delivery-queue envelope (a large group's fan-out, or a retry) to its recipients.

Every recipient is pushed in parallel and on its own (logic/push.py): a failed one goes back on
the queue alone with a longer delay, a gone one loses its connection record, and after the last
attempt it is dropped (its device syncs). A presence push is dropped, not delivered late, once the
watched user's state has moved on, so a retry never overwrites a newer status.
"""

from __future__ import annotations

from chat_backend.dal.presence_store import PresenceStore
from chat_backend.logic.push import Pusher, PushResult
from chat_backend.models.queue_payloads import DeliveryEnvelope


def deliver(envelope: DeliveryEnvelope, pusher: Pusher, presence: PresenceStore) -> PushResult:
    if envelope.presence is not None:
        state = presence.state_of(envelope.presence.user_id)
        if state is None or state.version != envelope.presence.version:
            return PushResult(dropped=len(envelope.recipients))
    return pusher.push(envelope.frame, envelope.recipients, envelope.attempt, envelope.presence)
