"""Receipts (logic/receipts.py, dal/receipt_store.py, functions/receipts and functions/summaries):
monotonic watermarks, who is told, large-group summaries, and the sender-only receipts query."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend import services
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, FifoQueue
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.errors import BadRequest, Forbidden, NotFound
from chat_backend.logic import receipts as receipts_logic
from chat_backend.logic.receipts import list_receipts, receipt_dedup_id, record_receipt, summarize
from chat_backend.logic.send import send_message
from chat_backend.models import (
    AckFrame,
    Caller,
    DeliveryEnvelope,
    ReceiptFrame,
    ReceiptsQueryFrame,
    SendFrame,
    StoredMessage,
    SummaryJob,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def receipts(aws_env: Any) -> ReceiptStore:
    return services.services().receipts


@pytest.fixture
def summaries(aws_env: Any) -> FifoQueue:
    return services.services().summaries_queue


def who(user_id: str, device_id: str = "d_phone") -> Caller:
    return Caller(user_id=user_id, device_id=device_id, connection_id=f"conn-{user_id}-{device_id}")


def online(registry: ConnectionRegistry, user_id: str, device_id: str = "d_phone") -> str:
    connection_id = f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def send(store: ChatStore, user_id: str, chat_id: str) -> AckFrame:
    frame = SendFrame.model_validate(
        {"action": "send", "clientMsgId": str(uuid.uuid4()), "chatId": chat_id, "ciphertext": "aGk="}
    )
    return send_message(store, who(user_id), frame, 3600)


def receipt_frame(chat_id: str, kind: str = "READ", **form: Any) -> ReceiptFrame:
    fields = {"serverMsgId": form["msg"]} if "msg" in form else {"upToSeq": form["up_to"]}
    return ReceiptFrame.model_validate({"action": "receipt", "chatId": chat_id, "type": kind, **fields})


class Receipting:
    """record_receipt with the test's repositories and a fixed clock."""

    def __init__(
        self, receipts: ReceiptStore, registry: ConnectionRegistry, queue: DeliveryQueue, summaries: FifoQueue
    ) -> None:
        self.args = (receipts, registry, queue, summaries)
        self.now = 1_800_000_000.0

    def __call__(self, user_id: str, chat_id: str, kind: str = "READ", **form: Any) -> None:
        record_receipt(*self.args, who(user_id), receipt_frame(chat_id, kind, **form), clock=lambda: self.now)


@pytest.fixture
def receipt(
    receipts: ReceiptStore, registry: ConnectionRegistry, queue: DeliveryQueue, summaries: FifoQueue
) -> Receipting:
    return Receipting(receipts, registry, queue, summaries)


def envelopes_of(queued: list[dict[str, Any]]) -> list[tuple[set[str], dict[str, Any]]]:
    """(connection ids, frame) of each delivery envelope."""
    out = []
    for message in queued:
        envelope = DeliveryEnvelope.model_validate_json(message["Body"])
        out.append(({r.connection_id for r in envelope.recipients}, json.loads(envelope.frame)))
    return out


def pushed(aws_env: Any) -> list[tuple[set[str], dict[str, Any]]]:
    """What went to the delivery queue since the last look."""
    return envelopes_of(aws_env.receive_all())


def dedup_ids(queued: list[dict[str, Any]]) -> set[str]:
    return {m["Attributes"]["MessageDeduplicationId"] for m in queued}


def watermark(aws_env: Any, chat_id: str, user_id: str) -> dict[str, Any]:
    items = [i for i in aws_env.scan("receipts") if i["chatId"] == chat_id and i["userId"] == user_id]
    return items[0] if items else {}


# --- watermarks and who is told ------------------------------------------------------------------


