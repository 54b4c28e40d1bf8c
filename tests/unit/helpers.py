"""Plain helpers shared by the unit tests: frames, membership changes, connected devices, wrapped
DynamoDB clients, fake clocks, store proxies and receipts. Fixtures stay in conftest.py; nothing
here imports it, so conftest can import from here."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore.awsrequest import AWSResponse

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import FifoQueue
from chat_backend.dal.limit_store import LimitStore
from chat_backend.dal.message_store import MessageStore
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.dal.send_store import SendStore
from chat_backend.dal.sequencer import Sequencer
from chat_backend.logic.audience import MemberListCache, MembershipCache
from chat_backend.logic.chats import create_chat
from chat_backend.logic.members import add_members, remove_members
from chat_backend.logic.push import Pusher
from chat_backend.logic.rate_limits import RateLimiter, RouteGuard
from chat_backend.logic.receipts import record_receipt
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models.client_frames import (
    AddMembersFrame,
    CreateChatFrame,
    ReceiptFrame,
    RemoveMembersFrame,
    SendFrame,
)
from chat_backend.models.common import now_iso
from chat_backend.models.events import Caller
from chat_backend.models.records import StoredVoid
from chat_backend.models.server_frames import AckFrame, ChatFrame
from chat_backend.services import services

# What the tests' fixtures are, as parameter types.
MakeChat = Callable[..., str]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
HandlerOf = Callable[[str], Handler]
MakeEvent = Callable[..., dict[str, Any]]
Route = Callable[..., dict[str, Any]]  # route(name, body, **event): the function's response

GRACE_S = 5.0  # the hole grace the membership changes are given
POLICY = SendPolicy(dedup_ttl_s=3600)
T0 = 1_800_000_000.0  # the fake clocks' start (epoch seconds)


def caller(user_id: str = "u_alice", device_id: str = "d_phone", connection_id: str | None = None) -> Caller:
    return Caller(
        user_id=user_id, device_id=device_id, connection_id=connection_id or f"conn-{user_id}-{device_id}"
    )


# --- frames and use cases ------------------------------------------------------------------------


def send_frame(
    chat_id: str, client_msg_id: str | None = None, data: bytes | None = None, media: list[str] | None = None
) -> SendFrame:
    """A send of `data` (by default the clientMsgId's own bytes) under `client_msg_id` (by default
    a fresh one)."""
    client_msg_id = client_msg_id or str(uuid.uuid4())
    body = data if data is not None else client_msg_id.encode()
    return SendFrame.model_validate(
        {
            "action": "send",
            "clientMsgId": client_msg_id,
            "chatId": chat_id,
            "ciphertext": base64.b64encode(body).decode(),
            "mediaIds": media or [],
        }
    )


def send(
    ledger: Ledger, who: Caller | str, chat_id: str, at: float | None = None, policy: SendPolicy = POLICY
) -> AckFrame:
    """A new message (fresh clientMsgId) from `who` (a user: her phone), sent at `at` (else now);
    returns its ACK."""
    sender = who if isinstance(who, Caller) else caller(who)
    clock = time.time if at is None else lambda: at
    return send_message(ledger, sender, send_frame(chat_id), policy, clock=clock).ack


def send_many(ledger: Ledger, who: Caller | str, chat_id: str, count: int) -> list[AckFrame]:
    """`count` new messages from `who`, one after another; their ACKs."""
    return [send(ledger, who, chat_id) for _ in range(count)]


def add_frame(chat_id: str, members: list[str]) -> AddMembersFrame:
    body = {"action": "addMembers", "requestId": "r1", "chatId": chat_id, "members": members}
    return AddMembersFrame.model_validate(body)


def remove_frame(chat_id: str, members: list[str]) -> RemoveMembersFrame:
    body = {"action": "removeMembers", "requestId": "r1", "chatId": chat_id, "members": members}
    return RemoveMembersFrame.model_validate(body)


def add(ledger: Ledger, by: Caller, chat_id: str, users: list[str], grace_s: float = GRACE_S) -> ChatFrame:
    return adding(ledger, by, add_frame(chat_id, users), grace_s)


def adding(ledger: Ledger, by: Caller, frame: AddMembersFrame, grace_s: float = GRACE_S) -> ChatFrame:
    """addMembers with the functions' consent store and pool."""
    return add_members(ledger, services().consent, services().io_pool, by, frame, grace_s)


def creating(store: ChatStore, by: Caller, frame: CreateChatFrame) -> ChatFrame:
    """createChat with the functions' consent store and pool."""
    return create_chat(store, services().consent, services().io_pool, by, frame)


