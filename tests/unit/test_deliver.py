"""The deliver function (logic/deliver.py + functions/deliver), with a botocore Stubber on the
management API: it runs the delivery queue's retries through the Pusher (test_pusher.py), retries a
failing recipient alone, drops a gone connection, fails an SQS record only when its retry cannot be
queued, and drops a presence push once the status it announced has moved on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from chat_backend import services
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.models.queue_payloads import DeliveryEnvelope, PresenceGuard
from tests.unit.conftest import Enqueued
from tests.unit.helpers import HandlerOf
from tests.unit.posting import BOB, CAROL, FRAME, THROTTLED, connect, expect_error, expect_gone, expect_post


@pytest.fixture
def attempted(management_api: Any) -> list[str]:
    """The connection of every PostToConnection the functions' client is asked to make (seen
    before the Stubber answers, so a post it would refuse is listed too)."""
    seen: list[str] = []
    management_api.meta.events.register(
        "before-parameter-build.apigatewaymanagementapi.PostToConnection",
        lambda params, **_: seen.append(params["ConnectionId"]),
    )
    return seen


@pytest.fixture
def serial_io(monkeypatch: pytest.MonkeyPatch, aws_env: Any) -> None:
    """The functions post one at a time, so the Stubber's queue sees recipient order (the services
    built before are dropped: the functions build them again, with this)."""
    monkeypatch.setenv("CHAT_IO_CONCURRENCY", "1")
    services.forget()


def sqs_record(message_id: str, env: DeliveryEnvelope) -> dict[str, Any]:
    # Shaped like powertools' sample sqsEvent.json, for a standard queue.
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": env.model_dump_json(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795836067123",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1795836067130",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:unit-delivery",
        "awsRegion": "us-east-1",
    }


Deliver = Callable[..., dict[str, Any]]


@pytest.fixture
def deliver(serial_io: None, handler_of: HandlerOf, lambda_context: Any) -> Deliver:
    """Runs the deliver function on one SQS batch of the envelopes, as messages sqs-1, sqs-2, ..."""

    def run(*envelopes: DeliveryEnvelope) -> dict[str, Any]:
        records = [sqs_record(f"sqs-{n}", env) for n, env in enumerate(envelopes, 1)]
        return handler_of("deliver")({"Records": records}, lambda_context)

    return run


def frame_of(chat_id: str, seq: int) -> str:
    return json.dumps({"type": "MESSAGE", "chatId": chat_id, "seq": seq})


def test_deliver_function_retries_a_failing_recipient_alone_and_reports_no_failure(
    registry: ConnectionRegistry, stub: Stubber, enqueued: Enqueued, deliver: Deliver
) -> None:
    # Given an envelope (a retry already: attempt 2) to bob, throttled, and carol, live
    connect(registry, BOB, CAROL)
    env = DeliveryEnvelope(frame=FRAME, recipients=[BOB, CAROL], attempt=2)
    expect_error(stub, "conn-bob", *THROTTLED)
    expect_post(stub, "conn-carol")
    # When the deliver function handles it
    result = deliver(env)
    # Then carol got the frame and the record succeeded: bob's retry is a message of its own,
    # attempt 3, after 1 * 2**2 s
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": []}
    [(retry, delay)] = enqueued.envelopes()
    assert (retry.recipients, retry.attempt, delay) == ([BOB], 3, 4)


def test_deliver_function_fails_the_record_only_when_the_retry_cannot_be_queued(
    aws_env: Any, registry: ConnectionRegistry, stub: Stubber, deliver: Deliver
) -> None:
    # Given a delivery queue that no longer takes messages, an envelope to carol (live) and one to
    # bob (throttled) after it
    connect(registry, BOB, CAROL)
    aws_env.sqs.delete_queue(QueueUrl=aws_env.queue_urls["delivery"])
    to_carol = DeliveryEnvelope(frame=frame_of("c_1", 1), recipients=[CAROL])
    to_bob = DeliveryEnvelope(frame=frame_of("c_2", 1), recipients=[BOB])
    expect_post(stub, "conn-carol", to_carol.frame)
    expect_error(stub, "conn-bob", *THROTTLED, frame=to_bob.frame)
    # When the deliver function handles the batch
    result = deliver(to_carol, to_bob)
    # Then carol's went through, and only bob's record is reported failed, for SQS to retry it
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": [{"itemIdentifier": "sqs-2"}]}


def test_deliver_function_drops_a_gone_connection_and_succeeds(
    registry: ConnectionRegistry, stub: Stubber, enqueued: Enqueued, deliver: Deliver
) -> None:
    # Given an envelope to bob's gone phone and carol's live one
    connect(registry, BOB, CAROL)
    expect_gone(stub, "conn-bob")
    expect_post(stub, "conn-carol")
    env = DeliveryEnvelope(frame=FRAME, recipients=[BOB, CAROL])
    # When the deliver function handles it
    result = deliver(env)
    # Then the record succeeds (the message waits in the store for bob's sync), bob's record is
    # gone and nothing is retried
    stub.assert_no_pending_responses()
    assert result == {"batchItemFailures": []}
    assert registry.devices_of(["u_bob", "u_carol"]) == {"u_carol": {"d_phone": "conn-carol"}}
    assert enqueued.entries == []


PRESENCE = json.dumps({"type": "PRESENCE", "userId": "u_alice", "status": "ONLINE", "lastSeen": None})


@pytest.mark.parametrize(("guard_version", "posted"), [(1, False), (2, True), (3, False)])
def test_deliver_function_drops_a_presence_push_once_the_status_has_moved_on(
    guard_version: int,
    posted: bool,
    registry: ConnectionRegistry,
    stub: Stubber,
    attempted: list[str],
    enqueued: Enqueued,
    deliver: Deliver,
) -> None:
    # Given alice's presence state at version 2, and a retried PRESENCE push of hers to bob
    # guarded by version 1 (stale), 2 (current) or 3 (a state that is not there)
    presence = services.services().presence
    presence.renew_lease("u_alice", 1_000, 2_000)
    presence.renew_lease("u_alice", 1_500, 2_500)
    assert presence.state_of("u_alice").version == 2  # type: ignore[union-attr]
    connect(registry, BOB)
    if posted:
        expect_post(stub, "conn-bob", PRESENCE)
    env = DeliveryEnvelope(
        frame=PRESENCE,
        recipients=[BOB],
        attempt=1,
        presence=PresenceGuard(user_id="u_alice", version=guard_version),
    )
    # When the deliver function handles it
    result = deliver(env)
    # Then only the current one is posted; the others are dropped, not retried
    assert result == {"batchItemFailures": []}
    assert attempted == (["conn-bob"] if posted else [])
    stub.assert_no_pending_responses()
    assert enqueued.entries == []


def test_deliver_function_drops_a_presence_push_of_a_user_without_state(
    registry: ConnectionRegistry, stub: Stubber, attempted: list[str], enqueued: Enqueued, deliver: Deliver
) -> None:
    # Given a retried PRESENCE push of a user who has no presence state
    connect(registry, BOB)
    env = DeliveryEnvelope(
        frame=PRESENCE, recipients=[BOB], attempt=1, presence=PresenceGuard(user_id="u_ghost", version=1)
    )
    # When the deliver function handles it, Then nothing is posted or retried
    result = deliver(env)
    assert result == {"batchItemFailures": []}
    assert attempted == [] and enqueued.entries == []
