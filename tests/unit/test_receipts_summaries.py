"""Receipts of large groups (summary jobs, RECEIPT_SUMMARY pushed directly by functions/summaries)
and the sender-only receipts query (logic/receipts.py, dal/receipt_store.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.errors import Forbidden, NotFound
from chat_backend.logic import receipts as receipts_logic
from chat_backend.logic.push import Pusher, PushResult
from chat_backend.logic.receipts import list_receipts, summarize
from chat_backend.logic.send import Ledger
from chat_backend.models.client_frames import ReceiptsQueryFrame
from chat_backend.models.queue_payloads import SummaryJob
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import (
    HandlerOf,
    MakeChat,
    Receipting,
    caller,
    fake_management_api,
    online,
    pushed,
    remove,
    send,
    send_many,
    watermark,
)


@pytest.fixture
def big_group(make_chat: MakeChat) -> str:
    """300 members: alice (admin), bob, carol, dave and 296 others."""
    return make_chat("u_alice", "u_bob", "u_carol", "u_dave", *(f"u_m{i:03}" for i in range(296)))


def jobs_of(queued: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return sorted((j["Attributes"]["MessageGroupId"], json.loads(j["Body"])["seq"]) for j in queued)


# --- large groups --------------------------------------------------------------------------------


def test_in_a_large_group_receipts_enqueue_one_summary_job_per_message_per_window(
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, big_group: str, receipt: Receipting
) -> None:
    # Given alice (online) sent two messages and bob one to a 300-member group
    online(registry, "u_alice")
    first, second = send_many(ledger, "u_alice", big_group, 2)
    send(ledger, "u_bob", big_group)
    # When bob reads up to 3 and carol up to 2, in the same window
    receipt("u_bob", big_group, "READ", up_to=3)
    receipt("u_carol", big_group, "DELIVERED", up_to=2)
    # Then no per-member RECEIPT is pushed to anyone, directly or through the delivery queue
    assert pushed(receipt.poster) == []
    assert aws_env.receive_all("delivery") == []
    # And the summaries queue holds one job per message of another sender (not bob's own 3), in
    # the chat's FIFO group: carol's receipt in the same window added nothing
    jobs = aws_env.receive_all("summaries")
    assert jobs_of(jobs) == [(big_group, 1), (big_group, 2)]
    assert {json.loads(j["Body"])["serverMsgId"] for j in jobs} == {first.server_msg_id, second.server_msg_id}
    # When dave receipts in the next window, Then the message gets a new job
    receipt.now += receipts_logic.RECEIPT_SUMMARY_WINDOW_S
    receipt("u_dave", big_group, "DELIVERED", up_to=1)
    assert jobs_of(aws_env.receive_all("summaries")) == [(big_group, 1)]


def test_a_receipt_covering_a_long_backlog_enqueues_jobs_for_the_newest_messages_only(
    aws_env: Any, ledger: Ledger, big_group: str, receipt: Receipting
) -> None:
    # Given alice sent more messages than one receipt makes summary jobs for
    total = receipts_logic.SUMMARY_JOBS_MAX + 5
    for _ in range(total):
        send(ledger, "u_alice", big_group)
    # When bob reads them all at once
    receipt("u_bob", big_group, "READ", up_to=total)
    # Then the newest SUMMARY_JOBS_MAX get a job, and his watermark covers them all
    seqs = [seq for _, seq in jobs_of(aws_env.receive_all("summaries"))]
    assert seqs == list(range(total - receipts_logic.SUMMARY_JOBS_MAX + 1, total + 1))
    assert watermark(aws_env, big_group, "u_bob")["readUpTo"] == total


def test_a_summary_counts_delivered_and_read_and_goes_to_the_senders_devices(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    management_api: Any,
    receipts: ReceiptStore,
    pusher: Pusher,
    poster: RecordingPoster,
    big_group: str,
    receipt: Receipting,
    handler_of: HandlerOf,
    lambda_context: Any,
) -> None:
    # Given alice (phone + laptop online) sent messages 1 and 2 to a 300-member group, read her own
    # messages on her laptop, bob read up to 2, carol got up to 1, dave got up to 2
    alice = {online(registry, "u_alice", "d_phone"), online(registry, "u_alice", "d_laptop")}
    first, second = send_many(ledger, "u_alice", big_group, 2)
    receipt("u_alice", big_group, "READ", up_to=2)
    receipt("u_bob", big_group, "READ", up_to=2)
    receipt("u_carol", big_group, "DELIVERED", up_to=1)
    receipt("u_dave", big_group, "DELIVERED", msg=second.server_msg_id)
    jobs = aws_env.receive_all("summaries")
    assert len(jobs) == 2
    posts = fake_management_api(management_api)
    # When the summaries function runs the batch
    records = [{"messageId": j["MessageId"], "body": j["Body"], "attributes": {}} for j in jobs]
    assert handler_of("summaries")({"Records": records}, lambda_context) == {"batchItemFailures": []}
    # Then each of alice's two devices was posted one RECEIPT_SUMMARY per message, with the counts
    # of the others (her own watermark not counted), and nothing went through the delivery queue
    by_message: dict[str, tuple[set[str], dict[str, Any]]] = {}
    for connection_id, frame in posts:
        by_message.setdefault(frame["serverMsgId"], (set(), frame))[0].add(connection_id)
    assert len(posts) == 4
    assert by_message[first.server_msg_id] == (
        alice,
        {
            "type": "RECEIPT_SUMMARY",
            "chatId": big_group,
            "serverMsgId": first.server_msg_id,
            "delivered": 3,
            "read": 1,
        },
    )
    connections, frame = by_message[second.server_msg_id]
    assert (connections, frame["delivered"], frame["read"]) == (alice, 2, 1)
    assert aws_env.receive_all("delivery") == []
    # When the same jobs (and a repeat of one) are summarized again with nothing new, Then the
    # same counts are pushed once per message again: a summary is a recount
    again = [SummaryJob.model_validate_json(j["Body"]) for j in jobs]
    result = summarize(receipts, pusher, [*again, again[0]])
    assert result == PushResult(pushed=4)
    assert sorted((f["serverMsgId"], f["delivered"], f["read"]) for _, f in pushed(poster)) == sorted(
        [(first.server_msg_id, 3, 1), (second.server_msg_id, 2, 1)]
    )


def test_a_summary_for_a_sender_with_no_device_online_pushes_nothing(
    ledger: Ledger,
    receipts: ReceiptStore,
    pusher: Pusher,
    poster: RecordingPoster,
    big_group: str,
    receipt: Receipting,
) -> None:
    # Given alice (offline) sent a message bob read
    ack = send(ledger, "u_alice", big_group)
    receipt("u_bob", big_group, "READ", up_to=1)
    job = SummaryJob(chat_id=big_group, seq=1, server_msg_id=ack.server_msg_id, sender="u_alice")
    # When its summary runs, Then nothing is posted (she sees the counts with `receipts`)
    assert summarize(receipts, pusher, [job]) == PushResult()
    assert poster.posts == []


def test_a_summary_for_a_sender_who_has_left_pushes_nothing(
    ledger: Ledger,
    receipts: ReceiptStore,
    pusher: Pusher,
    poster: RecordingPoster,
    registry: ConnectionRegistry,
    big_group: str,
    receipt: Receipting,
) -> None:
    # Given carol (online) sent a message bob read, and then left the group
    online(registry, "u_carol")
    ack = send(ledger, "u_carol", big_group)
    receipt("u_bob", big_group, "READ", up_to=1)
    remove(ledger, caller("u_carol"), big_group, ["u_carol"])
    job = SummaryJob(chat_id=big_group, seq=1, server_msg_id=ack.server_msg_id, sender="u_carol")
    # When its summary runs, Then she is told nothing
    assert summarize(receipts, pusher, [job]) == PushResult()
    assert poster.posts == []


# --- the receipts query --------------------------------------------------------------------------


def test_the_sender_pages_through_who_has_a_message(
    ledger: Ledger, make_chat: MakeChat, receipts: ReceiptStore, receipt: Receipting
) -> None:
    # Given alice's message 1 in a group: bob and dave read it, carol and erin got it, frank did not
    chat_id = make_chat("u_alice", "u_bob", "u_carol", "u_dave", "u_erin", "u_frank")
    ack = send(ledger, "u_alice", chat_id)
    send(ledger, "u_frank", chat_id)
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
        return json.loads(list_receipts(receipts, caller("u_alice"), query, page_size=2).to_json())

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
    ledger: Ledger, make_chat: MakeChat, receipts: ReceiptStore
) -> None:
    # Given alice's message in a group with bob, and mallory outside it
    chat_id = make_chat("u_alice", "u_bob")
    ack = send(ledger, "u_alice", chat_id)

    def ask(user_id: str, server_msg_id: str = ack.server_msg_id) -> Any:
        query = ReceiptsQueryFrame.model_validate(
            {"action": "receipts", "requestId": "r1", "chatId": chat_id, "serverMsgId": server_msg_id}
        )
        return list_receipts(receipts, caller(user_id), query)

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