def remove(ledger: Ledger, by: Caller, chat_id: str, users: list[str], grace_s: float = GRACE_S) -> ChatFrame:
    return remove_members(ledger, by, remove_frame(chat_id, users), grace_s)


def fill_hole(ledger: Ledger, chat_id: str, at_ms: int = int(T0 * 1000)) -> int:
    """Reserve the chat's next seq (at `at_ms`), as a writer that died would, and fill it with a
    VOID; returns that seq."""
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    hole = ledger.sequencer.reserve(chat_id, chat.members_version, at_ms).head_seq
    ledger.messages.fill_void(StoredVoid(chat_id=chat_id, seq=hole, created_at=now_iso()))
    return hole


# --- connected devices ---------------------------------------------------------------------------


def online(
    registry: ConnectionRegistry, user_id: str, device_id: str = "d_phone", connection_id: str | None = None
) -> str:
    """Register the device as connected (conn-<user>-<device> unless named); returns the connection."""
    connection_id = connection_id or f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def online_all(registry: ConnectionRegistry, *users: str, device_id: str = "d_phone") -> set[str]:
    """Each user connected on one device; returns their connections."""
    return {online(registry, user, device_id) for user in users}


# --- the chats table, read back ------------------------------------------------------------------


def member_ids(store: ChatStore, chat_id: str) -> set[str]:
    return {u for page in store.members.pages(chat_id) for u in page}


def meta_item(aws_env: Any, chat_id: str) -> dict[str, Any]:
    [meta] = [i for i in aws_env.scan("chats") if i["chatId"] == chat_id and i["sk"] == "META"]
    return meta


def claims(aws_env: Any, chat_id: str) -> list[dict[str, Any]]:
    return [i for i in aws_env.scan("chats") if i["chatId"] == chat_id and i["sk"].startswith("DEDUP#")]


