"""The resources both stacks create: tables, queues, buckets, and the secrets a deployer provides."""

from __future__ import annotations

from chat_backend.wiring.kinds import Bucket, Index, Queue, Resource, Secret, Table

TABLES: tuple[Table, ...] = (
    Table(
        "chats",
        ("chatId", "S"),
        ("sk", "S"),
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
    Table("messages", ("chatId", "S"), ("seq", "N"), stream="NEW_IMAGE"),
    Table("connections", ("userId", "S"), ttl_attribute="expiresAt"),
    # Per-member watermarks: sk userId holds deliveredUpTo / readUpTo (monotonic).
    Table("receipts", ("chatId", "S"), ("userId", "S")),
    # sk STATE: a user's status and lastSeen; sk SUB#...: who watches the user (TTL'd);
    # sk WATCH#<device>: whom a device watches (so a heartbeat can renew its subscriptions).
    Table("presence", ("userId", "S"), ("sk", "S"), ttl_attribute="expiresAt"),
    # Rate-limit buckets (logic/rate_limits.py): key `u#<user>` (or another scope), sk the bucket;
    # one attribute per limited party holding its bucket's theoretical arrival time (GCRA). Not
    # state: an item past `expiresAt` is the same as no item (every bucket full).
    Table("limits", ("key", "S"), ("bucket", "S"), ttl_attribute="expiresAt"),
    # Consent, per user: sk PRIVACY holds the user's settings (`groupAdd`); BLOCKS#<user> one user
    # this user blocks, and BLOCKEDBY#<user> its mirror on the blocked user's partition (so what a
    # user does can be kept from everyone who blocks them with one Query).
    Table("consent", ("userId", "S"), ("sk", "S")),
    # End-to-end encryption public keys, per user: sk DEVICE#<device> holds a device's identity key
    # and signed prekey; sk OTPK#<device>#<keyId> one unused one-time prekey (deleted when handed out).
    Table("keys", ("userId", "S"), ("sk", "S")),
    # Each device's to-device messages until it acknowledges them (pk `<user>#<device>`, sk a
    # time-ordered id), and senders' transaction parts (pk `TXN#<user>#<device>`): dal/inbox_store.py.
    Table("inbox", ("device", "S"), ("id", "S"), ttl_attribute="expiresAt"),
    # Mobile push (logic/notifications.py): key <user> holds `devices`, a map of each device's
    # platform, token, SNS endpoint and when it was last notified; key CHAT#<chat> the last time a
    # large group's offline members were notified (one round per window, whatever the traffic).
    Table("push", ("key", "S"), ttl_attribute="expiresAt"),
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


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def queue(name: str) -> Queue:
    return next(q for q in QUEUES if q.name == name)


def bucket(name: str) -> Bucket:
    return next(b for b in BUCKETS if b.name == name)


def secret(name: str) -> Secret:
    return next(s for s in SECRETS if s.name == name)


def resource_env_var(resource: str) -> str:
    """The env var through which a function learns a table's, queue's or bucket's physical name/URL
    (a secret's ARN)."""
    resources: tuple[Resource, ...] = (*TABLES, *QUEUES, *BUCKETS, *SECRETS)
    names = {r.name: r.env_var for r in resources}
    return names[resource]
