"""The functions: what serves each route or trigger, and the resources each one `uses` (which
both stacks turn into its environment and its grants)."""

from __future__ import annotations

from chat_backend.wiring.kinds import Access, Function, QueueTrigger, ScheduleTrigger, StreamTrigger

# What every function serving routes needs for its rate limits (wiring.RATE_LIMITS).
LIMITED: dict[str, Access] = {"limits": "read_write"}

# Pushing to connections: the @connections API, the registry (a 410 removes the stale
# connection), and the delivery queue for the recipients whose push failed.
PUSHES: dict[str, Access] = {"connections": "read_write", "delivery": "send"}

# Writing the message ledger (logic/send.py's Ledger): chats (META, members, send claims) and
# messages (messages, VOIDs in holes).
LEDGER: dict[str, Access] = {"chats": "read_write", "messages": "read_write"}

# Moving old history from the ledger to the archive bucket (logic/archive.py).
ARCHIVING: dict[str, Access] = {**LEDGER, "archive": "read_write"}

FUNCTIONS: tuple[Function, ...] = (
    Function(name="authorizer", authorizer=True, two_way=False),
    Function(
        name="connect",
        routes=("$connect", "$disconnect"),
        two_way=False,
        uses={**LIMITED, **PUSHES, "presence": "read_write", "presence_settle": "send"},
        posts_to_connections=True,  # ONLINE to the user's subscribers
    ),
    Function(
        name="send",
        routes=("send",),
        # Messages: read a duplicate's stored answer, fill a seq left by a writer that died. Media:
        # an attached blob's tag becomes `state=attached` (s3:PutObjectTagging), so it never expires.
        # notify: members of a small chat with no device connected, for mobile push
        uses={**LIMITED, **PUSHES, **LEDGER, "media": "write", "notify": "send"},
        posts_to_connections=True,  # small chats are pushed from here, after the commit
    ),
    Function(
        name="chats",
        routes=("createChat", "addMembers", "removeMembers", "getMembers", "listChats"),
        # consent: who may add whom (blocks, `groupAdd`); member_jobs: the rest of a large add
        uses={**LIMITED, **LEDGER, "receipts": "write", "consent": "read", "member_jobs": "send"},
    ),
    Function(
        name="member_jobs",
        two_way=False,
        # One job at a time: it takes chunks until its time runs low, then queues the rest.
        trigger=QueueTrigger(queue="member_jobs", batch_size=1, max_concurrency=2),
        uses={**LEDGER, "consent": "read", "member_jobs": "send_consume"},
        timeout_s=60,
    ),
    Function(
        name="sync",
        routes=("sync",),
        # Writes only VOIDs into holes past the grace (and ends a membership change that died);
        # replays the device's to-device messages first.
        # archive: the history past the hot window (logic/archive.py)
        uses={**LIMITED, **LEDGER, "inbox": "read", "archive": "read"},
        posts_to_connections=True,
        timeout_s=25,  # under API Gateway's 29 s integration timeout
    ),
    Function(
        name="presence",
        routes=("heartbeat", "typing", "presence"),
        uses={**LIMITED, **PUSHES, "chats": "read", "presence": "read_write", "consent": "read"},
        posts_to_connections=True,  # presence answers, status changes, typing
    ),
    Function(
        name="presence_settle",
        two_way=False,
        trigger=QueueTrigger(queue="presence_settle", max_concurrency=2),
        uses={**PUSHES, "presence": "read_write", "presence_settle": "consume"},
        posts_to_connections=True,
    ),
    Function(
        name="receipts",
        routes=("receipt", "receipts"),
        uses={
            **LIMITED,
            **PUSHES,
            "chats": "read",
            "messages": "read",
            "receipts": "read_write",
            "summaries": "send",
            "consent": "read",  # a blocker hears nothing of the blocked user's receipts
        },
        posts_to_connections=True,
    ),
    Function(
        name="summaries",
        two_way=False,
        trigger=QueueTrigger(queue="summaries", max_concurrency=2),
        # chats: a sender who has left the chat is told nothing more
        uses={**PUSHES, "receipts": "read", "summaries": "consume", "chats": "read"},
        posts_to_connections=True,
    ),
    Function(
        name="consent",
        routes=("block", "unblock", "setPrivacy"),
        # A block also marks the pair's direct chat (its META's blockedBy) and ends the blocked
        # user's presence subscriptions to the blocker.
        uses={**LIMITED, "consent": "read_write", "chats": "read_write", "presence": "read_write"},
    ),
    Function(
        name="devices",
        routes=("sendToDevice", "ackToDevice", "registerPush", "unregisterPush"),
        # consent: a recipient who blocks the sender gets nothing; chats: who shares a chat;
        # push: the device's push registration and its SNS endpoint
        uses={
            **LIMITED,
            **PUSHES,
            "inbox": "read_write",
            "chats": "read",
            "consent": "read",
            "push": "read_write",
        },
        posts_to_connections=True,  # to-device messages to connected devices
        sends_push=True,
    ),
    Function(
        name="keys",
        routes=("publishKeys", "fetchKeys", "queryDevices", "claimKeys", "getChatDevices"),
        # chats: a chat's members, who shares a chat with a user; consent: blocks
        uses={**LIMITED, **PUSHES, "keys": "read_write", "chats": "read", "consent": "read"},
        posts_to_connections=True,  # DEVICES_CHANGED to those who share a chat with the user
    ),
    Function(
        name="media",
        routes=("mediaUpload", "mediaDownload"),
        # MEDIA# items live in the chats table; presigned POST (write) and GET (read) on the bucket;
        # with the media CDN, its signing key (downloads become CloudFront signed URLs).
        uses={**LIMITED, "chats": "read_write", "media": "read_write", "media_cdn_key": "read"},
    ),
    Function(name="default", routes=("$default",), uses=LIMITED),
    Function(
        name="fanout",
        two_way=False,
        # Only what the send path does not push itself: large groups, announcements, VOIDs.
        trigger=StreamTrigger(
            table="messages", filter_pattern={"dynamodb": {"NewImage": {"fanout": {"S": ["queued"]}}}}
        ),
        uses={
            "chats": "read",
            "messages": "read",
            "connections": "read",
            "delivery": "send",
            "notify": "send",
        },
        timeout_s=60,
    ),
    Function(
        name="deliver",
        two_way=False,
        # One envelope (up to 100 recipients) per invocation: a large group's envelopes are pushed
        # by parallel invocations, not one after another.
        trigger=QueueTrigger(queue="delivery", batch_size=1),
        uses={**PUSHES, "delivery": "send_consume", "presence": "read"},
        posts_to_connections=True,
        timeout_s=30,
    ),
    Function(
        name="notify",
        two_way=False,
        # Offline members' registered devices, by SNS mobile push (chat id and a count only).
        trigger=QueueTrigger(queue="notify", batch_size=10),
        uses={"notify": "consume", "push": "read_write"},
        sends_push=True,
        timeout_s=30,
    ),
    Function(
        name="archiver",
        two_way=False,
        # The hourly run: one archive job a shard of the archiveDue index (logic/archive.py). An
        # operator's run naming chats archives those at once.
        trigger=ScheduleTrigger(rate_minutes=60),
        uses={**ARCHIVING, "archive_jobs": "send"},
        timeout_s=300,
    ),
    Function(
        name="archive_worker",
        two_way=False,
        # Archive jobs: list a shard's due chats into jobs of 50, or archive a job's chats (messages
        # older than CHAT_HOT_DAYS leave the messages table for the archive bucket, each range
        # written and read back before its items are deleted; old holes become VOIDs first).
        trigger=QueueTrigger(queue="archive_jobs", batch_size=1, max_concurrency=1000),
        uses={**ARCHIVING, "archive_jobs": "send_consume"},
        timeout_s=300,
    ),
)


def function(name: str) -> Function:
    found = [f for f in FUNCTIONS if f.name == name]
    if not found:
        raise KeyError(f"no function {name!r} in the wiring table")
    return found[0]