def announcements(aws_env: Any, chat_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(seq, body) of each membership change announced in the chat (a message from "system")."""
    return [
        (int(m["seq"]), json.loads(bytes(m["ciphertext"])))
        for m in aws_env.messages(chat_id)
        if m.get("sender") == "system"
    ]


def layout(aws_env: Any, chat_id: str) -> list[tuple[int, str]]:
    """What each stored seq of the chat holds: a sender, or VOID."""
    return [(int(m["seq"]), m.get("kind") or m["sender"]) for m in aws_env.messages(chat_id)]


def head_of(ledger: Ledger, chat_id: str) -> int:
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    return chat.head_seq


# --- clients, stores and clocks that stage what a test needs -------------------------------------


class WrappedDdb:
    """A client that runs each of its calls, those a paginator makes (one a page) included, through
    `around(operation, request, call)`."""

    def __init__(self, ddb: Any) -> None:
        self.ddb = ddb

    def around(self, name: str, kwargs: dict[str, Any], call: Callable[[], Any]) -> Any:
        return call()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.ddb, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: self.around(name, kwargs, lambda: method(*args, **kwargs))

    def get_paginator(self, name: str) -> Any:
        paginator, wrapped = self.ddb.get_paginator(name), self

        class Pages:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                pages = iter(paginator.paginate(**kwargs))
                while (page := wrapped.around(name, kwargs, lambda: next(pages, None))) is not None:
                    yield page
                    if "LastEvaluatedKey" not in page:
                        return  # the last page: asking for the next one would call nothing

        return Pages()


class LockedDdb(WrappedDdb):
    """Serialises calls into in-process moto, which is not thread-safe inside TransactWriteItems
    (it snapshots and restores whole tables). The races under test are between the reads and
    the writes of concurrent use cases, which this keeps intact."""

    def __init__(self, ddb: Any) -> None:
        super().__init__(ddb)
        self.lock = threading.Lock()

    def around(self, name: str, kwargs: dict[str, Any], call: Callable[[], Any]) -> Any:
        with self.lock:
            return call()


class CountingDdb(WrappedDdb):
    """Records every call into the client it wraps (thread-safe); each query of a chat's member
    list (its MEMBER# items) takes `member_query_delay_s` longer."""

    WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")

    def __init__(self, ddb: Any, member_query_delay_s: float = 0.0) -> None:
        super().__init__(ddb)
        self.delay_s = member_query_delay_s
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def around(self, name: str, kwargs: dict[str, Any], call: Callable[[], Any]) -> Any:
        with self.lock:
            self.calls.append((name, kwargs))
        if self._chat_of_member_query(name, kwargs) is not None:
            time.sleep(self.delay_s)
        return call()

    @staticmethod
    def _chat_of_member_query(name: str, kwargs: dict[str, Any]) -> str | None:
        values = kwargs.get("ExpressionAttributeValues", {})
        return values[":pk"]["S"] if name == "query" and values.get(":prefix") == {"S": "MEMBER#"} else None

    @property
    def member_queries(self) -> list[str]:
        """The chat of each member-list query, in order."""
        chats = (self._chat_of_member_query(name, kwargs) for name, kwargs in self.calls)
        return [chat_id for chat_id in chats if chat_id is not None]

    def writes(self) -> list[tuple[str, str, str]]:
        """(operation, table, item) of each write: the item by its chats sk or messages seq."""
        found = []
        for name, kwargs in self.calls:
            if name not in self.WRITES:
                continue
            key = kwargs.get("Item") or kwargs.get("Key") or {}
            item = key["sk"]["S"].split("#")[0] if "sk" in key else f"seq {key['seq']['N']}" if key else "*"
            found.append((name, kwargs.get("TableName", "*"), item))
        return found


def chats_on(store: ChatStore, ddb: Any) -> ChatStore:
    """The same chat store on another client (a LockedDdb, a CountingDdb)."""
    members = store.members
    return ChatStore(
        store.chats_table, members.messages_table, ddb=ddb, receipts_table=members.receipts_table
    )


def ledger_on(ddb: Any) -> Ledger:
    """The functions' ledger on another client, with cold caches."""
    base = services().ledger
    return Ledger(
        chats=chats_on(base.chats, ddb),
        sends=SendStore(base.sends.chats_table, ddb),
        sequencer=Sequencer(base.sequencer.chats_table, ddb),
        messages=MessageStore(base.messages.messages_table, base.messages.chats_table, ddb),
        member_lists=MemberListCache(),
        memberships=MembershipCache(),
    )


class Proxy:
    """Delegates to a real store; subclasses hook one method to stage a race."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class FakeClock:
    """A clock whose sleep advances it (and is recorded): waits cost no real time."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_threads(target: Callable[..., None], args: Iterable[tuple[Any, ...]], timeout_s: float = 60) -> None:
    """Start one thread per argument tuple at once, then wait for them all."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)


# --- receipts ------------------------------------------------------------------------------------


def receipt_frame(chat_id: str, kind: str = "READ", **form: Any) -> ReceiptFrame:
    fields = {"serverMsgId": form["msg"]} if "msg" in form else {"upToSeq": form["up_to"]}
    return ReceiptFrame.model_validate({"action": "receipt", "chatId": chat_id, "type": kind, **fields})


class Receipting:
    """record_receipt with the test's repositories, a Pusher posting to `poster`, a fixed clock."""

    def __init__(self, receipts: ReceiptStore, pusher: Pusher, summaries: FifoQueue, poster: Any) -> None:
        self.receipts, self.pusher, self.summaries, self.poster = receipts, pusher, summaries, poster
        self.now = T0

    def __call__(self, user_id: str, chat_id: str, kind: str = "READ", **form: Any) -> None:
        record_receipt(
            self.receipts,
            services().consent,
            self.pusher,
            self.summaries,
            caller(user_id),
            receipt_frame(chat_id, kind, **form),
            clock=lambda: self.now,
        )


def pushed(poster: Any) -> list[tuple[set[str], dict[str, Any]]]:
    """(connections, frame) of each distinct frame posted since the last look, in posting order."""
    groups: dict[str, set[str]] = {}
    for connection_id, frame in poster.posts:
        groups.setdefault(json.dumps(frame, sort_keys=True), set()).add(connection_id)
    poster.posts.clear()
    return [(connections, json.loads(frame)) for frame, connections in groups.items()]


def watermark(aws_env: Any, chat_id: str, user_id: str) -> dict[str, Any]:
    items = [i for i in aws_env.scan("receipts") if i["chatId"] == chat_id and i["userId"] == user_id]
    return items[0] if items else {}


def fake_management_api(management_api: Any) -> list[tuple[str, dict[str, Any]]]:
    """Answers every PostToConnection of the functions' client with 200 (thread-safe, any order)
    and returns the list of (connection, frame) it was asked to post."""
    posts: list[tuple[str, dict[str, Any]]] = []
    events = management_api.meta.events
    events.register(
        "before-parameter-build.apigatewaymanagementapi.PostToConnection",
        lambda params, **_: posts.append((params["ConnectionId"], json.loads(params["Data"]))),
    )
    events.register(
        "before-call.apigatewaymanagementapi.PostToConnection",
        lambda **_: (AWSResponse(None, 200, {}, None), {}),  # type: ignore[arg-type]
    )
    return posts


def no_limits() -> RouteGuard:
    """A guard with no route limited: for tests of route handling itself."""
    return RouteGuard(RateLimiter(LimitStore("unused", ddb=object())), {})
