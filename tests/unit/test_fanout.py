"""fanout (logic/fanout.py + functions/fanout): queued stream items -> members x live connections ->
envelopes of at most 100 recipients on the (standard) delivery queue.

Which member list an item goes to (its membership version, the member-list cache) is in
test_audience.py; how SQS batches are cut, in test_delivery_queue.py."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import SQS_MAX_BYTES, DeliveryQueue, NotifyQueue
from chat_backend.logic.audience import MemberListCache
from chat_backend.logic.fanout import fan_out
from chat_backend.logic.push import RECIPIENTS_PER_ENVELOPE, Pusher
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models.common import MAX_CIPHERTEXT_BYTES, MAX_MEDIA_IDS
from chat_backend.models.queue_payloads import DeliveryEnvelope, NotifyJob
from chat_backend.models.records import StoredMessage, StoredVoid
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import HandlerOf, MakeChat, caller, online, online_all, remove, send_frame

QUEUED = SendPolicy(dedup_ttl_s=3600, direct_push_max_members=0)  # every message goes by the stream


class CountingSqs:
    """The delivery queue's client, keeping the entries of every SendMessageBatch call."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.batches.append(kwargs["Entries"])
        return self.sqs.send_message_batch(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


@pytest.fixture
def sqs(queue: DeliveryQueue) -> CountingSqs:
    return CountingSqs(queue.sqs)


@dataclass
class Fan:
    """fan_out as the fanout function runs it (a cold member-list cache), posting to `poster` and
    queueing through the counting `sqs`."""

    ledger: Ledger
    pusher: Pusher

    def __call__(self, items: list[Any]) -> int:
        return fan_out(self.ledger.chats, self.ledger.messages, MemberListCache(), self.pusher, items)


@pytest.fixture
def fan(ledger: Ledger, pusher: Pusher, queue: DeliveryQueue, sqs: CountingSqs) -> Fan:
    return Fan(ledger, dataclasses.replace(pusher, queue=DeliveryQueue(queue.queue_url, sqs)))


def stored_message(
    chat_id: str,
    seq: int = 7,
    sender: str = "u_alice",
    device: str = "d_phone",
    fanout: str = "queued",
    ciphertext: bytes = b"\x01\x02secret",
    media_ids: list[str] | None = None,
) -> StoredMessage:
    return StoredMessage(
        chat_id=chat_id,
        seq=seq,
        server_msg_id=f"m_{seq}_x",
        sender=sender,
        sender_device=device,
        ciphertext=ciphertext,
        media_ids=media_ids if media_ids is not None else ["md_1"],
        created_at="2026-11-28T03:21:07.123Z",
        members_version=0,
        fanout=fanout,  # type: ignore[arg-type]
    )


def queued(aws_env: Any) -> list[DeliveryEnvelope]:
    return [DeliveryEnvelope.model_validate_json(m["Body"]) for m in aws_env.receive_all()]


def reached(envelopes: list[DeliveryEnvelope]) -> dict[int, set[str]]:
    """seq -> the connections its frame was queued for."""
    found: dict[int, set[str]] = {}
    for envelope in envelopes:
        seq = json.loads(envelope.frame)["seq"]
        found.setdefault(seq, set()).update(r.connection_id for r in envelope.recipients)
    return found


def test_a_message_goes_to_every_online_device_of_the_members_but_the_sending_one(
    aws_env: Any, registry: ConnectionRegistry, make_chat: MakeChat, fan: Fan
) -> None:
    # Given alice and bob online on two devices each, carol offline, dave online but not a member
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice_laptop = online(registry, "u_alice", "d_laptop")
    online(registry, "u_alice", "d_phone")
    bob = {online(registry, "u_bob", "d_phone"), online(registry, "u_bob", "d_tablet")}
    online(registry, "u_dave", "d_phone")
    # When alice's phone's message (stored for the fan-out) is fanned out
    count = fan([stored_message(chat_id, seq=7)])
    # Then one envelope names her laptop and bob's two devices: not her phone, carol or dave
    [envelope] = queued(aws_env)
    assert count == 1
    assert {r.connection_id for r in envelope.recipients} == {alice_laptop, *bob}
    # And it carries the MESSAGE frame with alice's exact bytes
    frame = json.loads(envelope.frame)
    assert (frame["type"], frame["chatId"], frame["seq"], frame["from"], frame["fromDevice"]) == (
        "MESSAGE",
        chat_id,
        7,
        "u_alice",
        "d_phone",
    )
    assert base64.b64decode(frame["ciphertext"]) == b"\x01\x02secret"
    assert envelope.attempt == 0


def test_only_queued_items_are_fanned_out_and_a_direct_one_is_left_to_the_send(
    aws_env: Any, registry: ConnectionRegistry, make_chat: MakeChat, fan: Fan
) -> None:
    # Given bob online, and a stream batch of a small chat's message (pushed by the send itself)
    # and a large group's message (stored for the fan-out)
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_bob", "d_phone")
    items = [stored_message(chat_id, seq=1, fanout="direct"), stored_message(chat_id, seq=2)]
    # When the batch is fanned out
    count = fan(items)
    # Then only the queued message was enqueued
    assert count == 1
    assert reached(queued(aws_env)) == {2: {"conn-u_bob-d_phone"}}


def test_offline_members_cost_nothing(
    aws_env: Any,
    poster: RecordingPoster,
    registry: ConnectionRegistry,
    make_chat: MakeChat,
    fan: Fan,
    sqs: CountingSqs,
) -> None:
    # Given a chat whose other members are offline, and the sender on the sending device only
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_alice", "d_phone")
    # When alice's message is fanned out
    count = fan([stored_message(chat_id)])
    # Then no envelope is built and no SQS call made (they will get it from sync), nothing posted
    assert count == 0
    assert sqs.batches == []
    assert aws_env.receive_all() == []
    assert poster.posts == []


def test_envelopes_hold_at_most_100_recipients_each_once(
    aws_env: Any, registry: ConnectionRegistry, make_chat: MakeChat, fan: Fan
) -> None:
    # Given a group of 300 members, 250 online on one device each, the sender u_000 among them
    users = [f"u_{n:03d}" for n in range(300)]
    chat_id = make_chat(*users)
    for user in users[:250]:
        online(registry, user, "d_phone")
    # When u_000's message is fanned out
    count = fan([stored_message(chat_id, seq=42, sender="u_000")])
    # Then its 249 recipients go out in three envelopes of at most 100
    envelopes = queued(aws_env)
    assert count == 3
    assert sorted(len(e.recipients) for e in envelopes) == [49, 100, 100]
    assert all(len(e.recipients) <= RECIPIENTS_PER_ENVELOPE for e in envelopes)
    # And every online member but the sender is in exactly one of them
    everyone = [r.user_id for e in envelopes for r in e.recipients]
    assert sorted(everyone) == users[1:250]
    assert {json.loads(e.frame)["seq"] for e in envelopes} == {42}


def test_a_void_is_fanned_out_as_a_void_frame_to_every_online_member(
    aws_env: Any, registry: ConnectionRegistry, make_chat: MakeChat, fan: Fan
) -> None:
    # Given alice and bob online, and seq 3 filled with a VOID (its writer died)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    devices = online_all(registry, "u_alice", "u_bob")
    void = StoredVoid(chat_id=chat_id, seq=3, created_at="2026-11-28T03:21:07.123Z", members_version=0)
    # When the VOID is fanned out
    count = fan([void])
    # Then every online member's device (nobody sent it) gets a VOID frame for seq 3
    [envelope] = queued(aws_env)
    assert count == 1
    assert json.loads(envelope.frame) == {"type": "VOID", "chatId": chat_id, "seq": 3}
    assert {r.connection_id for r in envelope.recipients} == devices


def test_a_removal_announcement_also_reaches_the_removed_members_and_nothing_after_it(
    aws_env: Any, ledger: Ledger, registry: ConnectionRegistry, group_id: str, fan: Fan
) -> None:
    # Given alice's group with bob, carol and dave, all online
    online_all(registry, "u_alice", "u_bob", "u_carol", "u_dave", device_id="d1")
    # When alice removes bob and carol, then sends a message, and the stream fans both out
    remove(ledger, caller("u_alice", "d1"), group_id, ["u_bob", "u_carol"])
    send_message(ledger, caller("u_alice", "d1"), send_frame(group_id, "c1", b"bob"), QUEUED)
    fan(ledger.messages.after(group_id, 0, 10))
    # Then bob and carol get their removal (the last thing they get of the chat), not the message after it
    assert reached(queued(aws_env)) == {
        1: {"conn-u_alice-d1", "conn-u_bob-d1", "conn-u_carol-d1", "conn-u_dave-d1"},
        2: {"conn-u_dave-d1"},
    }


def test_envelopes_of_64_kib_messages_for_100_recipients_are_sent_in_batches_cut_by_bytes(
    aws_env: Any,
    queue: DeliveryQueue,
    registry: ConnectionRegistry,
    make_chat: MakeChat,
    fan: Fan,
    sqs: CountingSqs,
) -> None:
    # Given a group of 101 members with the longest ids allowed, all online, and a stream batch of
    # ten messages with 64 KiB ciphertexts and 32 media ids each (the largest messages there are)
    users = [f"u_{n:03d}_".ljust(64, "x") for n in range(101)]
    chat_id = make_chat(*users)
    device = "d".ljust(64, "x")
    for user in users:
        online(registry, user, device)
    media = [f"md_{n:02d}_".ljust(64, "m") for n in range(MAX_MEDIA_IDS)]
    big = bytes(range(256)) * (MAX_CIPHERTEXT_BYTES // 256)
    items = [
        stored_message(chat_id, seq=s, sender=users[0], device=device, ciphertext=big, media_ids=media)
        for s in range(1, 11)
    ]
    # When the batch is fanned out
    count = fan(items)
    # Then its envelopes (100 recipients at most, over 1 MiB together) went out in SendMessageBatch
    # calls cut by bytes: some calls carried several envelopes, none was over 1 MiB, none failed
    bodies = [e["MessageBody"].encode() for batch in sqs.batches for e in batch]
    assert count == len(bodies) >= 10
    assert sum(len(b) for b in bodies) > SQS_MAX_BYTES
    assert len(sqs.batches) < len(bodies)
    assert all(sum(len(e["MessageBody"].encode()) for e in batch) <= SQS_MAX_BYTES for batch in sqs.batches)
    # And every envelope is on the queue, whole: each message for each of the 100 others once
    envelopes = queued(aws_env)
    reached_by_seq: dict[int, list[str]] = {}
    for e in envelopes:
        assert len(e.recipients) <= 100
        reached_by_seq.setdefault(json.loads(e.frame)["seq"], []).extend(r.user_id for r in e.recipients)
    assert sorted(reached_by_seq) == list(range(1, 11))
    assert all(sorted(got) == sorted(users[1:]) for got in reached_by_seq.values())
    assert {base64.b64decode(json.loads(e.frame)["ciphertext"]) for e in envelopes} == {big}
    # And the queue does refuse those ten in one batch (what cutting by count alone would send)
    with pytest.raises(ClientError, match="BatchRequestTooLong"):
        queue.sqs.send_message_batch(
            QueueUrl=queue.queue_url,
            Entries=[{"Id": str(n), "MessageBody": b.decode()} for n, b in enumerate(bodies)],
        )


# --- the fanout function, end to end -------------------------------------------------------------


STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/unit-messages/stream/2026-11-28T00:00:00.000"


def stream_record(aws_env: Any, chat_id: str, seq: int, sequence_number: str) -> dict[str, Any]:
    """The stored item as Lambda's JSON event carries it (binary values base64-encoded)."""
    item = aws_env.ddb.get_item(
        TableName=aws_env.tables["messages"], Key={"chatId": {"S": chat_id}, "seq": {"N": str(seq)}}
    )["Item"]
    image = json.loads(
        json.dumps(item, default=lambda v: base64.b64encode(v).decode() if isinstance(v, bytes) else str(v))
    )
    return {
        "eventID": f"ev-{sequence_number}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795836067,
            "Keys": {"chatId": image["chatId"], "seq": image["seq"]},
            "NewImage": image,
            "SequenceNumber": sequence_number,
            "SizeBytes": 256,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": STREAM_ARN,
    }


def test_fanout_function_queues_the_queued_records_of_a_batch_and_skips_direct_ones(
    aws_env: Any,
    ledger: Ledger,
    registry: ConnectionRegistry,
    make_chat: MakeChat,
    handler_of: HandlerOf,
    lambda_context: Any,
) -> None:
    # Given bob online, and two of alice's stored messages as the stream delivers them: one of a
    # large group (queued), one pushed by the send itself (direct)
    chat_id = make_chat("u_alice", "u_bob")
    bob_phone = online(registry, "u_bob", "d_phone")
    alice = caller("u_alice", "d_phone")

    def send(client_msg_id: str, data: bytes, policy: SendPolicy) -> int:
        return send_message(ledger, alice, send_frame(chat_id, client_msg_id, data), policy).ack.seq

    queued_seq = send("c1", b"\xffhello\x00", QUEUED)
    direct_seq = send("c2", b"small", SendPolicy(dedup_ttl_s=3600))
    event = {
        "Records": [
            stream_record(aws_env, chat_id, queued_seq, "100"),
            stream_record(aws_env, chat_id, direct_seq, "200"),
        ]
    }
    # When the fanout function handles the batch
    result = handler_of("fanout")(event, lambda_context)
    # Then no record failed and one envelope for bob's phone holds the queued message, bytes intact
    assert result == {"batchItemFailures": []}
    [envelope] = queued(aws_env)
    assert [r.connection_id for r in envelope.recipients] == [bob_phone]
    frame = json.loads(envelope.frame)
    assert (frame["seq"], frame["from"]) == (queued_seq, "u_alice")
    assert base64.b64decode(frame["ciphertext"]) == b"\xffhello\x00"


def test_a_large_groups_offline_members_go_to_the_notify_queue_and_online_ones_do_not(
    aws_env: Any, registry: ConnectionRegistry, group_id: str, ledger: Ledger, pusher: Pusher
) -> None:
    # Given a group where bob is online, carol and dave offline, and alice sends from her phone
    online(registry, "u_alice", "d_phone")
    online(registry, "u_bob", "d_phone")
    notify = NotifyQueue(aws_env.queue_urls["notify"], aws_env.sqs)
    # When her message and a VOID are fanned out with the notify queue
    items = [
        stored_message(group_id, seq=7),
        StoredVoid(chat_id=group_id, seq=8, created_at="2026-11-28T03:21:08.000Z", members_version=0),
    ]
    fan_out(ledger.chats, ledger.messages, MemberListCache(), pusher, items, notify)
    # Then one job names the message and carol and dave (not alice, the sender, nor bob, online),
    # marked as a large group's; the VOID notifies nobody
    jobs = [NotifyJob.model_validate_json(m["Body"]) for m in aws_env.receive_all("notify")]
    assert [(j.chat_id, j.seq, sorted(j.users), j.large) for j in jobs] == [
        (group_id, 7, ["u_carol", "u_dave"], True)
    ]
