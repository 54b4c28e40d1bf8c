"""Shared fixtures of the unit tests: moto-backed tables and queue built from the wiring table, the
functions' repositories (store, registry, queue, ledger, receipts), seeded chats, API Gateway
WebSocket events, a fake Lambda context, the real handler files (`route` sends one a frame), and
plain fakes (a recording poster, a Pusher posting to it). Plain helpers are in helpers.py.

Nothing here is autouse except a guard that keeps every test away from real AWS (fake credentials,
no endpoint overrides) and clears the process-wide caches, so it is harmless for tests that never
touch the backend.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
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
from chat_backend.models.records import ChatMeta
from local_stack.bootstrap import create_table
from tests.unit.helpers import MakeChat, Receipting

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO / "functions"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
API_ID = "abc123defg"
STAGE = "test"
CALLBACK_URL = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"
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


def _request_context(route_key: str, event_type: str, connection_id: str) -> dict[str, Any]:
    # Shaped like powertools' sample apiGatewayWebSocketApi{Connect,Disconnect,Message}.json.
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "BFaVtH2HoAMFZEQ=",
        "requestTime": "28/Nov/2026:03:21:07 +0000",
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": 1795836067000,
        "requestTimeEpoch": 1795836067123,
        "identity": {"sourceIp": "203.0.113.7"},
        "requestId": "BFaVtH2HoAMFZEQ=",
        "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "connectionId": connection_id,
        "apiId": API_ID,
    }


def _authorizer(user_id: str, device_id: str) -> dict[str, str]:
    return {"principalId": user_id, "userId": user_id, "deviceId": device_id}


def message_event(
    body: Any,
    *,
    user_id: str = "u_alice",
    device_id: str = "d_phone",
    connection_id: str | None = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    """A WebSocket MESSAGE event; `body` is sent as is when a str, else JSON-encoded."""
    raw = body if body is None or isinstance(body, str) else json.dumps(body)
    if route_key is None:
        route_key = body.get("action", "$default") if isinstance(body, dict) else "$default"
    context = _request_context(route_key, "MESSAGE", connection_id or f"conn-{user_id}-{device_id}")
    context["messageId"] = "BFaVtfGSIAMCKug="
    context["authorizer"] = _authorizer(user_id, device_id)
    return {"requestContext": context, "body": raw, "isBase64Encoded": False}


def connect_event(user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
    context = _request_context("$connect", "CONNECT", connection_id)
    context["authorizer"] = _authorizer(user_id, device_id)
    host = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
    return {
        "headers": {"Host": host},
        "multiValueHeaders": {"Host": [host]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def disconnect_event(user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
    event = connect_event(user_id, device_id, connection_id)
    event["requestContext"].update(
        routeKey="$disconnect",
        eventType="DISCONNECT",
        disconnectStatusCode=1005,
        disconnectReason="Client-side close frame status not set",
    )
    return event


@pytest.fixture
def make_message_event() -> Callable[..., dict[str, Any]]:
    return message_event


@pytest.fixture
def make_connect_event() -> Callable[..., dict[str, Any]]:
    return connect_event


@dataclass
class FakeLambdaContext:
    function_name: str = "chat-unit-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:chat-unit-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@cache
def load_handler(name: str) -> ModuleType:
    """functions/<name>/handler.py, the file that deploys, under a module name unique to it."""
    module_name = f"unit_function_{name}_handler"
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS_DIR / name / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


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


# --- receipts ------------------------------------------------------------------------------------


@pytest.fixture
def receipts(aws_env: AwsEnv) -> ReceiptStore:
    return services.services().receipts


@pytest.fixture
def receipt(receipts: ReceiptStore, pusher: Pusher, poster: RecordingPoster) -> Receipting:
    """Records a receipt the way the receipts function does, pushing to `poster`."""
    summaries: FifoQueue = services.services().summaries_queue
    return Receipting(receipts, pusher, summaries, poster)
