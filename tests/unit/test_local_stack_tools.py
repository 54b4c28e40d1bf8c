"""The local stack's own tools: Lambda's event filter, injected faults, the frame tap."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.event_filter import matches
from local_stack.faults import (
    CrashFault,
    Faults,
    SharedCount,
    SimulatedCrash,
    current_function,
    running,
    running_as,
)
from local_stack.frame_tap import FrameTap
from local_stack.iam import AccessGuard
from tests.unit.conftest import physical_name

QUEUED_ONLY = {"dynamodb": {"NewImage": {"fanout": {"S": ["queued"]}}}}


def record(fanout: str | None) -> dict[str, Any]:
    image: dict[str, Any] = {"chatId": {"S": "c_1"}, "seq": {"N": "1"}}
    if fanout is not None:
        image["fanout"] = {"S": fanout}
    return {"eventName": "INSERT", "dynamodb": {"NewImage": image}}


@pytest.mark.parametrize(("fanout", "passes"), [("queued", True), ("direct", False), (None, False)])
def test_the_stream_filter_passes_only_items_the_send_path_does_not_push(
    fanout: str | None, passes: bool
) -> None:
    # Given the fan-out trigger's filter pattern (wiring)
    # When a stream record of an item stored with that fanout is matched
    # Then only a queued item reaches the function, as Lambda's event filtering would
    assert matches(QUEUED_ONLY, record(fanout)) is passes


def test_no_pattern_passes_everything_and_a_value_is_not_an_object() -> None:
    assert matches(None, {"anything": 1})
    assert not matches(QUEUED_ONLY, {"dynamodb": {"NewImage": {"fanout": "queued"}}})
    assert not matches(QUEUED_ONLY, {"dynamodb": "not an object"})


def test_a_crash_fault_fires_its_count_only_inside_its_function_and_call() -> None:
    # Given a fault crashing the send function once, after a call whose parameters hold "headSeq"
    faults = Faults()
    faults.set(
        {"kind": "crash", "function": "send", "operation": "dynamodb.UpdateItem", "contains": "headSeq"}
    )
    # When calls are made inside and outside the send function
    assert not faults.crash_due("sync", "dynamodb.UpdateItem", {"UpdateExpression": "SET headSeq"})
    assert not faults.crash_due("send", "dynamodb.PutItem", {"UpdateExpression": "SET headSeq"})
    assert not faults.crash_due("send", "dynamodb.UpdateItem", {"UpdateExpression": "SET seq"})
    # Then only the matching call fires it, once, and clearing tells how often it fired
    assert faults.crash_due("send", "dynamodb.UpdateItem", {"UpdateExpression": "SET headSeq"})
    assert not faults.crash_due("send", "dynamodb.UpdateItem", {"UpdateExpression": "SET headSeq"})
    assert faults.clear() == 1


def test_a_crash_is_a_base_exception_so_the_functions_own_handlers_cannot_swallow_it() -> None:
    assert not issubclass(SimulatedCrash, Exception)
    running("send")
    assert current_function() == "send"
    running(None)
    assert current_function() is None
    # And a crash out of an invocation leaves no function running behind it
    with pytest.raises(SimulatedCrash), running_as("send"):
        assert current_function() == "send"
        raise SimulatedCrash("send crashed")
    assert current_function() is None


def test_a_shared_count_fires_once_across_every_holder() -> None:
    # Given one firing in shared memory, held by two workers' copies of the fault
    counts = multiprocessing.get_context("spawn").Array("i", 4)
    counts[2] = 1
    faults = [Faults(), Faults()]
    spec = {"kind": "crash", "function": "send", "operation": "dynamodb.UpdateItem"}
    for f in faults:
        f.set(spec, SharedCount(counts, 2))
    # When both meet the call
    fired = [f.crash_due("send", "dynamodb.UpdateItem", {}) for f in faults]
    # Then it fired in one of them only
    assert fired == [True, False]


def test_post_faults_fail_or_lose_pushes_to_one_device_and_bad_specs_are_refused() -> None:
    faults = Faults()
    faults.set({"kind": "post", "userId": "u_bob", "deviceId": "d1", "mode": "429", "count": 2})
    assert faults.post_fault("u_alice", "d1") is None
    assert [faults.post_fault("u_bob", "d1") for _ in range(3)] == ["429", "429", None]
    with pytest.raises(ValueError):
        Faults.parse({"kind": "post", "userId": "u", "deviceId": "d", "mode": "teapot"})
    with pytest.raises(ValueError):
        Faults.parse({"kind": "meteor"})
    assert isinstance(Faults.parse({"kind": "crash", "function": "f", "operation": "o"}), CrashFault)


def test_the_frame_tap_keeps_the_first_write_of_each_message_to_each_connection() -> None:
    # Given a tap tracking one chat
    tap = FrameTap()
    tap.track(["c_1"])
    message = '{"type":"MESSAGE","chatId":"c_1","seq":3,"from":"a"}'
    # When the gateway writes the message twice to one connection, once to another, and others
    tap.wrote("conn-a", message)
    tap.wrote("conn-a", message)
    tap.wrote("conn-b", message)
    tap.wrote("conn-a", '{"type":"MESSAGE","chatId":"c_2","seq":1}')
    tap.wrote("conn-a", '{"type":"ACK","chatId":"c_1","seq":4}')
    # Then it kept one time per connection for the tracked chat's MESSAGE only
    assert list(tap.writes) == ["c_1"]
    assert sorted(tap.writes["c_1"][3]) == ["conn-a", "conn-b"]


# --- IAM: what each function's grants allow ------------------------------------------------------


@pytest.fixture
def guarded(aws_env: Any) -> Any:
    """A boto3 session with the local stack's AccessGuard on it (moto behind it)."""
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    AccessGuard().install(session.events)
    return session


