"""The one wiring table: tables, queues, buckets, functions and what triggers them.

Both the CDK stack (`cdk/`) and the local stack (`local/local_stack`) are built from these
declarations, so a route, table or trigger is described exactly once. Each function receives,
as environment variables, the names of the resources it declares in `uses`; `chat_backend.config`
reads them back under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AttrType = Literal["S", "N", "B"]
# Tables: DynamoDB data actions. Queues: send / consume / both (a consumer that re-enqueues).
# Buckets: read = s3:GetObject, write = s3:PutObject (a presigned POST or GET is only as good as
# the signer's own permission).
Access = Literal["read", "write", "read_write", "send", "consume", "send_consume"]


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: tuple[str, AttrType]
    sort_key: tuple[str, AttrType] | None = None
    # KEYS_ONLY: an update of the base item that leaves the index's keys alone writes nothing to it.
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


@dataclass(frozen=True)
class Table:
    name: str  # logical name; the env var is f"{name.upper()}_TABLE"
    partition_key: tuple[str, AttrType]
    sort_key: tuple[str, AttrType] | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    stream: Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES"] | None = None

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}_TABLE"


@dataclass(frozen=True)
class Queue:
    name: str  # logical name; the env var is f"{name.upper()}_QUEUE_URL"
    fifo: bool = True
    visibility_timeout_s: int = 180  # AWS advice: 6 x the consumer's timeout
    max_receive_count: int = 5  # then redriven to the DLQ
    delay_s: int = 0  # every message becomes visible this long after it is sent (deferred jobs)

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}_QUEUE_URL"

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


@dataclass(frozen=True)
class Bucket:
    name: str  # logical name; the env var is f"{name.upper()}_BUCKET"
    abort_incomplete_upload_days: int = 1  # parts of an abandoned multipart upload cost storage
    intelligent_tiering_after_days: int | None = None  # then S3 moves it between access tiers by use
    expire_noncurrent_after_days: int | None = None  # overwritten / deleted versions kept this long
    # Objects still tagged `state=pending` (uploaded, never attached to a message) expire then.
    expire_pending_after_days: int | None = None
    # Objects move to S3 Glacier Instant Retrieval this long after they are written.
    glacier_ir_after_days: int | None = None

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}_BUCKET"


@dataclass(frozen=True)
class Secret:
    """A secret the deployer provides (Secrets Manager; never created by either stack, never in the
    repository). A stack without it gives the functions that use it neither its ARN nor a grant."""

    name: str  # logical name; the env var is f"{name.upper()}_SECRET_ARN"

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}_SECRET_ARN"


# Object actions only (least privilege): a presigned GET needs s3:GetObject, a presigned POST
# s3:PutObject (and s3:PutObjectTagging: it tags the upload `state=pending`), attaching a blob
# re-tags it. The CDK stack grants these; the local stack refuses what they do not allow.
BUCKET_ACTIONS: dict[str, tuple[str, ...]] = {
    "read": ("s3:GetObject",),
    "write": ("s3:PutObject", "s3:PutObjectTagging"),
    "read_write": ("s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"),
}
# Secrets are only ever read (once per process, by the function that uses them).
SECRET_ACTIONS: dict[str, tuple[str, ...]] = {"read": ("secretsmanager:GetSecretValue",)}
# A secret's complete ARN (its name and the 6 characters Secrets Manager appends): what a function
# is given, so that its grant names exactly that secret.
SECRET_ARN_PATTERN = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}"

FilterPattern = dict[str, "FilterPattern | list[str]"]


@dataclass(frozen=True)
class StreamTrigger:
    table: str
    batch_size: int = 100
    max_retries: int = 10
    bisect_on_error: bool = True
    # Lambda's event filter (the subset both stacks read: nested keys down to lists of allowed
    # values). Records it does not match are skipped without invoking the function (or billing it).
    filter_pattern: FilterPattern | None = None


@dataclass(frozen=True)
class QueueTrigger:
    queue: str
    batch_size: int = 10
    max_concurrency: int | None = None  # concurrent batches (Lambda's ScalingConfig); None: no cap


@dataclass(frozen=True)
class ScheduleTrigger:
    """Invoked every `rate_minutes` with a scheduled event (an EventBridge rule on AWS, a timer in
    the local stack); the event's `time` is the function's "now"."""

    rate_minutes: int


Trigger = StreamTrigger | QueueTrigger | ScheduleTrigger


@dataclass(frozen=True)
class Function:
    name: str  # folder under functions/
    routes: tuple[str, ...] = ()  # WebSocket route keys this function serves
    two_way: bool = True  # the handler's return body is sent back to the caller (route response)
    trigger: Trigger | None = None
    authorizer: bool = False  # the $connect REQUEST authorizer
    uses: dict[str, Access] = field(default_factory=dict)  # resource logical name -> access
    posts_to_connections: bool = False
    # SNS mobile push: endpoints made from the platform applications (CHAT_PUSH_PLATFORMS), publish
    sends_push: bool = False
    timeout_s: int = 10
    memory_mb: int = 512


@dataclass(frozen=True)
class Rate:
    """A token bucket: `burst` calls at once, refilled at `per_s` a second."""

    burst: int
    per_s: float


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


TABLES: tuple[Table, ...] = (
    Table(
        name="chats",
        partition_key=("chatId", "S"),
        sort_key=("sk", "S"),
        # Sparse: only MEMBER# items carry memberUserId, so the index lists a user's chats.
        # archiveDue (sparse, keys only): META items by `hotSince`, the time of their oldest message
        # still in the messages table, in 64 shards (`archiveShard`): the chats due for the archive.
        indexes=(
            Index("byMember", ("memberUserId", "S"), ("chatId", "S")),
            Index("archiveDue", ("archiveShard", "S"), ("hotSince", "N"), projection="KEYS_ONLY"),
        ),
        ttl_attribute="expiresAt",
    ),
    # One item per (chatId, seq): a message, or a VOID for a seq whose writer died. `fanout` says
    # who pushes it: "direct" (the send function, small chats) or "queued" (the stream's fan-out).
    Table(
        name="messages",
        partition_key=("chatId", "S"),
        sort_key=("seq", "N"),
        stream="NEW_IMAGE",
    ),
    Table(
        name="connections",
        partition_key=("userId", "S"),
        ttl_attribute="expiresAt",
    ),
    # Per-member watermarks: sk userId holds deliveredUpTo / readUpTo (monotonic).
    Table(
        name="receipts",
        partition_key=("chatId", "S"),
        sort_key=("userId", "S"),
    ),
    # sk STATE: a user's status and lastSeen; sk SUB#...: who watches the user (TTL'd);
    # sk WATCH#<device>: whom a device watches (so a heartbeat can renew its subscriptions).
    Table(
        name="presence",
        partition_key=("userId", "S"),
        sort_key=("sk", "S"),
        ttl_attribute="expiresAt",
    ),
    # Rate-limit buckets (logic/rate_limits.py): key `u#<user>` (or another scope), sk the bucket;
    # one attribute per limited party holding its bucket's theoretical arrival time (GCRA). Not
    # state: an item past `expiresAt` is the same as no item (every bucket full).
    Table(
        name="limits",
        partition_key=("key", "S"),
        sort_key=("bucket", "S"),
        ttl_attribute="expiresAt",
    ),
    # Consent, per user: sk PRIVACY holds the user's settings (`groupAdd`); BLOCKS#<user> one user
    # this user blocks, and BLOCKEDBY#<user> its mirror on the blocked user's partition (so what a
    # user does can be kept from everyone who blocks them with one Query).
    Table(
        name="consent",
        partition_key=("userId", "S"),
        sort_key=("sk", "S"),
    ),
    # End-to-end encryption public keys, per user: sk DEVICE#<device> holds a device's identity key
    # and signed prekey; sk OTPK#<device>#<keyId> one unused one-time prekey (deleted when handed out).
    Table(
        name="keys",
        partition_key=("userId", "S"),
        sort_key=("sk", "S"),
    ),
    # Each device's to-device messages until it acknowledges them (pk `<user>#<device>`, sk a
    # time-ordered id), and senders' transaction parts (pk `TXN#<user>#<device>`): dal/inbox_store.py.
    Table(
        name="inbox",
        partition_key=("device", "S"),
        sort_key=("id", "S"),
        ttl_attribute="expiresAt",
    ),
    # Mobile push (logic/notifications.py): key <user> holds `devices`, a map of each device's
    # platform, token, SNS endpoint and when it was last notified; key CHAT#<chat> the last time a
    # large group's offline members were notified (one round per window, whatever the traffic).
    Table(
        name="push",
        partition_key=("key", "S"),
        ttl_attribute="expiresAt",
    ),
)

# Seconds a user stays ONLINE after the last device disconnects: a reconnect within it changes
# nothing and pushes nothing (flapping networks), and the settle job runs when it ends.
PRESENCE_GRACE_S = 5
# Large groups get at most one RECEIPT_SUMMARY per message per this many seconds.
RECEIPT_SUMMARY_WINDOW_S = 1

QUEUES: tuple[Queue, ...] = (
    # Standard: envelopes of a large group's fan-out and per-recipient retries (with a delay). No
    # FIFO group per chat: the seq orders, and one failing recipient must never hold up others.
    Queue(name="delivery", fifo=False),
    # Deferred jobs: FIFO with a queue delay; the deduplication id coalesces repeats.
    Queue(name="summaries", delay_s=RECEIPT_SUMMARY_WINDOW_S, visibility_timeout_s=60),
    Queue(name="presence_settle", delay_s=PRESENCE_GRACE_S + 1, visibility_timeout_s=60),
    # Membership changes too large for one invocation (logic/member_jobs.py), in order per chat.
    Queue(name="member_jobs", visibility_timeout_s=360),  # 6 x the member-jobs function's 60 s
    # Standard: who of a message's members had no device connected, to be notified by mobile push.
    Queue(name="notify", fifo=False, visibility_timeout_s=180),
    # The archiver's fan-out (logic/archive.py): shard listings and chats to archive.
    Queue(name="archive_jobs", fifo=False, visibility_timeout_s=1800),  # 6 x the worker's 300 s
)

# Media attachments (client-side encrypted blobs), keyed `<chatId>/<mediaId>`.
BUCKETS: tuple[Bucket, ...] = (
    Bucket(
        name="media",
        intelligent_tiering_after_days=30,
        expire_noncurrent_after_days=30,
        expire_pending_after_days=2,
    ),
    # Messages past the hot window (logic/archive.py): gzipped JSON, `<chatId>/<firstSeq>-<lastSeq>.json.gz`,
    # at most ARCHIVE_MAX_ITEMS records or ARCHIVE_MAX_BYTES each. Never overwritten with other
    # content (a range's records are immutable), so old versions only come from retried writes.
    Bucket(name="archive", glacier_ir_after_days=90, expire_noncurrent_after_days=7),
)
ARCHIVE_MAX_ITEMS = 1000
ARCHIVE_MAX_BYTES = 1024 * 1024  # uncompressed JSON
# A chat is listed for the archive once its oldest hot item is this many days past the hot window
# (logic/archive.py ArchivePolicy): an active chat is archived daily, not hourly.
ARCHIVE_DUE_AFTER_DAYS = 1

# Downloads through the media CDN (CloudFront, AWS only): the private key its signed URLs are
# signed with, PEM (README "Deploying to AWS"). Without it, downloads are presigned S3 GETs.
SECRETS: tuple[Secret, ...] = (Secret(name="media_cdn_key"),)
MEDIA_CDN_DOMAIN_ENV = "MEDIA_CDN_DOMAIN"  # the distribution's domain, for functions using the key
MEDIA_CDN_KEY_PAIR_ID_ENV = "MEDIA_CDN_KEY_PAIR_ID"  # the CloudFront public key's id

# Sized so that a person never meets them and a script does. Floors (issue 9): a device may send a
# burst of 100 messages and 20/s sustained (a user with many devices 200 and 30/s); sync and
# heartbeat are generous; a first key exchange with all of a 10,000-member group fits the burst.
FREQUENT = 4  # frames a person sends often settle every 4th call (at most 0.25 write units each)
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
    "createChat": RouteLimit("chats", user=Rate(100, 1), connection=Rate(100, 1)),
    "addMembers": RouteLimit("members", user=Rate(60, 1), connection=Rate(60, 1)),
    "removeMembers": RouteLimit("members", user=Rate(60, 1), connection=Rate(60, 1)),
    "getMembers": RouteLimit("reads", user=Rate(300, 20), connection=Rate(200, 20)),
    "receipt": RouteLimit(
        "receipt", user=Rate(1000, 100), connection=Rate(500, 50), silent=True, settle_every=FREQUENT
    ),
    "receipts": RouteLimit("reads", user=Rate(300, 20), connection=Rate(200, 20)),
    "listChats": RouteLimit("reads", user=Rate(300, 20), connection=Rate(200, 20)),
    "block": RouteLimit("consent", user=Rate(60, 1), connection=Rate(60, 1)),
    "unblock": RouteLimit("consent", user=Rate(60, 1), connection=Rate(60, 1)),
    "setPrivacy": RouteLimit("consent", user=Rate(60, 1), connection=Rate(60, 1)),
    "publishKeys": RouteLimit("publishKeys", user=Rate(30, 0.5), connection=Rate(30, 0.5)),
    "fetchKeys": RouteLimit("fetchKeys", user=Rate(10_000, 50), connection=Rate(10_000, 50)),
    # Batches of 100 users / devices: a 10,000-member group's devices in 100 frames.
    "queryDevices": RouteLimit("queryDevices", user=Rate(300, 10), connection=Rate(300, 10)),
    "claimKeys": RouteLimit("claimKeys", user=Rate(300, 10), connection=Rate(300, 10)),
    # Pages of up to 250 members' devices: a 10,000-member group's devices in 40 or so frames.
    "getChatDevices": RouteLimit("queryDevices", user=Rate(300, 10), connection=Rate(300, 10)),
    # Frames of up to 100 to-device messages (and TO_DEVICE_MESSAGES counts the messages).
    "sendToDevice": RouteLimit("toDevice", user=Rate(300, 20), connection=Rate(300, 20)),
    "ackToDevice": RouteLimit(
        "ackToDevice", user=Rate(1000, 100), connection=Rate(500, 50), settle_every=FREQUENT
    ),
    "registerPush": RouteLimit("push", user=Rate(10, 1 / 60), connection=Rate(10, 1 / 60)),
    "unregisterPush": RouteLimit("push", user=Rate(10, 1 / 60), connection=Rate(10, 1 / 60)),
    "mediaUpload": RouteLimit("mediaUpload", user=Rate(30, 0.5), connection=Rate(30, 0.5)),
    "mediaDownload": RouteLimit("mediaDownload", user=Rate(200, 10), connection=Rate(200, 10)),
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
# What every function serving routes needs for the limits above.
LIMITED: dict[str, Access] = {"limits": "read_write"}

# Pushing to connections: the @connections API, the registry (a 410 removes the stale
# connection), and the delivery queue for the recipients whose push failed.
PUSHES: dict[str, Access] = {"connections": "read_write", "delivery": "send"}
ARCHIVING: dict[str, Access] = {"chats": "read_write", "messages": "read_write", "archive": "read_write"}

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
        uses={
            **LIMITED,
            **PUSHES,
            "chats": "read_write",
            "messages": "read_write",
            "media": "write",
            "notify": "send",
        },
        posts_to_connections=True,  # small chats are pushed from here, after the commit
    ),
    Function(
        name="chats",
        routes=("createChat", "addMembers", "removeMembers", "getMembers", "listChats"),
        # consent: who may add whom (blocks, `groupAdd`); member_jobs: the rest of a large add
        uses={
            **LIMITED,
            "chats": "read_write",
            "messages": "read_write",
            "receipts": "write",
            "consent": "read",
            "member_jobs": "send",
        },
    ),
    Function(
        name="member_jobs",
        two_way=False,
        # One job at a time: it takes chunks until its time runs low, then queues the rest.
        trigger=QueueTrigger(queue="member_jobs", batch_size=1, max_concurrency=2),
        uses={
            "chats": "read_write",
            "messages": "read_write",
            "consent": "read",
            "member_jobs": "send_consume",
        },
        timeout_s=60,
    ),
    Function(
        name="sync",
        routes=("sync",),
        # Writes only VOIDs into holes past the grace (and ends a membership change that died);
        # replays the device's to-device messages first.
        # archive: the history past the hot window (logic/archive.py)
        uses={
            **LIMITED,
            "chats": "read_write",
            "messages": "read_write",
            "inbox": "read",
            "archive": "read",
        },
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

# Environment every function gets besides its resources, on AWS and locally alike. Tracing never
# records a handler's response: answers carry presigned URLs, member lists and heads.
FUNCTION_ENV: dict[str, str] = {
    "POWERTOOLS_SERVICE_NAME": "chat",
    "POWERTOOLS_METRICS_NAMESPACE": "Chat",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
}
# Environment every function gets besides its resources.
CALLBACK_URL_ENV = "WS_CALLBACK_URL"  # the @connections management endpoint
JWT_SECRET_ENV = "CHAT_JWT_SECRET"  # local HS256 secret (the local stack only)
JWKS_URL_ENV = "CHAT_JWKS_URL"  # Cognito JWKS (AWS)
JWT_ISSUER_ENV = "CHAT_JWT_ISSUER"
JWT_AUDIENCE_ENV = "CHAT_JWT_AUDIENCE"
# JSON {platform: SNS platform application ARN} for the functions that send_push (CDK context on
# AWS; applications made in moto locally). A platform not named cannot be registered.
PUSH_PLATFORMS_ENV = "CHAT_PUSH_PLATFORMS"
PUSH_PLATFORMS = ("apns", "apns_sandbox", "fcm")
# A device is notified at most once per window (what comes meanwhile is counted into the next);
# a large group's offline members at most once per chat window; users per notify job.
NOTIFY_DEVICE_WINDOW_S = 30
NOTIFY_LARGE_CHAT_WINDOW_S = 60
NOTIFY_USERS_PER_JOB = 2000


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def queue(name: str) -> Queue:
    return next(q for q in QUEUES if q.name == name)


def bucket(name: str) -> Bucket:
    return next(b for b in BUCKETS if b.name == name)


def secret(name: str) -> Secret:
    return next(s for s in SECRETS if s.name == name)


def function(name: str) -> Function:
    return next(f for f in FUNCTIONS if f.name == name)


def resource_env_var(resource: str) -> str:
    """The env var through which a function learns a table's, queue's or bucket's physical name/URL
    (a secret's ARN)."""
    resources: tuple[Table | Queue | Bucket | Secret, ...] = (*TABLES, *QUEUES, *BUCKETS, *SECRETS)
    names = {r.name: r.env_var for r in resources}
    return names[resource]


def routes() -> dict[str, Function]:
    """Route key -> the function that serves it."""
    return {route: fn for fn in FUNCTIONS for route in fn.routes}


def authorizer_function() -> Function:
    return next(f for f in FUNCTIONS if f.authorizer)


# The HTTP fallback (PROTOCOL.md v1.1 "HTTP fallback"): `POST /v1/<action>` on an HTTP API, for
# clients whose network blocks WebSockets. Every two-way route is served but these, which only make
# sense on a live connection (a subscription, a typing notice, a connection's heartbeat), and the
# `$` routes (API Gateway's own).
WEBSOCKET_ONLY_ROUTES = frozenset({"heartbeat", "typing", "presence"})
# API Gateway HTTP API's payload limit; frames within it still keep the WebSocket's 128 KiB rule
# (the functions' decode_body).
HTTP_MAX_BODY_BYTES = 10 * 1024 * 1024
# The HTTP API stage's throttle (the CDK stack deploys it, the local gateway applies it): HTTP
# clients are the few whose network blocks WebSockets, and they poll; well under the account's
# 10,000 requests a second shared with the WebSocket API.
HTTP_STAGE_THROTTLE = Rate(burst=500, per_s=1000)


def http_routes() -> dict[str, Function]:
    """Action -> the function serving `POST /v1/<action>` on the HTTP API."""
    return {
        route: fn
        for route, fn in routes().items()
        if fn.two_way and not route.startswith("$") and route not in WEBSOCKET_ONLY_ROUTES
    }
