"""Shared fixtures of the unit tests: moto-backed tables and queue built from the wiring table, the
functions' repositories (store, registry, queue, ledger, receipts), seeded chats, API Gateway
WebSocket events, a fake Lambda context, the real handler files (`route` sends one a frame), plain
fakes (a recording poster, a Pusher posting to it), a Stubber on the management API with the
delivery queue's retries recorded, and the presence tests' world. Plain helpers are in helpers.py,
the events and handler files themselves in lambda_events.py.

Nothing here is autouse except a guard that keeps every test away from real AWS (fake credentials,
no endpoint overrides) and clears the process-wide caches, so it is harmless for tests that never
touch the backend.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from chat_backend import services, wiring
from chat_backend.dal import aws
from chat_backend.dal.chat_keys import direct_chat_id
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, FifoQueue
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger
from chat_backend.models.common import now_iso
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.models.records import ChatMeta
from local_stack.bootstrap import create_table
from tests.unit.helpers import MakeChat, Receipting
from tests.unit.lambda_events import (
    CALLBACK_URL,
    REGION,
    FakeLambdaContext,
    connect_event,
    load_handler,
    message_event,
)
from tests.unit.presence_world import BOB_PHONE, T0, World

# At least 32 bytes, so PyJWT does not warn about a short HMAC key.
JWT_SECRET = "unit-test-secret-0123456789abcdef0123456789"


def physical_name(logical: str) -> str:
    """Physical names differ from logical ones, so a test passes only if the env wiring is used."""
    return f"unit-{logical}"


def clear_caches() -> None:
    services.forget()
    aws.client.cache_clear()
    session = getattr(aws, "session", None)  # the shared boto3 session, where there is one
    if session is not None and hasattr(session, "cache_clear"):
        session.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    # What the functions get from the wiring on AWS, minus tracing (no X-Ray daemon here).
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "chat")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Chat")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    clear_caches()
    yield
    clear_caches()


# --- moto ----------------------------------------------------------------------------------------


@dataclass
class AwsEnv:
    ddb: Any
    sqs: Any
    tables: dict[str, str]  # logical -> physical name
    queue_urls: dict[str, str]  # logical -> URL
    buckets: dict[str, str] = field(default_factory=dict)  # logical -> physical name
    s3: Any = None

    def scan(self, logical_table: str) -> list[dict[str, Any]]:
        pages = self.ddb.get_paginator("scan").paginate(
            TableName=self.tables[logical_table], ConsistentRead=True
        )
        return [aws.from_item(i) for page in pages for i in page["Items"]]

    def messages(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        found = [m for m in self.scan("messages") if chat_id is None or m["chatId"] == chat_id]
        return sorted(found, key=lambda m: (m["chatId"], int(m["seq"])))

    def receive_all(self, logical_queue: str = "delivery") -> list[dict[str, Any]]:
        """Every visible message of the queue (FIFO groups included), with its attributes."""
        received: list[dict[str, Any]] = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_urls[logical_queue],
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            batch = resp.get("Messages", [])
            if not batch:
                return received
            received.extend(batch)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_urls[logical_queue],
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )


@cache
def _test_clients() -> tuple[Any, Any]:
    """The tests' own clients, built once: moto intercepts them whenever a mock is active, and
    building clients is most of a fixture's cost."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return session.client("dynamodb"), session.client("sqs")


@cache
def _test_s3() -> Any:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return session.client("s3")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """In-process moto with every table and queue of the wiring, and the env vars the functions read."""
    with mock_aws():
        ddb, sqs = _test_clients()
        tables: dict[str, str] = {}
        for table in wiring.TABLES:
            tables[table.name] = physical_name(table.name)
            create_table(ddb, table, tables[table.name])
            monkeypatch.setenv(table.env_var, tables[table.name])
        queue_urls: dict[str, str] = {}
        for queue in wiring.QUEUES:
            suffix = ".fifo" if queue.fifo else ""
            attributes = {"FifoQueue": "true"} if queue.fifo else {}
            attributes["VisibilityTimeout"] = str(queue.visibility_timeout_s)
            url = sqs.create_queue(QueueName=physical_name(queue.name) + suffix, Attributes=attributes)
            queue_urls[queue.name] = url["QueueUrl"]
            monkeypatch.setenv(queue.env_var, queue_urls[queue.name])
        buckets: dict[str, str] = {}
        for bucket in wiring.BUCKETS:
            buckets[bucket.name] = physical_name(bucket.name)
            _test_s3().create_bucket(Bucket=buckets[bucket.name])
            monkeypatch.setenv(bucket.env_var, buckets[bucket.name])
        monkeypatch.setenv(wiring.CALLBACK_URL_ENV, CALLBACK_URL)
        monkeypatch.setenv(wiring.JWT_SECRET_ENV, JWT_SECRET)
        clear_caches()
        yield AwsEnv(ddb=ddb, sqs=sqs, tables=tables, queue_urls=queue_urls, buckets=buckets, s3=_test_s3())
        clear_caches()


@pytest.fixture
def store(aws_env: AwsEnv) -> ChatStore:
    return services.services().store


@pytest.fixture
def registry(aws_env: AwsEnv) -> ConnectionRegistry:
    return services.services().registry


@pytest.fixture
def queue(aws_env: AwsEnv) -> DeliveryQueue:
    return services.services().queue


@pytest.fixture
def io_pool() -> Iterator[ThreadPoolExecutor]:
    """What the functions get as `services().io_pool`: bounded concurrency for AWS calls."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="unit-io") as pool:
        yield pool


@pytest.fixture
def ledger(aws_env: AwsEnv) -> Ledger:
    """The functions' ledger: what a send (or a membership change) reads and writes."""
    return services.services().ledger