def test_a_function_calling_a_table_it_was_not_granted_is_denied_as_aws_denies_it(guarded: Any) -> None:
    # Given the chats function (granted chats read/write, consent read; not keys)
    ddb = guarded.client("dynamodb")
    with running_as("chats"):
        # When it reads the consent table, Then that is allowed (moto answers)
        ddb.query(
            TableName=physical_name("consent"),
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues={":u": {"S": "u_a"}},
        )
        # When it reads the keys table or writes the consent table
        # Then each is AccessDeniedException, naming the action and the resource
        for call in (
            lambda: ddb.get_item(
                TableName=physical_name("keys"), Key={"userId": {"S": "u"}, "sk": {"S": "x"}}
            ),
            lambda: ddb.put_item(
                TableName=physical_name("consent"), Item={"userId": {"S": "u"}, "sk": {"S": "x"}}
            ),
        ):
            with pytest.raises(ClientError) as denied:
                call()
            assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
            assert "is not authorized to perform: dynamodb:" in str(denied.value)


def test_each_table_of_a_transaction_and_a_batch_is_checked(guarded: Any) -> None:
    # Given the consent function (consent, chats, presence; not messages)
    ddb = guarded.client("dynamodb")
    with running_as("consent"):
        # When a transaction writes the chats table and the messages table
        # Then it is denied for messages
        with pytest.raises(ClientError, match=f"dynamodb:PutItem on resource: {physical_name('messages')} "):
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": physical_name("chats"),
                            "Item": {"chatId": {"S": "c"}, "sk": {"S": "x"}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": physical_name("messages"),
                            "Item": {"chatId": {"S": "c"}, "seq": {"N": "1"}},
                        }
                    },
                ]
            )
        # When a batch reads the chats table and the keys table, Then it is denied for keys
        keys = [{"chatId": {"S": "c"}, "sk": {"S": "x"}}]
        with pytest.raises(ClientError, match=f"dynamodb:BatchGetItem on resource: {physical_name('keys')} "):
            ddb.batch_get_item(
                RequestItems={
                    physical_name("chats"): {"Keys": keys},
                    physical_name("keys"): {"Keys": [{"userId": {"S": "u"}, "sk": {"S": "x"}}]},
                }
            )


def test_presigning_is_not_a_call_and_the_emulators_own_calls_are_not_checked(guarded: Any) -> None:
    s3 = guarded.client("s3")
    # Given the send function, granted the media bucket for writes only
    with running_as("send"):
        # When it presigns a GET, Then nothing is refused (AWS checks a presigned URL when it is used)
        assert s3.generate_presigned_url("get_object", Params={"Bucket": physical_name("media"), "Key": "k"})
        # When it reads an object, Then that is AccessDenied
        with pytest.raises(ClientError) as denied:
            s3.get_object(Bucket=physical_name("media"), Key="k")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # And outside any function (the emulator's plumbing) nothing is checked
    s3.put_object(Bucket=physical_name("media"), Key="k", Body=b"x")


def test_only_functions_granted_the_connections_api_may_post(guarded: Any) -> None:
    api = guarded.client("apigatewaymanagementapi", endpoint_url="http://127.0.0.1:9")
    with running_as("chats"), pytest.raises(ClientError, match="execute-api:ManageConnections"):
        api.post_to_connection(ConnectionId="c1", Data=b"x")
