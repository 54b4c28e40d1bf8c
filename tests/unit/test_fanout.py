"""fanout (logic/fanout.py + functions/fanout): members x live connections -> chunked FIFO envelopes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, Envelope
from chat_backend.logic.fanout import RECIPIENTS_PER_ENVELOPE, MemberListCache, fan_out, recipients_of
from chat_backend.logic.send import send_message
from chat_backend.models import Caller, DeliveryEnvelope, Recipient, SendFrame, StoredMessage


def stored_message(
    chat_id: str = "c_9", seq: int = 7, sender: str = "u_alice", device: str = "d_phone"
) -> StoredMessage:
    return StoredMessage(
        chat_id=chat_id,
        seq=seq,
        server_msg_id=f"m_{seq}",
        sender=sender,
        sender_device=device,
        ciphertext=b"\x01\x02secret",
        media_ids=["md_1"],
        created_at="2026-11-28T03:21:07.123Z",
    )


def connect(registry: ConnectionRegistry, user_id: str, device_id: str) -> str:
    connection_id = f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def who(recipients: list[Recipient]) -> set[tuple[str, str, str]]:
    return {(r.user_id, r.device_id, r.connection_id) for r in recipients}


# --- recipients ----------------------------------------------------------------------------------


def test_recipients_are_every_connected_device_of_every_member_but_the_sending_one() -> None:
    # Given members alice (phone + laptop online), bob (phone + tablet online) and carol (offline),
    # and dave online but not a member
    members = ["u_alice", "u_bob", "u_carol"]
    devices = {
        "u_alice": {"d_phone": "c-a-phone", "d_laptop": "c-a-laptop"},
        "u_bob": {"d_phone": "c-b-phone", "d_tablet": "c-b-tablet"},
        "u_dave": {"d_phone": "c-d-phone"},
    }
    # When alice's phone sends a message
    recipients = recipients_of(members, devices, "u_alice", "d_phone")
    # Then it goes to her laptop and both of bob's devices; not to her phone, carol or dave
    assert who(recipients) == {
        ("u_alice", "d_laptop", "c-a-laptop"),
        ("u_bob", "d_phone", "c-b-phone"),
        ("u_bob", "d_tablet", "c-b-tablet"),
    }
    assert len(recipients) == 3


def test_fan_out_queues_the_message_for_online_devices_only(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    make_chat: Callable[..., str],
    io_pool: Executor,
) -> None:
    # Given the same chat with real tables: alice and bob online on two devices each, carol offline,
    # dave online but not a member
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice_laptop = connect(registry, "u_alice", "d_laptop")
    connect(registry, "u_alice", "d_phone")
    bob_phone, bob_tablet = connect(registry, "u_bob", "d_phone"), connect(registry, "u_bob", "d_tablet")
    connect(registry, "u_dave", "d_phone")
    # When alice's phone's message is fanned out
    count = fan_out(
        store, registry, queue, [stored_message(chat_id, sender="u_alice", device="d_phone")], io_pool
    )
    # Then one envelope in the chat's FIFO group names her laptop and bob's two devices
    [queued] = aws_env.receive_all()
    assert count == 1
    assert queued["Attributes"]["MessageGroupId"] == chat_id
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert who(envelope.recipients) == {
        ("u_alice", "d_laptop", alice_laptop),
        ("u_bob", "d_phone", bob_phone),
        ("u_bob", "d_tablet", bob_tablet),
    }


def test_no_online_recipient_enqueues_nothing(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    make_chat: Callable[..., str],
    io_pool: Executor,
) -> None:
    # Given a chat whose only other member is offline, and the sender on one device
    chat_id = make_chat("u_alice", "u_carol")
    connect(registry, "u_alice", "d_phone")
    # When alice's phone's message is fanned out
    envelopes = fan_out(store, registry, queue, [stored_message(chat_id)], io_pool)
    # Then nothing is queued: carol will get it from sync
    assert envelopes == 0
    assert aws_env.receive_all() == []


# --- envelopes (plain fakes, so 250 recipients cost nothing) -------------------------------------


class FakeMembers:
    def __init__(self, members: dict[str, list[str]], page_size: int = 100) -> None:
        self.members, self.page_size = members, page_size
        self.reads: list[str] = []

    def member_pages(self, chat_id: str) -> Iterator[list[str]]:
        self.reads.append(chat_id)
        users = self.members.get(chat_id, [])
        for start in range(0, len(users), self.page_size):
            yield users[start : start + self.page_size]


class FakeRegistry:
    def __init__(self, devices: dict[str, dict[str, str]]) -> None:
        self.devices = devices

    def devices_of(self, user_ids: list[str], pool: object = None) -> dict[str, dict[str, str]]:
        return {u: self.devices[u] for u in user_ids if u in self.devices}


class RecordingQueue:
    def __init__(self) -> None:
        self.batches: list[list[Envelope]] = []

    def enqueue(self, envelopes: list[Envelope]) -> None:
        self.batches.append(list(envelopes))


BIG_GROUP = [f"u_{n:03d}" for n in range(300)]


@pytest.fixture
def big_group() -> tuple[FakeMembers, FakeRegistry]:
    # c_big has 300 members, 250 of them online on one device each, the sender (u_000) among them
    devices = {u: {"d_phone": f"conn-{u}"} for u in BIG_GROUP[:250]}
    return FakeMembers({"c_big": BIG_GROUP}), FakeRegistry(devices)


def test_envelopes_are_chunked_at_100_recipients_in_the_chats_fifo_group(
    big_group: tuple[FakeMembers, FakeRegistry],
    io_pool: Executor,
) -> None:
    # Given a group with 250 online devices, one of them the sender's
    members, registry = big_group
    queue = RecordingQueue()
    message = stored_message("c_big", seq=42, sender="u_000", device="d_phone")
    # When the message is fanned out
    count = fan_out(members, registry, queue, [message], io_pool)  # type: ignore[arg-type]
    # Then 249 recipients go out in envelopes of 100, 100 and 49, all in FIFO group c_big
    [batch] = queue.batches
    assert count == 3 == len(batch)
    assert [len(e.body.recipients) for e in batch] == [100, 100, 49]
    assert all(len(e.body.recipients) <= RECIPIENTS_PER_ENVELOPE for e in batch)
    assert {e.group_id for e in batch} == {"c_big"}
    # And every online member but the sender is in exactly one envelope
    everyone = [r.user_id for e in batch for r in e.body.recipients]
    assert sorted(everyone) == [f"u_{n:03d}" for n in range(1, 250)]
    # And each envelope carries the MESSAGE frame of the stored message
    frame = json.loads(batch[0].body.frame)
    assert (frame["type"], frame["chatId"], frame["seq"], frame["from"]) == ("MESSAGE", "c_big", 42, "u_000")
    assert base64.b64decode(frame["ciphertext"]) == b"\x01\x02secret"


def test_a_stream_batch_is_queued_in_seq_order_per_chat_reading_each_chat_once(io_pool: Executor) -> None:
    # Given a stream batch whose records arrive out of seq order (streams order per item, not per chat)
    members = FakeMembers({"c_a": ["u_alice", "u_bob"], "c_b": ["u_alice", "u_carol"]})
    registry = FakeRegistry({"u_bob": {"d_phone": "conn-bob"}, "u_carol": {"d_phone": "conn-carol"}})
    queue = RecordingQueue()
    batch = [stored_message("c_b", 2), stored_message("c_a", 1), stored_message("c_b", 1)]
    # When the batch is fanned out
    fan_out(members, registry, queue, batch, io_pool)  # type: ignore[arg-type]
    # Then each chat's messages are queued in seq order, each chat's members read once
    [queued] = queue.batches
    assert [(e.group_id, json.loads(e.body.frame)["seq"]) for e in queued] == [
        ("c_a", 1),
        ("c_b", 1),
        ("c_b", 2),
    ]
    assert sorted(members.reads) == ["c_a", "c_b"]
    assert [{r.user_id for r in e.body.recipients} for e in queued] == [{"u_bob"}, {"u_carol"}, {"u_carol"}]


def test_member_lists_are_read_once_per_membership_version_across_batches(io_pool: Executor) -> None:
    # Given a group whose messages carry the membership version they were sent under, and one cache
    members = FakeMembers({"c_a": ["u_alice", "u_bob"]})
    registry = FakeRegistry({"u_bob": {"d_phone": "conn-bob"}})
    cache = MemberListCache()

    def at_version(seq: int, version: int) -> StoredMessage:
        return stored_message("c_a", seq).model_copy(update={"members_version": version})

    # When three stream batches at version 3 are fanned out, then one at version 4
    for seq in (1, 2, 3):
        fan_out(members, registry, RecordingQueue(), [at_version(seq, 3)], io_pool, cache)  # type: ignore[arg-type]
    assert members.reads == ["c_a"]
    members.members["c_a"].append("u_carol")
    queue = RecordingQueue()
    fan_out(members, registry, queue, [at_version(4, 4)], io_pool, cache)  # type: ignore[arg-type]
    # Then version 3's list was read once, and version 4 (a membership change) read afresh
    assert members.reads == ["c_a", "c_a"]
    assert queue.batches and {r.user_id for r in queue.batches[0][0].body.recipients} == {"u_bob"}


def test_member_list_cache_is_bounded_by_the_member_ids_it_holds() -> None:
    # Given a cache holding at most 5 member ids
    members = FakeMembers({"c_a": ["u_1", "u_2", "u_3"], "c_b": ["u_4", "u_5", "u_6"]})
    cache = MemberListCache(max_members=5)
    # When two 3-member lists are read, then the first again
    cache.members(members, "c_a", 1)  # type: ignore[arg-type]
    cache.members(members, "c_b", 1)  # type: ignore[arg-type]
    cache.members(members, "c_a", 1)  # type: ignore[arg-type]
    # Then the first had been evicted and was read again
    assert members.reads == ["c_a", "c_b", "c_a"]


def test_dedup_ids_are_stable_for_a_retried_record_and_distinct_per_envelope(
    big_group: tuple[FakeMembers, FakeRegistry],
    io_pool: Executor,
) -> None:
    # Given the same stream record processed twice (a retried batch)
    members, registry = big_group
    queue = RecordingQueue()
    message = stored_message("c_big", seq=42, sender="u_000")
    # When it is fanned out both times
    fan_out(members, registry, queue, [message], io_pool)  # type: ignore[arg-type]
    fan_out(members, registry, queue, [message], io_pool)  # type: ignore[arg-type]
    # Then both runs use the same dedup ids, one per envelope, and another seq uses others
    first, second = ([e.dedup_id for e in batch] for batch in queue.batches)
    assert first == second
    assert len(set(first)) == len(first) == 3
    fan_out(members, registry, queue, [stored_message("c_big", seq=43, sender="u_000")], io_pool)  # type: ignore[arg-type]
    assert not set(first) & {e.dedup_id for e in queue.batches[2]}


# --- the real queue (moto SQS FIFO) --------------------------------------------------------------


def test_enqueueing_a_record_twice_leaves_one_copy_in_the_fifo_queue(
    aws_env: Any, queue: DeliveryQueue, big_group: tuple[FakeMembers, FakeRegistry], io_pool: Executor
) -> None:
    # Given 249 recipients of one message
    members, registry = big_group
    message = stored_message("c_big", seq=42, sender="u_000")
    # When a retried stream record fans it out twice into the real FIFO queue
    fan_out(members, registry, queue, [message], io_pool)  # type: ignore[arg-type]
    fan_out(members, registry, queue, [message], io_pool)  # type: ignore[arg-type]
    # Then the queue holds each of the 3 envelopes once, in the chat's message group, in order
    received = aws_env.receive_all()
    assert len(received) == 3
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {"c_big"}
    envelopes = [DeliveryEnvelope.model_validate_json(m["Body"]) for m in received]
    assert [len(e.recipients) for e in envelopes] == [100, 100, 49]
    recipients = [r.user_id for e in envelopes for r in e.recipients]
    assert len(recipients) == len(set(recipients)) == 249


# --- the fanout function, end to end -------------------------------------------------------------


STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/unit-messages/stream/2026-11-28T00:00:00.000"


def lambda_image(item: dict[str, Any]) -> dict[str, Any]:
    """An item as Lambda's JSON event carries it: binary values base64-encoded."""
    return json.loads(
        json.dumps(item, default=lambda v: base64.b64encode(v).decode() if isinstance(v, bytes) else str(v))
    )