def test_a_read_receipt_reaches_every_device_of_the_sender_and_nobody_else(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given alice (phone + laptop online) sent two messages to bob (online)
    chat_id = make_chat("u_alice", "u_bob")
    alice = {online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")}
    online(registry, "u_bob")
    send(store, "u_alice", chat_id)
    second = send(store, "u_alice", chat_id)
    # When bob marks the second one READ
    receipt("u_bob", chat_id, "READ", msg=second.server_msg_id)
    # Then both of alice's devices get one RECEIPT naming that message; bob's devices get nothing
    [(connections, frame)] = pushed(aws_env)
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
    # And bob's watermarks stand at 2, delivered too (READ implies DELIVERED)
    mark = watermark(aws_env, chat_id, "u_bob")
    assert (mark["readUpTo"], mark["deliveredUpTo"]) == (2, 2)
    assert mark["readAt"] == mark["deliveredAt"] == frame["at"]


def test_a_repeated_or_older_receipt_changes_nothing_and_is_not_forwarded(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given bob has already acknowledged alice's two messages as DELIVERED up to 2
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    first = send(store, "u_alice", chat_id)
    second = send(store, "u_alice", chat_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=2)
    assert len(pushed(aws_env)) == 1
    before = watermark(aws_env, chat_id, "u_bob")
    # When the same receipt comes again, in both forms, and an older one after it
    receipt("u_bob", chat_id, "DELIVERED", up_to=2)
    receipt("u_bob", chat_id, "DELIVERED", msg=second.server_msg_id)
    receipt("u_bob", chat_id, "DELIVERED", msg=first.server_msg_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=1)
    # Then the watermark did not move (nor its time) and nothing more was forwarded
    assert watermark(aws_env, chat_id, "u_bob") == before
    assert pushed(aws_env) == []


def test_read_implies_delivered_so_a_later_delivered_is_news_to_nobody(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given bob read alice's message 1 of 1
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    send(store, "u_alice", chat_id)
    receipt("u_bob", chat_id, "READ", up_to=1)
    [(_, frame)] = pushed(aws_env)
    assert frame["receiptType"] == "READ" and frame["upToSeq"] == 1 and "serverMsgId" not in frame
    # When his device's DELIVERED for it arrives late
    receipt("u_bob", chat_id, "DELIVERED", up_to=1)
    # Then it is already covered: nothing is forwarded and delivered stays at 1
    assert pushed(aws_env) == []
    assert watermark(aws_env, chat_id, "u_bob")["deliveredUpTo"] == 1
    # And a READ watermark only lifts a lower DELIVERED one, never lowers it
    send(store, "u_alice", chat_id)
    send(store, "u_alice", chat_id)
    receipt("u_bob", chat_id, "DELIVERED", up_to=3)
    receipt("u_bob", chat_id, "READ", up_to=2)
    mark = watermark(aws_env, chat_id, "u_bob")
    assert (mark["deliveredUpTo"], mark["readUpTo"]) == (3, 2)


def test_each_sender_of_the_newly_covered_messages_is_told_once_and_system_and_self_are_not(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given a group where alice sent 1, carol sent 2, bob sent 3, a system message is 4, alice sent 5
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice, carol, bob = online(registry, "u_alice"), online(registry, "u_carol"), online(registry, "u_bob")
    send(store, "u_alice", chat_id)
    carols = send(store, "u_carol", chat_id)
    send(store, "u_bob", chat_id)
    store.append_message(
        StoredMessage(
            chat_id=chat_id,
            seq=4,
            server_msg_id="m_4_system",
            sender="system",
            sender_device=None,
            ciphertext=b"{}",
            media_ids=[],
            created_at="2026-11-28T03:21:07.123Z",
        ),
        "sys-4",
        2_000_000_000,
    )
    send(store, "u_alice", chat_id)
    # When bob receipts carol's message 2 (per message): it covers 1 and 2
    receipt("u_bob", chat_id, "READ", msg=carols.server_msg_id)
    # Then carol gets the per-message form, alice the watermark form; bob nothing
    frames = {frozenset(c): f for c, f in pushed(aws_env)}
    assert frames[frozenset({carol})]["serverMsgId"] == carols.server_msg_id
    assert frames[frozenset({carol})]["seq"] == 2
    assert frames[frozenset({alice})]["upToSeq"] == 2 and "serverMsgId" not in frames[frozenset({alice})]
    assert bob not in {c for cs in frames for c in cs}
    # When bob then reads up to 5 (covering his own 3, the system 4 and alice's 5)
    receipt("u_bob", chat_id, "READ", up_to=5)
    # Then only alice is told (READ up to 5): not bob for his own, and nobody for "system"
    [(connections, frame)] = pushed(aws_env)
    assert connections == {alice} and frame["upToSeq"] == 5 and frame["receiptType"] == "READ"


# --- refusals ------------------------------------------------------------------------------------


def test_a_stranger_is_forbidden_and_nothing_is_written_or_forwarded(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given alice's message to bob, and mallory outside the chat
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice")
    ack = send(store, "u_alice", chat_id)
    # When mallory receipts it, in both forms, and receipts a chat that does not exist
    # Then each is FORBIDDEN, with the same answer whether or not the chat exists
    for form in ({"msg": ack.server_msg_id}, {"up_to": 1}, {"up_to": 99}):
        with pytest.raises(Forbidden, match=f"not a member of {chat_id}"):
            receipt("u_mallory", chat_id, **form)
    with pytest.raises(Forbidden, match="not a member of c_nowhere"):
        receipt("u_mallory", "c_nowhere", up_to=1)
    # And nothing was stored or forwarded
    assert aws_env.scan("receipts") == []
    assert pushed(aws_env) == []


@pytest.mark.parametrize("bad_id", ["m_1_forged", "m_7_x", "hello", "m_0_x"])
def test_a_server_msg_id_that_is_not_a_stored_message_is_not_found(
    bad_id: str,
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    receipt: Receipting,
) -> None:
    # Given one message in alice and bob's chat
    chat_id = make_chat("u_alice", "u_bob")
    send(store, "u_alice", chat_id)
    # When bob receipts an id that is not that message's (a forged random part, a seq past the head,
    # no seq at all), Then NOT_FOUND and nothing is stored
    with pytest.raises(NotFound):
        receipt("u_bob", chat_id, msg=bad_id)
    assert aws_env.scan("receipts") == []


def test_a_watermark_beyond_the_head_is_a_bad_request(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], receipt: Receipting
) -> None:
    # Given a chat with two messages
    chat_id = make_chat("u_alice", "u_bob")
    send(store, "u_alice", chat_id)
    send(store, "u_alice", chat_id)
    # When bob claims to have read up to 3, Then BAD_REQUEST and nothing is stored
    with pytest.raises(BadRequest, match="beyond"):
        receipt("u_bob", chat_id, up_to=3)
    assert aws_env.scan("receipts") == []


# --- large groups --------------------------------------------------------------------------------


@pytest.fixture
def big_group(make_chat: Callable[..., str]) -> str:
    """300 members: alice (admin), bob, carol, dave and 296 others."""
    return make_chat("u_alice", "u_bob", "u_carol", "u_dave", *(f"u_m{i:03}" for i in range(296)))


def test_in_a_large_group_receipts_enqueue_one_summary_job_per_message_per_window(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    big_group: str,
    receipt: Receipting,
) -> None:
    # Given alice (online) sent two messages and bob one to a 300-member group
    online(registry, "u_alice")
    first = send(store, "u_alice", big_group)
    second = send(store, "u_alice", big_group)
    send(store, "u_bob", big_group)
    # When bob reads up to 3 and carol up to 2, in the same window
    receipt("u_bob", big_group, "READ", up_to=3)
    receipt("u_carol", big_group, "DELIVERED", up_to=2)
    # Then no per-member RECEIPT is pushed to anyone
    assert pushed(aws_env) == []
    # And the summaries queue holds one job per message of another sender (not bob's own 3), in
    # the chat's FIFO group: carol's receipt in the same window added nothing
    jobs = aws_env.receive_all("summaries")
    assert sorted((j["Attributes"]["MessageGroupId"], json.loads(j["Body"])["seq"]) for j in jobs) == [
        (big_group, 1),
        (big_group, 2),
    ]
    assert {json.loads(j["Body"])["serverMsgId"] for j in jobs} == {first.server_msg_id, second.server_msg_id}
    # When dave receipts in the next window, Then the message gets a new job
    receipt.now += receipts_logic.RECEIPT_SUMMARY_WINDOW_S
    receipt("u_dave", big_group, "DELIVERED", up_to=1)
    assert [json.loads(j["Body"])["seq"] for j in aws_env.receive_all("summaries")] == [1]


def test_a_summary_counts_delivered_and_read_and_goes_to_the_senders_devices(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    receipts: ReceiptStore,
    big_group: str,
    receipt: Receipting,
    handler_of: Callable[[str], Handler],
    lambda_context: Any,
) -> None:
    # Given alice (phone + laptop online) sent messages 1 and 2 to a 300-member group, read her own
    # messages on her laptop, bob read up to 2, carol got up to 1, dave got up to 2
    alice = {online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")}
    first = send(store, "u_alice", big_group)
    second = send(store, "u_alice", big_group)
    receipt("u_alice", big_group, "READ", up_to=2)
    receipt("u_bob", big_group, "READ", up_to=2)
    receipt("u_carol", big_group, "DELIVERED", up_to=1)
    receipt("u_dave", big_group, "DELIVERED", msg=second.server_msg_id)
    jobs = aws_env.receive_all("summaries")
    assert len(jobs) == 2
    # When the summaries function runs the batch
    records = [{"messageId": j["MessageId"], "body": j["Body"], "attributes": {}} for j in jobs]
    assert handler_of("summaries")({"Records": records}, lambda_context) == {"batchItemFailures": []}
    # Then alice's two devices get one RECEIPT_SUMMARY per message with the counts of the others
    queued = aws_env.receive_all()
    summaries = {f["serverMsgId"]: (c, f) for c, f in envelopes_of(queued)}
    assert summaries[first.server_msg_id] == (
        alice,
        {
            "type": "RECEIPT_SUMMARY",
            "chatId": big_group,
            "serverMsgId": first.server_msg_id,
            "delivered": 3,
            "read": 1,
        },
    )
    assert summaries[second.server_msg_id][1]["delivered"] == 2
    assert summaries[second.server_msg_id][1]["read"] == 1
    # When the same jobs run again with nothing new, Then the pushes carry the same deduplication
    # ids, which SQS drops for 5 minutes (moto forgets them once the messages are deleted)
    summarize(receipts, registry, queue, [SummaryJob.model_validate_json(j["Body"]) for j in jobs])
    assert dedup_ids(aws_env.receive_all()) == dedup_ids(queued)


# --- the receipts query --------------------------------------------------------------------------


def test_the_sender_pages_through_who_has_a_message(
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    receipts: ReceiptStore,
    receipt: Receipting,
) -> None:
    # Given alice's message 1 in a group: bob and dave read it, carol and erin got it, frank did not
    chat_id = make_chat("u_alice", "u_bob", "u_carol", "u_dave", "u_erin", "u_frank")
    ack = send(store, "u_alice", chat_id)
    send(store, "u_frank", chat_id)
    receipt("u_alice", chat_id, "READ", up_to=2)  # her own watermark is not a receipt of her message
    receipt("u_bob", chat_id, "READ", up_to=1)
    receipt("u_carol", chat_id, "DELIVERED", up_to=2)
    receipt("u_dave", chat_id, "READ", msg=ack.server_msg_id)
    receipt("u_erin", chat_id, "DELIVERED", up_to=1)
    # And pages of two users

    def page(cursor: str | None) -> dict[str, Any]:
        query = ReceiptsQueryFrame.model_validate(
            {"action": "receipts", "requestId": "r1", "chatId": chat_id, "serverMsgId": ack.server_msg_id}
            | ({"cursor": cursor} if cursor else {})
        )
        return json.loads(list_receipts(receipts, who("u_alice"), query, page_size=2).to_json())

    # When alice asks page after page
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    for _ in range(5):
        frame = page(cursor)
        assert frame["type"] == "RECEIPTS" and frame["requestId"] == "r1"
        assert len(frame["receipts"]) <= 2 and all(r["at"] for r in frame["receipts"])
        seen += [(r["userId"], r["receiptType"]) for r in frame["receipts"]]
        cursor = frame["next"]
        if cursor is None:
            break
    # Then she sees each of the four once, READ or DELIVERED, and not herself or frank
    assert seen == [("u_bob", "READ"), ("u_carol", "DELIVERED"), ("u_dave", "READ"), ("u_erin", "DELIVERED")]


def test_only_the_sender_may_ask_for_a_messages_receipts(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], receipts: ReceiptStore
) -> None:
    # Given alice's message in a group with bob, and mallory outside it
    chat_id = make_chat("u_alice", "u_bob")
    ack = send(store, "u_alice", chat_id)

    def ask(user_id: str, server_msg_id: str = ack.server_msg_id) -> Any:
        query = ReceiptsQueryFrame.model_validate(
            {"action": "receipts", "requestId": "r1", "chatId": chat_id, "serverMsgId": server_msg_id}
        )
        return list_receipts(receipts, who(user_id), query)

    # When bob (a member, not the sender) asks, Then FORBIDDEN: receipts are the sender's alone
    with pytest.raises(Forbidden, match="only the sender"):
        ask("u_bob")
    # When mallory asks, Then FORBIDDEN as a stranger
    with pytest.raises(Forbidden, match="not a member"):
        ask("u_mallory")
    # When alice asks about a message that is not there, Then NOT_FOUND
    with pytest.raises(NotFound):
        ask("u_alice", "m_1_forged")
    # When alice asks about hers before anyone receipted, Then an empty last page
    assert ask("u_alice").receipts == [] and ask("u_alice").next is None


# --- the receipts function -----------------------------------------------------------------------


def test_the_receipts_function_answers_nothing_for_a_receipt_and_receipts_for_a_query(
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given alice's message to bob
    chat_id = make_chat("u_alice", "u_bob")
    ack = send(store, "u_alice", chat_id)
    handler = handler_of("receipts")
    # When bob sends a READ receipt, Then the route answers nothing (just 200)
    body = {"action": "receipt", "chatId": chat_id, "serverMsgId": ack.server_msg_id, "type": "READ"}
    assert handler(make_message_event(body, user_id="u_bob"), lambda_context) == {"statusCode": 200}
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


def test_receipt_dedup_ids_fit_sqs_even_for_the_longest_ids() -> None:
    # Given the longest chat and user ids the protocol allows, and ordinary ones
    longest = receipt_dedup_id("c" * 64, "u" * 64, "DELIVERED", 2**40)
    # Then the id (plus the envelope's ":<form>:<chunk>") fits SQS's 128 characters, is stable,
    # and tells receipts of different users, types and seqs apart
    assert len(longest) + len(":w:99") <= 128
    assert longest == receipt_dedup_id("c" * 64, "u" * 64, "DELIVERED", 2**40)
    assert receipt_dedup_id("c_1", "u_bob", "READ", 3) == "receipt:c_1:u_bob:READ:3"
    ids = {
        receipt_dedup_id("c" * 64, u, t, s)
        for u in ("u" * 64, "v" * 64)
        for t in ("READ", "DELIVERED")
        for s in (1, 2)
    }
    assert len(ids) == 8
