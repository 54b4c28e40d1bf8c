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
from concurrent.futures import as_completed

from chat_backend.dal.batching import BATCH_GET_MAX_KEYS
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.delivery_queue import NotifyQueue
from chat_backend.dal.message_store import MessageStore
from chat_backend.logic.audience import MemberListCache, members_at, recipients_of, removed_by
from chat_backend.logic.notifications import enqueue_offline, offline_jobs
from chat_backend.logic.push import RECIPIENTS_PER_ENVELOPE, Pusher, envelopes
from chat_backend.models.queue_payloads import Recipient
from chat_backend.models.records import Stored, StoredMessage


def fan_out(
    chats: ChatStore,
    messages: MessageStore,
    cache: MemberListCache,
    pusher: Pusher,
    items: Sequence[Stored],
    notify: NotifyQueue | None = None,
) -> int:
    """Enqueue the items for their online recipients, and their messages' members with no device
    connected for mobile push (`notify`). Returns how many envelopes it took."""
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
    frames = {(i.chat_id, i.seq): i.to_frame().to_json() for i in ordered}
    waiting: dict[tuple[str, int], list[Recipient]] = {key: [] for key in frames}
    online: set[str] = set()  # the users any lookup found a connection for
    enqueued = 0

    def send(ready: dict[tuple[str, int], list[Recipient]]) -> None:
        nonlocal enqueued
        batch = [
            e for key, recipients in ready.items() if recipients for e in envelopes(frames[key], recipients)
        ]
        pusher.queue.enqueue(batch)  # cut into SendMessageBatch calls by count and bytes
        enqueued += len(batch)

    # The connections are looked up 100 users per call, all calls at once, and the envelopes that
    # are full go out as each call returns: the delivery functions start pushing while the rest is
    # still looked up. Eventually consistent (half the read units of 10,000 lookups): the items
    # were stored a stream poll ago, far longer than DynamoDB takes to replicate a registration
    # made before them, and a device registered after them finds them by the sync it runs on connect.
    lookups = [
        pusher.pool.submit(pusher.registry.devices_of, users[start : start + BATCH_GET_MAX_KEYS])
        for start in range(0, len(users), BATCH_GET_MAX_KEYS)
    ]
    for lookup in as_completed(lookups):
        devices = lookup.result()
        online.update(devices)
        ready: dict[tuple[str, int], list[Recipient]] = {}
        for item in ordered:
            key = (item.chat_id, item.seq)
            sender = item.sender if isinstance(item, StoredMessage) else None
            sender_device = item.sender_device if isinstance(item, StoredMessage) else None
            found = [u for u in audience[key] if u in devices]
            waiting[key] += recipients_of(found, devices, sender, sender_device)
            full = len(waiting[key]) - len(waiting[key]) % RECIPIENTS_PER_ENVELOPE
            ready[key], waiting[key] = waiting[key][:full], waiting[key][full:]
        send(ready)
    send(waiting)
    if notify is not None:
        jobs = [
            job
            for item in ordered
            if isinstance(item, StoredMessage)
            for job in offline_jobs(
                item.chat_id,
                item.seq,
                [m for m in audience[(item.chat_id, item.seq)] if m not in item.hidden_from],
                online,
                item.sender,
                large=True,
            )
        ]
        enqueue_offline(notify, jobs)
    return enqueued