def stream_record(image: dict[str, Any], sequence_number: str, event_name: str = "INSERT") -> dict[str, Any]:
    # Shaped like powertools' sample dynamoStreamEvent.json.
    return {
        "eventID": f"ev-{sequence_number}",
        "eventName": event_name,
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


def send(store: ChatStore, caller: Caller, chat_id: str, data: bytes) -> int:
    frame = SendFrame.model_validate(
        {
            "action": "send",
            "clientMsgId": f"cm-{data.hex()}",
            "chatId": chat_id,
            "ciphertext": base64.b64encode(data).decode(),
        }
    )
    return send_message(store, caller, frame, 3600).seq


def stored_image(aws_env: Any, chat_id: str, seq: int) -> dict[str, Any]:
    item = aws_env.ddb.get_item(
        TableName=aws_env.tables["messages"], Key={"chatId": {"S": chat_id}, "seq": {"N": str(seq)}}
    )["Item"]
    return lambda_image(item)


def test_fanout_function_turns_an_insert_record_into_a_queued_envelope(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
    handler_of: Callable[[str], Any],
    lambda_context: Any,
) -> None:
    # Given bob online on his phone, and alice's stored message as the stream delivers it
    chat_id = make_chat("u_alice", "u_bob")
    bob_phone = connect(registry, "u_bob", "d_phone")
    seq = send(store, make_caller("u_alice", "d_phone"), chat_id, b"\xffhello\x00")
    event = {"Records": [stream_record(stored_image(aws_env, chat_id, seq), "100")]}
    # When the fanout function handles the batch
    result = handler_of("fanout")(event, lambda_context)
    # Then no record failed and one envelope for bob's phone waits in the chat's FIFO group
    assert result == {"batchItemFailures": []}
    [queued] = aws_env.receive_all()
    assert queued["Attributes"]["MessageGroupId"] == chat_id
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert who(envelope.recipients) == {("u_bob", "d_phone", bob_phone)}
    # And the frame is alice's message with her exact bytes
    frame = json.loads(envelope.frame)
    assert (frame["chatId"], frame["seq"], frame["from"], frame["fromDevice"]) == (
        chat_id,
        1,
        "u_alice",
        "d_phone",
    )
    assert base64.b64decode(frame["ciphertext"]) == b"\xffhello\x00"


def test_fanout_function_fails_the_batch_on_a_broken_record_and_its_retry_queues_once(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
    handler_of: Callable[[str], Any],
    lambda_context: Any,
) -> None:
    # Given a batch of a good INSERT, a broken INSERT (no serverMsgId) and a MODIFY
    # (the function fans out whole batches, so a failure fails the batch and Lambda bisects it)
    chat_id = make_chat("u_alice", "u_bob")
    connect(registry, "u_bob", "d_phone")
    seq = send(store, make_caller("u_alice"), chat_id, b"one")
    good = stored_image(aws_env, chat_id, seq)
    broken = {k: v for k, v in good.items() if k != "serverMsgId"} | {"seq": {"N": "2"}}
    handler = handler_of("fanout")
    batch = {
        "Records": [
            stream_record(good, "100"),
            stream_record(broken, "200"),
            stream_record(good, "300", event_name="MODIFY"),
        ]
    }
    # When the fanout function handles it
    # Then the invocation fails, so Lambda retries the batch (bisecting it down to the broken record)
    with pytest.raises(Exception) as failed:  # any error: Lambda only sees that the invocation failed
        handler(batch, lambda_context)
    assert "serverMsgId" in repr(failed.value)
    # And when the bisected halves are retried, the good record is queued exactly once, however often
    first_half = {"Records": batch["Records"][:1]}
    assert handler(first_half, lambda_context) == {"batchItemFailures": []}
    assert handler(first_half, lambda_context) == {"batchItemFailures": []}
    assert handler({"Records": batch["Records"][2:]}, lambda_context) == {"batchItemFailures": []}
    queued = aws_env.receive_all()
    assert [json.loads(DeliveryEnvelope.model_validate_json(m["Body"]).frame)["seq"] for m in queued] == [1]
