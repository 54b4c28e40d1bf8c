"""Receipts (logic/receipts.py, dal/receipt_store.py, functions/receipts): monotonic watermarks,
who is told (RECEIPTs pushed directly to the senders' devices), refusals, and what a failed push
leaves. Large-group summaries and the receipts query are in test_receipts_summaries.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.errors import BadRequest, ConnectionGone, Forbidden, NotFound
from chat_backend.logic.push import Pusher, RetryPolicy
from chat_backend.logic.receipts import record_receipt
from chat_backend.logic.send import Ledger
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.services import services
from tests.unit.helpers import (
    HandlerOf,
    MakeChat,
    MakeEvent,
    Proxy,
    Receipting,
    add,
    caller,
    fake_management_api,
    fill_hole,
    online,
    pushed,
    receipt_frame,
    remove,
    send,
    send_many,
    watermark,
)

# --- watermarks and who is told ------------------------------------------------------------------


def test_a_read_receipt_reaches_every_device_of_the_sender_and_nobody_else(
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, chat_id: str, receipt: Receipting
) -> None:
    # Given alice (phone + laptop online) sent two messages to bob (online)
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
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, chat_id: str, receipt: Receipting
) -> None:
    # Given bob has already acknowledged alice's two messages as DELIVERED up to 2
    online(registry, "u_alice")
    first, second = send_many(ledger, "u_alice", chat_id, 2)
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
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, chat_id: str, receipt: Receipting
) -> None:
    # Given bob read alice's message 1 of 1
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
    ledger: Ledger, registry: ConnectionRegistry, make_chat: MakeChat, receipt: Receipting
) -> None:
    # Given a group where alice sent 1, carol sent 2, bob sent 3, alice's adding erin is the system
    # message 4, and alice sent 5
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice, carol, bob = online(registry, "u_alice"), online(registry, "u_carol"), online(registry, "u_bob")
    send(ledger, "u_alice", chat_id)
    carols = send(ledger, "u_carol", chat_id)
    send(ledger, "u_bob", chat_id)
    add(ledger, caller("u_alice"), chat_id, ["u_erin"])
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


def test_a_sender_who_left_the_group_is_told_nothing_more(
    ledger: Ledger, registry: ConnectionRegistry, make_chat: MakeChat, receipt: Receipting
) -> None:
    # Given a group where carol sent 1 and alice 2, then carol was removed (seq 3), all online
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice, carol = online(registry, "u_alice"), online(registry, "u_carol")
    online(registry, "u_bob")
    send(ledger, "u_carol", chat_id)
    send(ledger, "u_alice", chat_id)
    remove(ledger, caller("u_alice"), chat_id, ["u_carol"])
    # When bob reads up to 3
    receipt("u_bob", chat_id, "READ", up_to=3)
    # Then alice is told, and carol, no longer a member, is not
    [(connections, frame)] = pushed(receipt.poster)
    assert connections == {alice} and frame["upToSeq"] == 3
    assert carol not in connections


def test_a_receipt_racing_its_senders_removal_leaves_no_watermark_and_tells_nobody(
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, make_chat: MakeChat, receipt: Receipting
) -> None:
    # Given a group where alice sent a message, and carol's receipt whose membership was checked
    # just before alice removes her (the removal commits between the check and the write)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice = online(registry, "u_alice")
    send(ledger, "u_alice", chat_id)
    real = receipt.receipts

    class RemovedMidway(Proxy):
        def advance(self, *args: Any, **kwargs: Any) -> Any:
            remove(ledger, caller("u_alice"), chat_id, ["u_carol"])
            return real.advance(*args, **kwargs)

    receipt.receipts = RemovedMidway(real)  # type: ignore[assignment]
    # When carol's READ goes on
    receipt("u_carol", chat_id, "READ", up_to=1)
    # Then no watermark of hers is left behind, and alice is told nothing
    assert [w for w in aws_env.scan("receipts") if w["userId"] == "u_carol"] == []
    assert alice not in {c for cs, _ in pushed(receipt.poster) for c in cs}


def test_a_watermark_covering_a_void_seq_tells_the_senders_around_it(
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, chat_id: str, receipt: Receipting
) -> None:
    # Given alice's message 1, seq 2 filled with a VOID (its writer died), alice's message 3
    alice = online(registry, "u_alice")
    send(ledger, "u_alice", chat_id)
    fill_hole(ledger, chat_id)
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
    chat_id: str,
    receipt: Receipting,
) -> None:
    # Given alice's phone throttled, her laptop gone, her tablet fine, and her message to bob
    phone, laptop = online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")
    tablet = online(registry, "u_alice", "d_tablet")
    ack = send(ledger, "u_alice", chat_id)

    class Flaky:
        def post(self, connection_id: str, data: str) -> None:
            if connection_id == phone:
                raise RuntimeError("LimitExceededException")
            if connection_id == laptop:
                raise ConnectionGone(connection_id)
            receipt.poster.post(connection_id, data)

    pusher = Pusher(Flaky(), registry, queue, io_pool, RetryPolicy(base_delay_s=0))  # type: ignore[arg-type]
    # When bob reads it
    bob, read = caller("u_bob"), receipt_frame(chat_id, msg=ack.server_msg_id)
    record_receipt(receipt.receipts, services().consent, pusher, receipt.summaries, bob, read)
    # Then the tablet got the RECEIPT at once, the laptop's record is gone, and the phone alone
    # waits on the delivery queue for a second attempt with the same RECEIPT
    [(connections, frame)] = pushed(receipt.poster)
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
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, chat_id: str, receipt: Receipting
) -> None:
    # Given alice's message to bob, and mallory outside the chat
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
    bad_id: str, aws_env: Any, ledger: Ledger, chat_id: str, receipt: Receipting
) -> None:
    # Given one message in alice and bob's chat
    send(ledger, "u_alice", chat_id)
    # When bob receipts an id that is not that message's (a forged random part, a seq past the head,
    # no seq at all), Then NOT_FOUND and nothing is stored
    with pytest.raises(NotFound):
        receipt("u_bob", chat_id, msg=bad_id)
    assert aws_env.scan("receipts") == []


def test_a_server_msg_id_naming_a_void_seq_is_not_found(
    aws_env: Any, ledger: Ledger, chat_id: str, receipt: Receipting
) -> None:
    # Given seq 1 of alice and bob's chat is a VOID
    hole = fill_hole(ledger, chat_id)
    # When bob receipts an id claiming that seq, Then NOT_FOUND and nothing is stored
    with pytest.raises(NotFound):
        receipt("u_bob", chat_id, msg=f"m_{hole}_forged")
    assert aws_env.scan("receipts") == []


def test_a_watermark_beyond_the_head_is_a_bad_request(
    aws_env: Any, ledger: Ledger, chat_id: str, receipt: Receipting
) -> None:
    # Given a chat with two messages
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
    chat_id: str,
    handler_of: HandlerOf,
    make_message_event: MakeEvent,
    lambda_context: Any,
) -> None:
    # Given alice's message to bob, and alice online
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
