"""Rate limits (logic/rate_limits.py): every route's token buckets, and the budgets some use cases
keep besides (typing fan-out, to-device messages, device announcements, uploads, mobile push)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A token bucket: `burst` calls at once, refilled at `per_s` a second."""

    burst: int
    per_s: float


# How often a route's calls are written down (RouteLimit.settle_every): frames a person sends
# often settle every 4th call (at most 0.25 write units each).
FREQUENT = 4


@dataclass(frozen=True)
class RouteLimit:
    """A route's limits (logic/rate_limits.py): per user and per connection, in the bucket named
    `bucket` (routes that share one share the budget). A `silent` route's frames over the limit are
    dropped without an answer (fire-and-forget frames, PROTOCOL.md v1.1); others get RATE_LIMITED."""

    bucket: str
    user: Rate
    connection: Rate | None
    silent: bool = False
    per_chat: Rate | None = None  # also per (user, chat) when the frame names a chat: coalescing
    # Calls one instance admits on its own view of the bucket before it writes them down in one
    # write (logic/rate_limits.py): 1 for precise limits on rare frames, more for frequent ones.
    settle_every: int = 1


def per_user_and_connection(bucket: str, rate: Rate) -> RouteLimit:
    """The same budget for a user and for each of its connections: frames a person sends rarely,
    where one device may well use all of it."""
    return RouteLimit(bucket, user=rate, connection=rate)


# Sized so that a person never meets them and a script does. Floors (issue 9): a device may send a
# burst of 100 messages and 20/s sustained (a user with many devices 200 and 30/s); sync and
# heartbeat are generous; a first key exchange with all of a 10,000-member group fits the burst.
RATE_LIMITS: dict[str, RouteLimit] = {
    "send": RouteLimit("send", user=Rate(200, 30), connection=Rate(100, 20), settle_every=FREQUENT),
    "sync": RouteLimit("sync", user=Rate(120, 10), connection=Rate(60, 5), settle_every=FREQUENT),
    "heartbeat": RouteLimit(
        "heartbeat", user=Rate(30, 1), connection=Rate(10, 0.5), silent=True, settle_every=FREQUENT
    ),
    # One TYPING per user and chat every 3 s at most, whatever the keyboard does.
    "typing": RouteLimit(
        "typing", user=Rate(20, 5), connection=Rate(10, 3), silent=True, per_chat=Rate(1, 1 / 3)
    ),
    "presence": RouteLimit("presence", user=Rate(30, 1), connection=Rate(20, 1)),
    # A new phone's contacts may start many direct chats at once; then one a second.
    "createChat": per_user_and_connection("chats", Rate(100, 1)),
    **dict.fromkeys(("addMembers", "removeMembers"), per_user_and_connection("members", Rate(60, 1))),
    **dict.fromkeys(
        ("getMembers", "receipts", "listChats"),
        RouteLimit("reads", user=Rate(300, 20), connection=Rate(200, 20)),
    ),
    "receipt": RouteLimit(
        "receipt", user=Rate(1000, 100), connection=Rate(500, 50), silent=True, settle_every=FREQUENT
    ),
    **dict.fromkeys(("block", "unblock", "setPrivacy"), per_user_and_connection("consent", Rate(60, 1))),
    "publishKeys": per_user_and_connection("publishKeys", Rate(30, 0.5)),
    "fetchKeys": per_user_and_connection("fetchKeys", Rate(10_000, 50)),
    # Batches of 100 users / devices, or pages of up to 250 members' devices: a 10,000-member
    # group's devices in 100 frames (queryDevices) or 40 or so (getChatDevices).
    **dict.fromkeys(
        ("queryDevices", "getChatDevices"), per_user_and_connection("queryDevices", Rate(300, 10))
    ),
    "claimKeys": per_user_and_connection("claimKeys", Rate(300, 10)),
    # Frames of up to 100 to-device messages (and TO_DEVICE_MESSAGES counts the messages).
    "sendToDevice": per_user_and_connection("toDevice", Rate(300, 20)),
    "ackToDevice": RouteLimit(
        "ackToDevice", user=Rate(1000, 100), connection=Rate(500, 50), settle_every=FREQUENT
    ),
    **dict.fromkeys(("registerPush", "unregisterPush"), per_user_and_connection("push", Rate(10, 1 / 60))),
    "mediaUpload": per_user_and_connection("mediaUpload", Rate(30, 0.5)),
    "mediaDownload": per_user_and_connection("mediaDownload", Rate(200, 10)),
    "$default": RouteLimit("default", user=Rate(20, 2), connection=Rate(10, 1), silent=True),
    # A connection is opened once; the user's connects are what a reconnect loop would repeat.
    "$connect": RouteLimit("connect", user=Rate(30, 0.2), connection=None),
}
# Devices a large group's typing notices reach per second, whoever types (a bucket per chat; a
# notice for more devices than the burst goes to a random sample of that many).
TYPING_FANOUT = Rate(1000, 1000)
# To-device messages a user sends: a key rotation in a 10,000-member group (about 20,000 devices)
# at once, then 200 a second.
TO_DEVICE_MESSAGES = Rate(25_000, 200)
# DEVICES_CHANGED announcements a user makes (logic/device_lists.py): a few new devices or
# reinstalls at once, then one an hour; past it the keys are stored and nothing is pushed.
DEVICE_ANNOUNCEMENTS = Rate(10, 1 / 3600)
# What a user may upload, in MiB: 2 GiB at once, refilled over a day (a bucket of its own).
MEDIA_UPLOAD_QUOTA_MIB = Rate(2048, 2048 / 86_400)
# Mobile push: a device is notified at most once per window (what comes meanwhile is counted into
# the next); a large group's offline members at most once per chat window; users per notify job.
NOTIFY_DEVICE_WINDOW_S = 30
NOTIFY_LARGE_CHAT_WINDOW_S = 60
NOTIFY_USERS_PER_JOB = 2000