@pytest.fixture
def management_api(aws_env: AwsEnv) -> Any:
    """The very apigatewaymanagementapi client the functions' poster uses (cached per process),
    so a botocore Stubber attached to it sees every PostToConnection."""
    return aws.client("apigatewaymanagementapi", endpoint_url=CALLBACK_URL)


@pytest.fixture
def make_chat(store: ChatStore) -> Callable[..., str]:
    """Seed a chat through the store: the first user is its admin, the others members."""

    def make(*members: str, chat_id: str | None = None, kind: str = "group") -> str:
        """kind="direct": the pair's direct chat, as both sides had chosen it (each sent in it)."""
        direct = kind == "direct"
        chat_id = chat_id or (direct_chat_id(*members) if direct else f"c_{uuid.uuid4().hex[:12]}")
        meta = ChatMeta(
            chat_id=chat_id,
            kind=kind,  # type: ignore[arg-type]
            name=None,
            head_seq=0,
            member_count=len(members),
            created_at=now_iso(),
            pair=(min(members), max(members)) if direct else None,
            engaged=frozenset(members) if direct else frozenset(),
        )
        roles = {user: ("admin" if i == 0 else "member") for i, user in enumerate(members)}
        store.create_chat(meta, members[0], roles)
        return chat_id

    return make


@pytest.fixture
def chat_id(make_chat: MakeChat) -> str:
    """alice's chat with bob: a group of the two, alice its admin."""
    return make_chat("u_alice", "u_bob")


@pytest.fixture
def group_id(make_chat: MakeChat) -> str:
    """alice's group with bob, carol and dave, alice its admin."""
    return make_chat("u_alice", "u_bob", "u_carol", "u_dave")


# --- events and handlers -------------------------------------------------------------------------


@pytest.fixture
def make_message_event() -> Callable[..., dict[str, Any]]:
    return message_event


@pytest.fixture
def make_connect_event() -> Callable[..., dict[str, Any]]:
    return connect_event


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def handler_of() -> Callable[[str], Callable[[dict[str, Any], Any], dict[str, Any]]]:
    return lambda name: load_handler(name).handler


@pytest.fixture
def route(aws_env: AwsEnv, lambda_context: FakeLambdaContext) -> Callable[..., dict[str, Any]]:
    """Sends `body` to functions/<name> as a WebSocket MESSAGE event (with message_event's
    keywords: user_id, device_id, connection_id, route_key) and returns the function's response.
    Every route's rate limits are kept in (moto's) DynamoDB."""

    def call(name: str, body: Any, **event: Any) -> dict[str, Any]:
        return load_handler(name).handler(message_event(body, **event), lambda_context)

    return call


# --- plain fakes ---------------------------------------------------------------------------------


@dataclass
class RecordingPoster:
    """A ConnectionPoster that keeps what it was asked to post."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def post(self, connection_id: str, data: str) -> None:
        self.posts.append((connection_id, json.loads(data)))

    def frames(self) -> list[dict[str, Any]]:
        return [frame for _, frame in self.posts]


@pytest.fixture
def poster() -> RecordingPoster:
    return RecordingPoster()


@pytest.fixture
def pusher(
    poster: RecordingPoster, registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: ThreadPoolExecutor
) -> Pusher:
    """A Pusher posting to the recording `poster`, retrying through the delivery queue."""
    return Pusher(poster, registry, queue, io_pool)  # type: ignore[arg-type]


class Enqueued:
    """Every SendMessageBatch entry the functions' SQS client sends, as (envelope, DelaySeconds)."""

    def __init__(self, sqs: Any) -> None:
        self.entries: list[dict[str, Any]] = []
        sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.entries.extend(params["Entries"])

    def envelopes(self) -> list[tuple[DeliveryEnvelope, int]]:
        return [
            (DeliveryEnvelope.model_validate_json(e["MessageBody"]), e["DelaySeconds"]) for e in self.entries
        ]


@pytest.fixture
def stub(management_api: Any) -> Iterator[Stubber]:
    """A botocore Stubber on the functions' management API: each post must be one it expects."""
    with Stubber(management_api) as stubber:
        yield stubber


@pytest.fixture
def enqueued(queue: DeliveryQueue) -> Enqueued:
    """What the functions send to the delivery queue (the Pusher's retries)."""
    return Enqueued(queue.sqs)


# --- receipts ------------------------------------------------------------------------------------


@pytest.fixture
def receipts(aws_env: AwsEnv) -> ReceiptStore:
    return services.services().receipts


@pytest.fixture
def receipt(receipts: ReceiptStore, pusher: Pusher, poster: RecordingPoster) -> Receipting:
    """Records a receipt the way the receipts function does, pushing to `poster`."""
    summaries: FifoQueue = services.services().summaries_queue
    return Receipting(receipts, pusher, summaries, poster)


# --- presence ------------------------------------------------------------------------------------


@pytest.fixture
def world(
    aws_env: AwsEnv,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    io_pool: ThreadPoolExecutor,
    poster: RecordingPoster,
) -> World:
    """presence_world.py's World on the functions' presence store and settle queue."""
    built = services.services()
    return World(aws_env, store, registry, built.presence, queue, built.settle_queue, io_pool, poster)


@pytest.fixture
def bob_watches_alice(world: World, make_chat: MakeChat) -> World:
    """Alice and Bob chat directly (both chose it); Bob is online and subscribed to Alice, who has
    never connected."""
    make_chat("u_alice", "u_bob", kind="direct")
    world.connect(BOB_PHONE, T0)
    world.subscribe(BOB_PHONE, ["u_alice"], T0)
    world.poster.posts.clear()
    return world
