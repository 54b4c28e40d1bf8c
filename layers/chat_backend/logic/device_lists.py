"""Device lists of chats (docs/PROTOCOL.md v1.1, "Device lists and batched key claims"): what a
sender needs to encrypt for every device of a chat's members, and the news that a user's devices
changed.

`getChatDevices` pages every device (public keys) of every current member: at most
`MEMBERS_PER_PAGE` members' devices and `DEVICES_PER_PAGE` devices a page, fewer when long keys
would take the frame past `ANSWER_BUDGET_BYTES` bytes. A cursor is where the previous page stopped,
`<userId>` or `<userId>.<deviceId>` (a member with more devices than a page holds goes on on the
next one). Like queryDevices, no block hides a device: the members of a group two users share
still read each other's messages, so each must be able to encrypt for the other.

`DEVICES_CHANGED` is pushed when a publishKeys adds a device new to the user or changes a device's
identity key, to the user's own other devices and to those who share a chat with it, bounded so
that no user can flood others or run up the bill: the other side of each direct chat, then the
members of groups of at most `NEWS_GROUP_MAX` members, among the user's first `NEWS_MAX_CHATS`
chats, at most `NEWS_MAX_USERS` users; not those who block the user; at most
`wiring.DEVICE_ANNOUNCEMENTS` announcements per user. Members of larger groups (and anyone past a
bound) learn of device changes from getChatDevices, which clients read before they send.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from chat_backend.dal.chat_listing import ChatListing
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.key_store import DeviceChange, KeyStore
from chat_backend.errors import Forbidden, RateLimited
from chat_backend.logic.audience import recipients_of
from chat_backend.logic.push import Pusher, envelopes, push_to_members
from chat_backend.logic.rate_limits import Party, RateLimiter
from chat_backend.models.client_frames import GetChatDevicesFrame
from chat_backend.models.common import ANSWER_BUDGET_BYTES, CHATS_PAGE
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import ChatDevice, ChatDevicesFrame, DevicesChangedFrame, fitting
from chat_backend.observability import count, logger
from chat_backend.wiring import DEVICE_ANNOUNCEMENTS

MEMBERS_PER_PAGE = 250  # members whose devices one page reads (a 10,000-member group: 40 pages)
DEVICES_PER_PAGE = 500  # devices a page lists at most
LONGEST_CURSOR = "u" * 64 + "." + "d" * 64  # what a page's frame is measured with

NEWS_MAX_CHATS = 2 * CHATS_PAGE  # the user's chats looked at per announcement (chatId order)
NEWS_GROUP_MAX = 256  # groups up to this size are told; larger ones read getChatDevices
NEWS_MAX_GROUPS = 100  # groups whose members are read per announcement
NEWS_MAX_USERS = 1000  # users told per announcement (direct chats' first)


def get_chat_devices(
    chats: ChatStore, keys: KeyStore, pool: Executor, caller: Caller, frame: GetChatDevicesFrame
) -> ChatDevicesFrame:
    """A page of the devices of the chat's current members, in (userId, deviceId) order; `next`
    resumes after the last one listed (null on the last page). FORBIDDEN to all but members."""
    after_user, _, after_device = (frame.cursor or "").partition(".")
    inside = [after_user] if after_device else []
    context = chats.members.membership(frame.chat_id, [caller.user_id, *inside])
    if context.chat is None or caller.user_id not in context.roles:
        raise Forbidden(f"not a member of {frame.chat_id}")
    page, last_member = chats.members.page(frame.chat_id, after_user or None, MEMBERS_PER_PAGE)
    # The member the previous page stopped inside of (unless it has left since), then the next ones.
    users = [u for u in inside if u in context.roles] + [u for u, _ in page]
    listed = pool.map(
        lambda u: keys.devices(u, after_device if u in inside else None, DEVICES_PER_PAGE), users
    )
    devices = [
        ChatDevice(
            user_id=user, device_id=d.device_id, identity_key=d.identity_key, signing_key=d.signing_key
        )
        for user, found in zip(users, listed, strict=True)
        for d in found
    ]
    empty = ChatDevicesFrame(
        request_id=frame.request_id, chat_id=frame.chat_id, devices=[], next=LONGEST_CURSOR
    )
    fit = min(fitting(empty, devices, ANSWER_BUDGET_BYTES), DEVICES_PER_PAGE)
    next_cursor = last_member
    if fit < len(devices):
        devices = devices[:fit]
        next_cursor = f"{devices[-1].user_id}.{devices[-1].device_id}" if devices else frame.cursor
    return ChatDevicesFrame(
        request_id=frame.request_id, chat_id=frame.chat_id, devices=devices, next=next_cursor
    )


@dataclass(frozen=True)
class DeviceNews:
    """Announces a user's device changes (DEVICES_CHANGED) to its other devices and to those it
    shares a chat with, within the module's bounds. Never fails the publish that caused it: the
    keys are stored, and a lost announcement is made good by getChatDevices."""

    listing: ChatListing
    chats: ChatStore
    consent: ConsentStore
    limiter: RateLimiter
    pusher: Pusher
    direct_push_max_members: int

    def __call__(self, caller: Caller, change: DeviceChange) -> int:
        """Announce; returns how many devices it was sent to (0 when over the user's limit)."""
        try:
            self.limiter.take(f"u#{caller.user_id}", "device-news", [Party("news", DEVICE_ANNOUNCEMENTS)])
        except RateLimited:
            count("DeviceNewsDropped")
            return 0
        try:
            return self._announce(caller, change)
        except Exception:
            logger.exception("device change not announced")
            count("DeviceNewsFailures")
            return 0

    def _announce(self, caller: Caller, change: DeviceChange) -> int:
        blockers = self.consent.blockers_of(caller.user_id)
        told = [
            u
            for u in sharers(self.listing, self.chats, self.pusher.pool, caller.user_id)
            if u not in blockers
        ]
        members = [caller.user_id, *told]  # the user's own other devices too
        notice = DevicesChangedFrame(
            user_id=caller.user_id, device_id=caller.device_id, change=change
        ).to_json()
        if len(members) <= self.direct_push_max_members:
            result = push_to_members(self.pusher, notice, members, caller.user_id, caller.device_id)
            return result.pushed + result.retried
        devices = self.pusher.registry.devices_of(members, self.pusher.pool)
        recipients = recipients_of(members, devices, caller.user_id, caller.device_id)
        self.pusher.queue.enqueue(envelopes(notice, recipients))
        return len(recipients)


def sharers(listing: ChatListing, chats: ChatStore, pool: Executor, user_id: str) -> list[str]:
    """Who is told of the user's device changes: the other side of each of its direct chats, then
    the members of its groups of at most NEWS_GROUP_MAX members (NEWS_MAX_GROUPS of them), among
    its first NEWS_MAX_CHATS chats; at most NEWS_MAX_USERS users, direct chats' first."""
    partners: list[str] = []
    groups: list[str] = []
    cursor: str | None = None
    for _ in range(NEWS_MAX_CHATS // CHATS_PAGE):
        page, cursor = listing.page(user_id, cursor, CHATS_PAGE, pool)
        for chat in page:
            if chat.pair is not None:
                partners += [u for u in chat.pair if u != user_id]
            elif chat.member_count <= NEWS_GROUP_MAX:
                groups.append(chat.chat_id)
        if cursor is None:
            break
    found = dict.fromkeys(partners)
    for members in pool.map(lambda c: _members(chats, c), groups[:NEWS_MAX_GROUPS]):
        found.update(dict.fromkeys(members))
    found.pop(user_id, None)
    return list(found)[:NEWS_MAX_USERS]


def _members(chats: ChatStore, chat_id: str) -> Iterable[str]:
    return [u for page in chats.members.pages(chat_id, NEWS_GROUP_MAX) for u in page]
