"""deliver (logic/deliver.py + dal/connection_poster.py + functions/deliver): push envelopes with a
botocore Stubber on the management API; 410 drops that recipient's stale connection only."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.errors import ConnectionGone
from chat_backend.logic.deliver import deliver
from chat_backend.models import DeliveryEnvelope, Recipient

FRAME = json.dumps({"type": "MESSAGE", "chatId": "c_9", "seq": 4012, "from": "u_alice"})


def connect(registry: ConnectionRegistry, user_id: str, device_id: str, connection_id: str) -> None:
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)


def envelope(*recipients: tuple[str, str, str], frame: str = FRAME) -> DeliveryEnvelope:
    return DeliveryEnvelope(
        frame=frame, recipients=[Recipient(user_id=u, device_id=d, connection_id=c) for u, d, c in recipients]
    )


def expect_post(stub: Stubber, connection_id: str, frame: str = FRAME) -> None:
    stub.add_response("post_to_connection", {}, {"ConnectionId": connection_id, "Data": frame.encode()})


def expect_gone(stub: Stubber, connection_id: str, frame: str = FRAME) -> None:
    stub.add_client_error(
        "post_to_connection",
        service_error_code="GoneException",
        service_message="gone",
        http_status_code=410,
        expected_params={"ConnectionId": connection_id, "Data": frame.encode()},
    )


def expect_throttled(stub: Stubber, connection_id: str, frame: str = FRAME) -> None:
    stub.add_client_error(
        "post_to_connection",
        service_error_code="LimitExceededException",
        service_message="Rate exceeded",
        http_status_code=429,
        expected_params={"ConnectionId": connection_id, "Data": frame.encode()},
    )


@pytest.fixture
def in_order() -> Iterator[ThreadPoolExecutor]:
    """One worker, so posts happen in recipient order, which the Stubber's queue expects."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
def stub(management_api: Any) -> Iterator[Stubber]:
    with Stubber(management_api) as stubber:
        yield stubber


def test_poster_posts_the_frame_bytes_to_the_connection(management_api: Any, stub: Stubber) -> None:
    # Given a live connection
    expect_post(stub, "conn-1")
    # When a frame is posted to it
    ConnectionPoster("unused", api=management_api).post("conn-1", FRAME)
    # Then the management API got exactly that connection and those bytes
    stub.assert_no_pending_responses()


def test_poster_turns_410_into_connection_gone(management_api: Any, stub: Stubber) -> None:
    # Given a connection API Gateway no longer knows
    expect_gone(stub, "conn-old")
    # When a frame is posted to it
    # Then the poster says which connection is gone
    with pytest.raises(ConnectionGone) as err:
        ConnectionPoster("unused", api=management_api).post("conn-old", FRAME)
    assert err.value.connection_id == "conn-old"


def test_gone_recipient_loses_its_connection_record_and_the_others_still_get_the_post(
    registry: ConnectionRegistry,
    management_api: Any,
    stub: Stubber,
    in_order: ThreadPoolExecutor,
) -> None:
    # Given bob's phone (gone), carol's phone (live) and dave's phone, whose envelope names an old
    # connection that a reconnect has already replaced with conn-dave-new
    connect(registry, "u_bob", "d_phone", "conn-bob")
    connect(registry, "u_bob", "d_tablet", "conn-bob-tablet")
    connect(registry, "u_carol", "d_phone", "conn-carol")
    connect(registry, "u_dave", "d_phone", "conn-dave-new")
    expect_gone(stub, "conn-bob")
    expect_post(stub, "conn-carol")
    expect_gone(stub, "conn-dave-old")
    poster = ConnectionPoster("unused", api=management_api)
    env = envelope(
        ("u_bob", "d_phone", "conn-bob"),
        ("u_carol", "d_phone", "conn-carol"),
        ("u_dave", "d_phone", "conn-dave-old"),
    )
    # When the envelope is delivered
    gone = deliver(env, poster, registry, in_order)
    # Then carol got the post, two connections were gone,
    # bob's phone record is removed (his tablet stays), and dave's newer connection stays
    stub.assert_no_pending_responses()
    assert gone == 2
    assert registry.devices_of(["u_bob", "u_carol", "u_dave"]) == {
        "u_bob": {"d_tablet": "conn-bob-tablet"},
        "u_carol": {"d_phone": "conn-carol"},
        "u_dave": {"d_phone": "conn-dave-new"},
    }


def test_single_recipient_gone_is_removed_without_the_pool(
    registry: ConnectionRegistry, management_api: Any, stub: Stubber
) -> None:
    # Given a 1:1 envelope to bob's gone phone
    connect(registry, "u_bob", "d_phone", "conn-bob")
    expect_gone(stub, "conn-bob")

    class NoPool:
        def map(self, *_: Any) -> Any:
            raise AssertionError("a single recipient needs no thread hop")

    # When it is delivered
    gone = deliver(
        envelope(("u_bob", "d_phone", "conn-bob")),
        ConnectionPoster("unused", api=management_api),
        registry,
        NoPool(),  # type: ignore[arg-type]
    )
    # Then bob's record is gone
    assert gone == 1
    assert registry.devices_of(["u_bob"]) == {}


