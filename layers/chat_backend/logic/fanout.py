"""Fan-out of what the send path does not push itself: messages of large groups, membership
announcements and VOIDs (items stored with `fanout = queued`; the stream trigger's filter passes
only those).

A whole stream batch is fanned out together: each (chat, membership version)'s members are read
once (and kept in the warm function), the connections of all of them are looked up 100 users per
call in parallel, and the recipients go to the delivery queue in envelopes of 100, where the
delivery function pushes them in parallel. Offline members cost one key lookup and nothing more
(they catch up with sync).
"""

from __future__ import annotations

from collections.abc import Sequence

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.message_store import MessageStore
from chat_backend.logic.audience import MemberListCache, members_at, recipients_of, removed_by
from chat_backend.logic.push import Pusher, envelopes
from chat_backend.models import DeliveryEnvelope, Stored, StoredMessage


def fan_out(
    chats: ChatStore,
    messages: MessageStore,
    cache: MemberListCache,
    pusher: Pusher,
    items: Sequence[Stored],
) -> int:
    """Enqueue the items for their online recipients. Returns how many envelopes it took."""
    queued = [i for i in items if not isinstance(i, StoredMessage) or i.fanout == "queued"]
    ordered = sorted(queued, key=lambda i: (i.chat_id, i.seq))
    # One read per (chat, version), at its first item: any of them names the same list.
    first_seq: dict[tuple[str, int], int] = {}
    for item in ordered:
        first_seq.setdefault((item.chat_id, item.members_version or 0), item.seq)

    def read(key: tuple[str, int]) -> list[str]:
        return members_at(chats, messages, cache, key[0], key[1], first_seq[key])

    member_lists = dict(zip(first_seq, pusher.pool.map(read, list(first_seq)), strict=True))
    audience = {}
    for item in ordered:
        members = member_lists[(item.chat_id, item.members_version or 0)]
        # A removal's announcement also goes to those it removed: the last thing they get of the chat.
        removed = removed_by(item) if isinstance(item, StoredMessage) else []
        audience[(item.chat_id, item.seq)] = list(dict.fromkeys([*members, *removed]))
    users = sorted({user for members in audience.values() for user in members})
    devices = pusher.registry.devices_of(users, pusher.pool, consistent=True)
    batch: list[DeliveryEnvelope] = []
    for item in ordered:
        sender = item.sender if isinstance(item, StoredMessage) else None
        sender_device = item.sender_device if isinstance(item, StoredMessage) else None
        recipients = recipients_of(audience[(item.chat_id, item.seq)], devices, sender, sender_device)
        batch += envelopes(item.to_frame().to_json(), recipients)
    pusher.queue.enqueue(batch)
    return len(batch)
