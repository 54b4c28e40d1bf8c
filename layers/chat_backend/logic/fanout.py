"""Fan-out of stored messages: members x live connections -> chunked delivery envelopes.

Runs off the messages stream, so the send path stays O(1) whatever the group size. A whole
stream batch is fanned out together: each chat's members are read once, the connections of all
their members are looked up 100 users per call, and envelopes go to SQS 10 per call, so the
calls per message fall as load rises. Offline members cost one key lookup and nothing more
(they catch up with sync).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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


class MemberListCache:
    """Member lists by (chatId, membership version), kept across invocations of a warm function.

    A version names exactly one member list (every change bumps it), so a cached list is never
    stale: a 10,000-member group's list is read once per membership change, not once per
    message. Bounded by the number of member ids held; the least recently used lists go first.
    """

    def __init__(self, max_members: int = 200_000) -> None:
        self.max_members = max_members
        self._lists: OrderedDict[tuple[str, int], list[str]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def members(self, store: ChatStore, chat_id: str, version: int | None) -> list[str]:
        if version is None:  # stored before versions existed: read it
            return members_of(store, chat_id)
        key = (chat_id, version)
        with self._lock:
            if key in self._lists:
                self._lists.move_to_end(key)
                return self._lists[key]
        members = members_of(store, chat_id)
        with self._lock:
            if key not in self._lists:
                self._lists[key] = members
                self._held += len(members)
            while self._held > self.max_members and len(self._lists) > 1:
                _, evicted = self._lists.popitem(last=False)
                self._held -= len(evicted)
        return members


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
    cache: MemberListCache | None = None,
) -> int:
    """Enqueue the messages for their online recipients, each chat in seq order (stream records
    are ordered per item, not per chat). Returns how many envelopes it took.

    The chats' member lists are read concurrently on `pool`: a busy stream batch spans many chats.
    """
    ordered = sorted(messages, key=lambda m: (m.chat_id, m.seq))
    cache = cache or MemberListCache()
    lists = list(dict.fromkeys((m.chat_id, m.members_version) for m in ordered))
    members = dict(zip(lists, pool.map(lambda key: cache.members(store, *key), lists), strict=True))
    # A removal's announcement also goes to those it removed: the last thing they get of the chat.
    audience = {
        (m.chat_id, m.seq): list(dict.fromkeys([*members[(m.chat_id, m.members_version)], *removed_by(m)]))
        for m in ordered
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