def test_throttling_fails_the_envelope_and_removes_nothing(
    registry: ConnectionRegistry, management_api: Any, stub: Stubber, in_order: ThreadPoolExecutor
) -> None:
    # Given carol's live phone and a management API that throttles the post to bob
    connect(registry, "u_bob", "d_phone", "conn-bob")
    connect(registry, "u_carol", "d_phone", "conn-carol")
    expect_post(stub, "conn-carol")
    expect_throttled(stub, "conn-bob")
    env = envelope(("u_carol", "d_phone", "conn-carol"), ("u_bob", "d_phone", "conn-bob"))
    # When the envelope is delivered
    # Then delivery fails (so the queue retries it) and no connection record is touched
    with pytest.raises(ClientError) as err:
        deliver(env, ConnectionPoster("unused", api=management_api), registry, in_order)
    assert err.value.response["Error"]["Code"] == "LimitExceededException"
    assert not isinstance(err.value, ConnectionGone)
    assert registry.devices_of(["u_bob", "u_carol"]) == {
        "u_bob": {"d_phone": "conn-bob"},
        "u_carol": {"d_phone": "conn-carol"},
    }


# --- the deliver function ------------------------------------------------------------------------


def sqs_record(message_id: str, group_id: str, env: DeliveryEnvelope) -> dict[str, Any]:
    # Shaped like powertools' sample sqsEvent.json, for a FIFO queue.
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": env.model_dump_json(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795836067123",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1795836067130",
            "MessageGroupId": group_id,
            "MessageDeduplicationId": f"{group_id}:{message_id}",
            "SequenceNumber": "18849496460467696128",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:unit-delivery.fifo",
        "awsRegion": "us-east-1",
    }


def frame_of(chat_id: str, seq: int) -> str:
    return json.dumps({"type": "MESSAGE", "chatId": chat_id, "seq": seq})


def test_deliver_function_reports_a_throttled_envelope_in_batch_item_failures(
    registry: ConnectionRegistry,
    stub: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    handler_of: Callable[[str], Any],
    lambda_context: Any,
) -> None:
    # Given a batch of two envelopes of different chats, the second one throttled
    connect(registry, "u_bob", "d_phone", "conn-bob")
    first = envelope(("u_bob", "d_phone", "conn-bob"), frame=frame_of("c_1", 1))
    second = envelope(("u_bob", "d_phone", "conn-bob"), frame=frame_of("c_2", 1))
    expect_post(stub, "conn-bob", first.frame)
    expect_throttled(stub, "conn-bob", second.frame)
    event = {"Records": [sqs_record("sqs-1", "c_1", first), sqs_record("sqs-2", "c_2", second)]}
    # When the deliver function handles the batch
    result = handler_of("deliver")(event, lambda_context)
    # Then the first was posted and only the second is reported failed, to be retried
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": [{"itemIdentifier": "sqs-2"}]}


def test_deliver_function_skips_the_rest_of_a_failed_fifo_group(
    registry: ConnectionRegistry,
    stub: Stubber,
    handler_of: Callable[[str], Any],
    lambda_context: Any,
) -> None:
    # Given c_1's seq 1 is throttled, then c_1's seq 2, then c_2's seq 1
    c1_first = envelope(("u_bob", "d_phone", "conn-bob"), frame=frame_of("c_1", 1))
    c1_second = envelope(("u_bob", "d_phone", "conn-bob"), frame=frame_of("c_1", 2))
    c2_first = envelope(("u_bob", "d_phone", "conn-bob"), frame=frame_of("c_2", 1))
    expect_throttled(stub, "conn-bob", c1_first.frame)
    expect_post(stub, "conn-bob", c2_first.frame)
    event = {
        "Records": [
            sqs_record("sqs-1", "c_1", c1_first),
            sqs_record("sqs-2", "c_1", c1_second),
            sqs_record("sqs-3", "c_2", c2_first),
        ]
    }
    # When the deliver function handles the batch
    result = handler_of("deliver")(event, lambda_context)
    # Then c_1's seq 2 is not pushed ahead of seq 1: both are reported for retry; c_2 went through
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": [{"itemIdentifier": "sqs-1"}, {"itemIdentifier": "sqs-2"}]}


def test_deliver_function_drops_a_gone_connection_and_succeeds(
    registry: ConnectionRegistry,
    stub: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    handler_of: Callable[[str], Any],
    lambda_context: Any,
) -> None:
    # Given an envelope to bob's gone phone and carol's live one, posted one at a time
    monkeypatch.setenv("CHAT_IO_CONCURRENCY", "1")
    connect(registry, "u_bob", "d_phone", "conn-bob")
    connect(registry, "u_carol", "d_phone", "conn-carol")
    env = envelope(("u_bob", "d_phone", "conn-bob"), ("u_carol", "d_phone", "conn-carol"))
    expect_gone(stub, "conn-bob")
    expect_post(stub, "conn-carol")
    # When the deliver function handles it
    result = handler_of("deliver")({"Records": [sqs_record("sqs-1", "c_9", env)]}, lambda_context)
    # Then the record succeeds (the message waits in the store for bob's sync) and bob's record is gone
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": []}
    assert registry.devices_of(["u_bob", "u_carol"]) == {"u_carol": {"d_phone": "conn-carol"}}
