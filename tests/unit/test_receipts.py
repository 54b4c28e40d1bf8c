"""Receipts (logic/receipts.py, dal/receipt_store.py, functions/receipts): monotonic watermarks,
who is told (RECEIPTs pushed directly to the senders' devices), refusals, and what a failed push
leaves. Large-group summaries and the receipts query are in test_receipts_summaries.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chat_backend import services
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, FifoQueue
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.errors import BadRequest, ConnectionGone, Forbidden, NotFound
from chat_backend.logic.members import add_members
from chat_backend.logic.push import Pusher, RetryPolicy
from chat_backend.logic.receipts import record_receipt
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models import (
    AckFrame,
    AddMembersFrame,
    Caller,
    DeliveryEnvelope,
    ReceiptFrame,
    SendFrame,
    StoredVoid,
    now_iso,
)
from tests.unit.conftest import RecordingPoster

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
POLICY = SendPolicy(dedup_ttl_s=3600)


# --- helpers shared with test_receipts_summaries.py ----------------------------------------------


def who(user_id: str, device_id: str = "d_phone") -> Caller:
    return Caller(user_id=user_id, device_id=device_id, connection_id=f"conn-{user_id}-{device_id}")


def online(registry: ConnectionRegistry, user_id: str, device_id: str = "d_phone") -> str:
    connection_id = f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def send(ledger: Ledger, user_id: str, chat_id: str) -> AckFrame:
    frame = SendFrame.model_validate(
        {"action": "send", "clientMsgId": str(uuid.uuid4()), "chatId": chat_id, "ciphertext": "aGk="}
    )
    return send_message(ledger, who(user_id), frame, POLICY).ack


def receipt_frame(chat_id: str, kind: str = "READ", **form: Any) -> ReceiptFrame:
    fields = {"serverMsgId": form["msg"]} if "msg" in form else {"upToSeq": form["up_to"]}
    return ReceiptFrame.model_validate({"action": "receipt", "chatId": chat_id, "type": kind, **fields})


def pushed(poster: RecordingPoster) -> list[tuple[set[str], dict[str, Any]]]:
    """(connections, frame) of each distinct frame posted since the last look, in posting order."""
    groups: dict[str, set[str]] = {}
    for connection_id, frame in poster.posts:
        groups.setdefault(json.dumps(frame, sort_keys=True), set()).add(connection_id)
    poster.posts.clear()
    return [(connections, json.loads(frame)) for frame, connections in groups.items()]


class Receipting:
    """record_receipt with the test's repositories, a Pusher posting to `poster`, a fixed clock."""

    def __init__(
        self, receipts: ReceiptStore, pusher: Pusher, summaries: FifoQueue, poster: RecordingPoster
    ) -> None:
        self.receipts, self.pusher, self.summaries, self.poster = receipts, pusher, summaries, poster
        self.now = 1_800_000_000.0

    def __call__(self, user_id: str, chat_id: str, kind: str = "READ", **form: Any) -> None:
        record_receipt(
            self.receipts,
            self.pusher,
            self.summaries,
            who(user_id),
            receipt_frame(chat_id, kind, **form),
            clock=lambda: self.now,
        )


@pytest.fixture
def ledger(aws_env: Any) -> Ledger:
    return services.services().ledger


@pytest.fixture
def receipts(aws_env: Any) -> ReceiptStore:
    return services.services().receipts


@pytest.fixture
def summaries(aws_env: Any) -> FifoQueue:
    return services.services().summaries_queue


@pytest.fixture
def pusher(
    registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: ThreadPoolExecutor, poster: RecordingPoster
) -> Pusher:
    return Pusher(poster=poster, registry=registry, queue=queue, pool=io_pool)  # type: ignore[arg-type]


@pytest.fixture
def receipt(
    receipts: ReceiptStore, pusher: Pusher, summaries: FifoQueue, poster: RecordingPoster
) -> Receipting:
    return Receipting(receipts, pusher, summaries, poster)


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


# --- watermarks and who is told ------------------------------------------------------------------


