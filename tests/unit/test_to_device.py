"""To-device messages (logic/to_device.py, dal/inbox_store.py) through the devices and sync
handlers over in-process moto: stored before the ACK, pushed to connected devices, replayed by
sync until acknowledged, once per txnId, only to devices the sender may reach."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.dal.connections import ConnectionRegistry
from tests.unit.helpers import MakeChat, fake_management_api, online

Route = Callable[..., dict[str, Any]]


def to_device(
    txn: str, *targets: tuple[str, str], chat_id: str | None = None, text: str = "key"
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "action": "sendToDevice",
        "requestId": f"r-{txn}",
        "txnId": txn,
        "messages": [
            {"userId": u, "deviceId": d, "ciphertext": base64.b64encode(f"{text}:{u}:{d}".encode()).decode()}
            for u, d in targets
        ],
    }
    if chat_id is not None:
        frame["chatId"] = chat_id
    return frame


def answer(response: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(response["body"]))


def inbox_of(aws_env: Any, user: str, device: str) -> list[dict[str, Any]]:
    return sorted(
        (i for i in aws_env.scan("inbox") if i["device"] == f"{user}#{device}"), key=lambda i: i["id"]
    )


@pytest.fixture
def posts(management_api: Any) -> list[tuple[str, dict[str, Any]]]:
    return fake_management_api(management_api)


def test_a_to_device_message_is_stored_before_the_ack_pushed_live_and_replayed_until_acked(
    aws_env: Any, route: Route, make_chat: MakeChat, registry: ConnectionRegistry, posts: list[Any]
) -> None:
    # Given alice and bob in a direct chat, bob's phone online and his laptop away
    make_chat("u_alice", "u_bob", kind="direct")
    phone = online(registry, "u_bob", "d_phone")
    # When alice's device sends key material to both of bob's devices
    ack = answer(
        route("devices", to_device("t1", ("u_bob", "d_phone"), ("u_bob", "d_laptop")), user_id="u_alice")
    )
    # Then the ACK counts both, and each device's inbox holds its own message
    assert (ack["type"], ack["txnId"], ack["count"], ack["requestId"]) == ("TO_DEVICE_ACK", "t1", 2, "r-t1")
    laptop_inbox = inbox_of(aws_env, "u_bob", "d_laptop")
    assert [bytes(i["ciphertext"]) for i in laptop_inbox] == [b"key:u_bob:d_laptop"]
    # And the phone, connected, got it pushed at once, from alice's device
    [(connection, pushed)] = [(c, f) for c, f in posts if f["type"] == "TO_DEVICE"]
    assert connection == phone
    assert (pushed["from"], pushed["fromDevice"]) == ("u_alice", "d_phone")
    assert base64.b64decode(pushed["ciphertext"]) == b"key:u_bob:d_phone"
    # When the laptop syncs, Then it is replayed, before anything else
    posts.clear()
    done = answer(
        route(
            "sync", {"action": "sync", "requestId": "s", "cursors": {}}, user_id="u_bob", device_id="d_laptop"
        )
    )
    assert done["type"] == "SYNC_DONE"
    replayed = [f for _, f in posts]
    assert [f["type"] for f in replayed][:1] == ["TO_DEVICE"] and replayed[0]["id"] == laptop_inbox[0]["id"]
    # When the laptop acknowledges it, Then OK, it is deleted, and the next sync replays nothing
    ok = answer(
        route(
            "devices",
            {"action": "ackToDevice", "requestId": "a", "ids": [replayed[0]["id"]]},
            user_id="u_bob",
            device_id="d_laptop",
        )
    )
    assert ok == {"type": "OK", "requestId": "a"}
    assert inbox_of(aws_env, "u_bob", "d_laptop") == []
    posts.clear()
    route("sync", {"action": "sync", "requestId": "s2", "cursors": {}}, user_id="u_bob", device_id="d_laptop")
    assert [f for _, f in posts if f["type"] == "TO_DEVICE"] == []


def test_a_retried_txn_stores_nothing_twice(
    aws_env: Any, route: Route, make_chat: MakeChat, posts: list[Any]
) -> None:
    # Given alice and bob in a direct chat
    make_chat("u_alice", "u_bob", kind="direct")
    # When alice's device sends the same transaction twice (its first ACK was lost), and another
    # device of hers uses the same txnId for its own transaction
    frame = to_device("t-same", ("u_bob", "d_phone"))
    first = answer(route("devices", frame, user_id="u_alice"))
    again = answer(route("devices", frame, user_id="u_alice"))
    other = answer(route("devices", frame, user_id="u_alice", device_id="d_laptop"))
    # Then all three are ACKed alike, and bob's phone holds one message per sending device
    assert first["count"] == again["count"] == other["count"] == 1
    assert sorted(i["fromDevice"] for i in inbox_of(aws_env, "u_bob", "d_phone")) == ["d_laptop", "d_phone"]


def test_recipients_must_share_a_chat_and_a_blocker_gets_nothing_without_a_word(
    aws_env: Any, route: Route, make_chat: MakeChat, posts: list[Any]
) -> None:
    # Given alice in a group with bob and carol, a direct chat with dave (who blocks her), and mallory nowhere
    group = make_chat("u_alice", "u_bob", "u_carol")
    make_chat("u_alice", "u_dave", kind="direct")
    route("consent", {"action": "block", "requestId": "b", "userId": "u_alice"}, user_id="u_dave")
    # When alice sends to mallory, or to bob without naming the chat they share
    # Then each is FORBIDDEN and nothing is stored
    for frame in (to_device("t1", ("u_mallory", "d_1")), to_device("t2", ("u_bob", "d_1"))):
        refused = answer(route("devices", frame, user_id="u_alice"))
        assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN")
    # And naming a chat mallory is not in is FORBIDDEN too
    refused = answer(
        route(
            "devices",
            to_device("t3", ("u_bob", "d_1"), ("u_mallory", "d_1"), chat_id=group),
            user_id="u_alice",
        )
    )
    assert refused["code"] == "FORBIDDEN"
    assert aws_env.scan("inbox") == []
    # When she sends to bob and carol naming the group, and to dave over their direct chat
    in_group = answer(
        route(
            "devices", to_device("t4", ("u_bob", "d_1"), ("u_carol", "d_1"), chat_id=group), user_id="u_alice"
        )
    )
    to_dave = answer(route("devices", to_device("t5", ("u_dave", "d_1")), user_id="u_alice"))
    # Then bob and carol get theirs; dave, who blocks her, gets nothing, and her ACK is the same as if he had
    assert (in_group["count"], to_dave["count"]) == (2, 1)
    assert len(inbox_of(aws_env, "u_bob", "d_1")) == len(inbox_of(aws_env, "u_carol", "d_1")) == 1
    assert inbox_of(aws_env, "u_dave", "d_1") == []
    # And her own other devices need no chat at all
    assert answer(route("devices", to_device("t6", ("u_alice", "d_laptop")), user_id="u_alice"))["count"] == 1


def test_an_ack_deletes_only_the_callers_own_devices_messages(
    aws_env: Any, route: Route, make_chat: MakeChat, posts: list[Any]
) -> None:
    # Given a message for bob's phone
    make_chat("u_alice", "u_bob", kind="direct")
    route("devices", to_device("t1", ("u_bob", "d_phone")), user_id="u_alice")
    [item] = inbox_of(aws_env, "u_bob", "d_phone")
    # When bob's laptop, or alice, acknowledges its id
    for user, device in (("u_bob", "d_laptop"), ("u_alice", "d_phone")):
        ack = {"action": "ackToDevice", "requestId": "a", "ids": [item["id"]]}
        assert answer(route("devices", ack, user_id=user, device_id=device))["type"] == "OK"
    # Then the phone still has it
    assert [i["id"] for i in inbox_of(aws_env, "u_bob", "d_phone")] == [item["id"]]


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "sendToDevice", "requestId": "r", "txnId": "t", "messages": []},
        {
            "action": "sendToDevice",
            "requestId": "r",
            "txnId": "",
            "messages": [{"userId": "u_b", "deviceId": "d", "ciphertext": "eA=="}],
        },
        {
            "action": "sendToDevice",
            "requestId": "r",
            "txnId": "t",
            "messages": [
                {"userId": "u_b", "deviceId": "d", "ciphertext": base64.b64encode(b"x" * 9000).decode()}
            ],
        },
        {
            "action": "sendToDevice",
            "requestId": "r",
            "txnId": "t",
            "messages": [{"userId": "u_b", "deviceId": "d", "ciphertext": "eA=="}] * 101,
        },
        {"action": "ackToDevice", "requestId": "r", "ids": ["not-an-id"]},
        {"action": "ackToDevice", "requestId": "r", "ids": []},
    ],
    ids=["no-messages", "empty-txn", "ciphertext-over-8-KiB", "over-100-messages", "bad-id", "no-ids"],
)
def test_bad_to_device_frames_are_bad_request_and_store_nothing(
    aws_env: Any, route: Route, frame: dict[str, Any]
) -> None:
    refused = answer(route("devices", frame, user_id="u_alice"))
    assert (refused["type"], refused["code"]) == ("ERROR", "BAD_REQUEST")
    assert aws_env.scan("inbox") == []
