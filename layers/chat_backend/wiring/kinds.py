"""What the wiring table is made of: the kinds of resource (tables, queues, buckets, secrets), the
access a function may have to each, the triggers that invoke a function, and a function itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

AttrType = Literal["S", "N", "B"]
# Tables: DynamoDB data actions. Queues: send / consume / both (a consumer that re-enqueues).
# Buckets: read = s3:GetObject, write = s3:PutObject (a presigned POST or GET is only as good as
# the signer's own permission).
Access = Literal["read", "write", "read_write", "send", "consume", "send_consume"]


@dataclass(frozen=True)
class Resource:
    """A resource a function may use: it learns the physical name (URL, ARN) from the env var
    f"{NAME}{env_suffix}", which `chat_backend.config` reads back."""

    name: str  # logical name
    env_suffix: ClassVar[str]

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}{self.env_suffix}"


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: tuple[str, AttrType]
    sort_key: tuple[str, AttrType] | None = None
    # KEYS_ONLY: an update of the base item that leaves the index's keys alone writes nothing to it.
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


@dataclass(frozen=True)
class Table(Resource):
    partition_key: tuple[str, AttrType]
    sort_key: tuple[str, AttrType] | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    stream: Literal["NEW_IMAGE", "NEW_AND_OLD_IMAGES"] | None = None

    env_suffix = "_TABLE"


@dataclass(frozen=True)
class Queue(Resource):
    fifo: bool = True
    visibility_timeout_s: int = 180  # AWS advice: 6 x the consumer's timeout
    max_receive_count: int = 5  # then redriven to the DLQ
    delay_s: int = 0  # every message becomes visible this long after it is sent (deferred jobs)

    env_suffix = "_QUEUE_URL"

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


@dataclass(frozen=True)
class Bucket(Resource):
    abort_incomplete_upload_days: int = 1  # parts of an abandoned multipart upload cost storage
    intelligent_tiering_after_days: int | None = None  # then S3 moves it between access tiers by use
    expire_noncurrent_after_days: int | None = None  # overwritten / deleted versions kept this long
    # Objects still tagged `state=pending` (uploaded, never attached to a message) expire then.
    expire_pending_after_days: int | None = None
    # Objects move to S3 Glacier Instant Retrieval this long after they are written.
    glacier_ir_after_days: int | None = None

    env_suffix = "_BUCKET"


@dataclass(frozen=True)
class Secret(Resource):
    """A secret the deployer provides (Secrets Manager; never created by either stack, never in the
    repository). A stack without it gives the functions that use it neither its ARN nor a grant."""

    env_suffix = "_SECRET_ARN"


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