def test_a_read_receipt_reaches_every_device_of_the_sender_and_nobody_else(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given alice (phone + laptop online) sent two messages to bob (online)
    chat_id = make_chat("u_alice", "u_bob")
    alice = {online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")}
    online(registry, "u_bob")
    send(ledger, "u_alice", chat_id)
    second = send(ledger, "u_alice", chat_id)
    # When bob marks the second one READ
    receipt("u_bob", chat_id, "READ", msg=second.server_msg_id)
    # Then both of alice's devices get one RECEIPT naming that message; bob's devices get nothing
    [(connections, frame)] = pushed(receipt.poster)
    assert connections == alice
    assert frame == {
        "type": "RECEIPT",
        "chatId": chat_id,
        "userId": "u_bob",
        "receiptType": "READ",
        "serverMsgId": second.server_msg_id,
        "seq": 2,
        "at": frame["at"],
    }
    # And nothing went through the delivery queue
    assert aws_env.receive_all("delivery") == []
    # And bob's watermarks stand at 2, delivered too (READ implies DELIVERED)
    mark = watermark(aws_env, chat_id, "u_bob")
    assert (mark["readUpTo"], mark["deliveredUpTo"]) == (2, 2)
    assert mark["readAt"] == mark["deliveredAt"] == frame["at"]


def test_a_repeated_or_older_receipt_changes_nothing_and_is_not_forwarded(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given bob has already acknowledged alice's two messages as DELIVERED up to 2
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    first = send(ledger, "u_alice", chat_id)
    second = send(ledger, "u_alice", chat_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=2)
    assert len(pushed(receipt.poster)) == 1
    before = watermark(aws_env, chat_id, "u_bob")
    # When the same receipt comes again, in both forms, and an older one after it
    receipt("u_bob", chat_id, "DELIVERED", up_to=2)
    receipt("u_bob", chat_id, "DELIVERED", msg=second.server_msg_id)
    receipt("u_bob", chat_id, "DELIVERED", msg=first.server_msg_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=1)
    # Then the watermark did not move (nor its time) and nothing more was forwarded
    assert watermark(aws_env, chat_id, "u_bob") == before
    assert pushed(receipt.poster) == []


def test_read_implies_delivered_so_a_later_delivered_is_news_to_nobody(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given bob read alice's message 1 of 1
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    send(ledger, "u_alice", chat_id)
    receipt("u_bob", chat_id, "READ", up_to=1)
    [(_, frame)] = pushed(receipt.poster)
    assert frame["receiptType"] == "READ" and frame["upToSeq"] == 1 and "serverMsgId" not in frame
    # When his device's DELIVERED for it arrives late
    receipt("u_bob", chat_id, "DELIVERED", up_to=1)
    # Then it is already covered: nothing is forwarded and delivered stays at 1
    assert pushed(receipt.poster) == []
    assert watermark(aws_env, chat_id, "u_bob")["deliveredUpTo"] == 1
    # And a READ watermark only lifts a lower DELIVERED one, never lowers it
    send(ledger, "u_alice", chat_id)
    send(ledger, "u_alice", chat_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=3)
    receipt("u_bob", chat_id, "READ", up_to=2)
    mark = watermark(aws_env, chat_id, "u_bob")
    assert (mark["deliveredUpTo"], mark["readUpTo"]) == (3, 2)


def test_each_sender_of_the_newly_covered_messages_is_told_once_and_system_and_self_are_not(
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given a group where alice sent 1, carol sent 2, bob sent 3, alice's adding erin is the system
    # message 4, and alice sent 5
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice, carol, bob = online(registry, "u_alice"), online(registry, "u_carol"), online(registry, "u_bob")
    send(ledger, "u_alice", chat_id)
    carols = send(ledger, "u_carol", chat_id)
    send(ledger, "u_bob", chat_id)
    add = {"action": "addMembers", "requestId": "r1", "chatId": chat_id, "members": ["u_erin"]}
    add_members(ledger, who("u_alice"), AddMembersFrame.model_validate(add), grace_s=5)
    assert send(ledger, "u_alice", chat_id).seq == 5
    # When bob receipts carol's message 2 (per message): it covers 1 and 2
    receipt("u_bob", chat_id, "READ", msg=carols.server_msg_id)
    # Then carol gets the per-message form, alice the watermark form; bob nothing
    frames = {frozenset(c): f for c, f in pushed(receipt.poster)}
    assert frames[frozenset({carol})]["serverMsgId"] == carols.server_msg_id
    assert frames[frozenset({carol})]["seq"] == 2
    assert frames[frozenset({alice})]["upToSeq"] == 2 and "serverMsgId" not in frames[frozenset({alice})]
    assert bob not in {c for cs in frames for c in cs}
    # When bob then reads up to 5 (covering his own 3, the system 4 and alice's 5)
    receipt("u_bob", chat_id, "READ", up_to=5)
    # Then only alice is told (READ up to 5): not bob for his own, and nobody for "system"
    [(connections, frame)] = pushed(receipt.poster)
    assert connections == {alice} and frame["upToSeq"] == 5 and frame["receiptType"] == "READ"


def test_a_watermark_covering_a_void_seq_tells_the_senders_around_it(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given alice's message 1, seq 2 filled with a VOID (its writer died), alice's message 3
    chat_id = make_chat("u_alice", "u_bob")
    alice = online(registry, "u_alice")
    send(ledger, "u_alice", chat_id)
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    hole = ledger.sequencer.reserve(chat_id, chat.members_version, 1_800_000_000_000).head_seq
    ledger.messages.fill_void(StoredVoid(chat_id=chat_id, seq=hole, created_at=now_iso()))
    assert send(ledger, "u_alice", chat_id).seq == 3
    # When bob reads up to 3
    receipt("u_bob", chat_id, "READ", up_to=3)
    # Then his watermark is at 3 and alice is told READ up to 3 (the VOID is nobody's message)
    assert watermark(aws_env, chat_id, "u_bob")["readUpTo"] == 3
    [(connections, frame)] = pushed(receipt.poster)
    assert connections == {alice} and frame["upToSeq"] == 3


# --- failed pushes -------------------------------------------------------------------------------


def test_a_failed_receipt_push_is_retried_alone_and_a_gone_device_is_forgotten(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    io_pool: ThreadPoolExecutor,
    receipts: ReceiptStore,
    summaries: FifoQueue,
    poster: RecordingPoster,
    make_chat: Callable[..., str],
) -> None:
    # Given alice's phone throttled, her laptop gone, her tablet fine, and her message to bob
    chat_id = make_chat("u_alice", "u_bob")
    phone, laptop = online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")
    tablet = online(registry, "u_alice", "d_tablet")
    ack = send(ledger, "u_alice", chat_id)

    class Flaky:
        def post(self, connection_id: str, data: str) -> None:
            if connection_id == phone:
                raise RuntimeError("LimitExceededException")
            if connection_id == laptop:
                raise ConnectionGone(connection_id)
            poster.post(connection_id, data)

    pusher = Pusher(Flaky(), registry, queue, io_pool, RetryPolicy(base_delay_s=0))  # type: ignore[arg-type]
    # When bob reads it
    record_receipt(receipts, pusher, summaries, who("u_bob"), receipt_frame(chat_id, msg=ack.server_msg_id))
    # Then the tablet got the RECEIPT at once, the laptop's record is gone, and the phone alone
    # waits on the delivery queue for a second attempt with the same RECEIPT
    [(connections, frame)] = pushed(poster)
    assert connections == {tablet} and frame["serverMsgId"] == ack.server_msg_id
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": phone, "d_tablet": tablet}}
    [queued] = aws_env.receive_all("delivery")
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert [r.connection_id for r in envelope.recipients] == [phone]
    assert (envelope.attempt, json.loads(envelope.frame)) == (1, frame)
    # And the receipt itself is stored whatever became of the pushes
    assert watermark(aws_env, chat_id, "u_bob")["readUpTo"] == 1


# --- refusals ------------------------------------------------------------------------------------


def test_a_stranger_is_forbidden_and_nothing_is_written_or_forwarded(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given alice's message to bob, and mallory outside the chat
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    ack = send(ledger, "u_alice", chat_id)
    # When mallory receipts it, in both forms, and receipts a chat that does not exist
    # Then each is FORBIDDEN, with the same answer whether or not the chat exists
    for form in ({"msg": ack.server_msg_id}, {"up_to": 1}, {"up_to": 99}):
        with pytest.raises(Forbidden, match=f"not a member of {chat_id}"):
            receipt("u_mallory", chat_id, **form)
    with pytest.raises(Forbidden, match="not a member of c_nowhere"):
        receipt("u_mallory", "c_nowhere", up_to=1)
    # And nothing was stored or forwarded
    assert aws_env.scan("receipts") == []
    assert pushed(receipt.poster) == []


@pytest.mark.parametrize("bad_id", ["m_1_forged", "m_7_x", "hello", "m_0_x"])
def test_a_server_msg_id_that_is_not_a_stored_message_is_not_found(
    bad_id: str,
    aws_env: Any,
    ledger: Ledger,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given one message in alice and bob's chat
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", chat_id)
    # When bob receipts an id that is not that message's (a forged random part, a seq past the head,
    # no seq at all), Then NOT_FOUND and nothing is stored
    with pytest.raises(NotFound):
        receipt("u_bob", chat_id, msg=bad_id)
    assert aws_env.scan("receipts") == []


def test_a_server_msg_id_naming_a_void_seq_is_not_found(
    aws_env: Any, ledger: Ledger, make_chat: Callable[..., str], receipt: Receipting
) -> None:
    # Given seq 1 of alice and bob's chat is a VOID
    chat_id = make_chat("u_alice", "u_bob")
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    hole = ledger.sequencer.reserve(chat_id, chat.members_version, 1_800_000_000_000).head_seq
    ledger.messages.fill_void(StoredVoid(chat_id=chat_id, seq=hole, created_at=now_iso()))
    # When bob receipts an id claiming that seq, Then NOT_FOUND and nothing is stored
    with pytest.raises(NotFound):
        receipt("u_bob", chat_id, msg=f"m_{hole}_forged")
    assert aws_env.scan("receipts") == []


def test_a_watermark_beyond_the_head_is_a_bad_request(
    aws_env: Any, ledger: Ledger, make_chat: Callable[..., str], receipt: Receipting
) -> None:
    # Given a chat with two messages
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", chat_id)
    send(ledger, "u_alice", chat_id)
    # When bob claims to have read up to 3, Then BAD_REQUEST and nothing is stored
    with pytest.raises(BadRequest, match="beyond"):
        receipt("u_bob", chat_id, up_to=3)
    assert aws_env.scan("receipts") == []


# --- the receipts function -----------------------------------------------------------------------


def test_the_receipts_function_pushes_the_receipt_and_answers_nothing_or_receipts(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    management_api: Any,
    make_chat: Callable[..., str],
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given alice's message to bob, and alice online
    chat_id = make_chat("u_alice", "u_bob")
    alice = online(registry, "u_alice")
    ack = send(ledger, "u_alice", chat_id)
    posts = fake_management_api(management_api)
    handler = handler_of("receipts")
    # When bob sends a READ receipt, Then the route answers nothing (just 200)
    body = {"action": "receipt", "chatId": chat_id, "serverMsgId": ack.server_msg_id, "type": "READ"}
    assert handler(make_message_event(body, user_id="u_bob"), lambda_context) == {"statusCode": 200}
    # And alice's device was posted the RECEIPT by the function itself
    [(connection_id, frame)] = posts
    assert connection_id == alice
    assert (frame["type"], frame["userId"], frame["serverMsgId"]) == ("RECEIPT", "u_bob", ack.server_msg_id)
    # When alice asks who has it, Then RECEIPTS lists bob as READ
    query = {"action": "receipts", "requestId": "r7", "chatId": chat_id, "serverMsgId": ack.server_msg_id}
    answer = json.loads(handler(make_message_event(query, user_id="u_alice"), lambda_context)["body"])
    assert answer["type"] == "RECEIPTS" and answer["requestId"] == "r7" and answer["next"] is None
    assert [(r["userId"], r["receiptType"]) for r in answer["receipts"]] == [("u_bob", "READ")]
    # When a receipt gives both forms, or bob asks for alice's receipts, Then an ERROR frame
    both = body | {"upToSeq": 1}
    error = json.loads(handler(make_message_event(both, user_id="u_bob"), lambda_context)["body"])
    assert (error["type"], error["code"]) == ("ERROR", "BAD_REQUEST")
    error = json.loads(handler(make_message_event(query, user_id="u_bob"), lambda_context)["body"])
    assert (error["code"], error["requestId"]) == ("FORBIDDEN", "r7")
    assert "retryAfterMs" not in error
