"""Who a chat's frames go to: its members at a membership version, and their connected devices.

Every stored message names the membership version it was sent under, and every membership
change bumps the version, so (chatId, version) names exactly one member list: a warm function
keeps those lists (`MemberListCache`) and reads a 10,000-member list once per membership change,
not once per message. A list is only ever cached under the version it was read at; a consumer
that lags behind a change (the stream's fan-out) rebuilds the older version's list from the
current one and the announcements since.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.message_store import MessageStore
from chat_backend.models.common import SYSTEM_SENDER
from chat_backend.models.queue_payloads import Recipient
from chat_backend.models.records import ChatMeta, StoredMessage

Devices = dict[str, dict[str, str]]  # userId -> {deviceId: connectionId}
STABLE_READ_ATTEMPTS = 5


class MemberListCache:
    """Member lists by (chatId, membership version), kept across invocations of a warm function.
    Bounded by the number of member ids held; the least recently used lists go first."""

    def __init__(self, max_members: int = 200_000) -> None:
        self.max_members = max_members
        self._lists: OrderedDict[tuple[str, int], list[str]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, chat_id: str, version: int) -> list[str] | None:
        with self._lock:
            found = self._lists.get((chat_id, version))
            if found is not None:
                self._lists.move_to_end((chat_id, version))
            return found

    def put(self, chat_id: str, version: int, members: list[str]) -> None:
        """Only ever the list read at that very version."""
        with self._lock:
            if (chat_id, version) in self._lists:
                return
            self._lists[(chat_id, version)] = members
            self._held += len(members)
            while self._held > self.max_members and len(self._lists) > 1:
                _, evicted = self._lists.popitem(last=False)
                self._held -= len(evicted)


class MembershipCache:
    """Who was last seen to be a member of which chat, at which membership version: a send by a
    known member skips its read and goes straight to its claim and reservation, which is
    conditional on that version, so a membership changed since is still caught (the reservation
    fails and the send reads again). Only ever a hint; bounded, least recently used first out."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._chats: OrderedDict[tuple[str, str], ChatMeta] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, chat_id: str, user_id: str) -> ChatMeta | None:
        with self._lock:
            found = self._chats.get((chat_id, user_id))
            if found is not None:
                self._chats.move_to_end((chat_id, user_id))
            return found

    def put(self, user_id: str, chat: ChatMeta) -> None:
        with self._lock:
            self._chats[(chat.chat_id, user_id)] = chat
            self._chats.move_to_end((chat.chat_id, user_id))
            while len(self._chats) > self.max_entries:
                self._chats.popitem(last=False)

    def forget(self, chat_id: str, user_id: str) -> None:
        with self._lock:
            self._chats.pop((chat_id, user_id), None)


def members_for_send(chats: ChatStore, cache: MemberListCache, chat: ChatMeta) -> list[str]:
    """The members of `chat` as read at its version, for a writer whose seq reservation is
    conditional on that version (so the list is that version's if the reservation succeeds; the
    writer caches it only then). A direct chat names its pair on META: no read at all."""
    if chat.pair is not None:
        return list(chat.pair)
    cached = cache.get(chat.chat_id, chat.members_version)
    return cached if cached is not None else [u for page in chats.members.pages(chat.chat_id) for u in page]


def members_now(chats: ChatStore, cache: MemberListCache, chat: ChatMeta) -> list[str]:
    """The chat's members as they are now (for ephemeral frames, which have no seq)."""
    if chat.pair is not None:
        return list(chat.pair)
    if chat.change is None:
        cached = cache.get(chat.chat_id, chat.members_version)
        if cached is not None:
            return cached
    version, members = _stable_members(chats, chat.chat_id)
    cache.put(chat.chat_id, version, members)
    return members


def members_at(
    chats: ChatStore, messages: MessageStore, cache: MemberListCache, chat_id: str, version: int, seq: int
) -> list[str]:
    """The members of the chat at membership `version`, for the item stored at `seq` under it."""
    cached = cache.get(chat_id, version)
    if cached is not None:
        return cached
    current, members = _stable_members(chats, chat_id)
    if current < version:
        raise RuntimeError(f"{chat_id}: membership version {current} read after {version} was stored")
    if current > version:
        members = _before_changes(messages, chat_id, seq, version, current, members)
    cache.put(chat_id, version, members)
    return members


def _stable_members(chats: ChatStore, chat_id: str) -> tuple[int, list[str]]:
    """The member items and the version they stand for: META read before and after the member
    query must agree (a change's items are written in the same transaction that ends it, so while
    one is in flight the items are still those of the version before it)."""
    for _ in range(STABLE_READ_ATTEMPTS):
        before = chats.get_chat(chat_id)
        members = [u for page in chats.members.pages(chat_id) for u in page]
        after = chats.get_chat(chat_id)
        if before is None or after is None:
            return 0, members
        if (before.members_version, before.change) == (after.members_version, after.change):
            return after.members_version - (1 if after.change is not None else 0), members
    raise RuntimeError(f"{chat_id}: membership kept changing while it was read")


def _before_changes(
    messages: MessageStore, chat_id: str, seq: int, version: int, current: int, members: list[str]
) -> list[str]:
    """Undo, newest first, the membership changes committed after the item at `seq`."""
    changes = []
    for announcement in messages.announcements_after(chat_id, seq):
        if announcement.members_version is not None and version < announcement.members_version <= current:
            changes.append(announcement)
            if len(changes) == current - version:
                break
    found = list(members)
    for announcement in reversed(changes):
        event, users = _change_of(announcement)
        if event == "added":
            found = [u for u in found if u not in users]
        elif event == "removed":
            found += [u for u in users if u not in found]
    return found


def _change_of(message: StoredMessage) -> tuple[str | None, list[str]]:
    if message.sender != SYSTEM_SENDER:
        return None, []
    try:
        body = json.loads(message.ciphertext)
    except ValueError:
        return None, []
    return body.get("event"), list(body.get("members", []))


def removed_by(message: StoredMessage) -> list[str]:
    """The members a system message removed (they still get that message pushed)."""
    event, users = _change_of(message)
    return users if event == "removed" else []


def recipients_of(
    members: Sequence[str], devices: Devices, sender: str | None, sender_device: str | None
) -> list[Recipient]:
    """Every connected device of every member except the sending device (every device of the
    sender when `sender_device` is None; nobody left out when `sender` is None)."""
    return [
        Recipient(user_id=user_id, device_id=device_id, connection_id=connection_id)
        for user_id in members
        for device_id, connection_id in sorted(devices.get(user_id, {}).items())
        if not (user_id == sender and (sender_device is None or device_id == sender_device))
    ]
