"""Route handling through the real functions/<name>/handler.py files, with API Gateway WebSocket
MESSAGE events and moto behind them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from chat_backend.errors import Forbidden, RateLimited
from chat_backend.models.client_frames import SendFrame
from chat_backend.models.common import MAX_CIPHERTEXT_BYTES
from chat_backend.models.events import Caller
from chat_backend.routes import handle_route
from tests.unit.helpers import MakeChat, MakeEvent, Route, no_limits


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(response: dict[str, Any]) -> dict[str, Any]:
    """The frame a two-way route sends back on the caller's connection."""
    assert response["statusCode"] == 200
    return json.loads(response["body"])


def send_body(chat_id: str, client_msg_id: str = "cm-1", data: bytes = b"hello", **extra: Any) -> dict:
    return {
        "action": "send",
        "clientMsgId": client_msg_id,
        "chatId": chat_id,
        "ciphertext": b64(data),
    } | extra


# --- $default ------------------------------------------------------------------------------------


def test_default_answers_bad_request_for_unknown_action(route: Route) -> None:
    # Given a frame whose action no route serves
    body = {"action": "launchRockets", "requestId": "r9"}
    # When $default handles it
    frame = answer(route("default", body, route_key="$default"))
    # Then the caller gets BAD_REQUEST naming the action, echoing its requestId
    assert frame["type"] == "ERROR"
    assert frame["code"] == "BAD_REQUEST"
    assert "launchRockets" in frame["message"]
    assert frame["requestId"] == "r9"
    assert frame["clientMsgId"] is None


@pytest.mark.parametrize("body", ["hello there", '{"action": ', "[1, 2]", "", None])
def test_default_answers_bad_request_for_non_json(body: str | None, route: Route) -> None:
    # Given a frame that is not a JSON object
    # When $default handles it
    frame = answer(route("default", body, route_key="$default"))
    # Then the caller gets BAD_REQUEST with nothing to echo
    assert (frame["type"], frame["code"]) == ("ERROR", "BAD_REQUEST")
    assert frame["requestId"] is None


def test_default_answers_bad_request_for_frame_without_action(route: Route) -> None:
    # Given a JSON object without an action
    body = {"clientMsgId": "cm-7"}
    # When $default handles it
    frame = answer(route("default", body, route_key="$default"))
    # Then BAD_REQUEST, echoing the clientMsgId
    assert (frame["code"], frame["clientMsgId"]) == ("BAD_REQUEST", "cm-7")


# --- send ----------------------------------------------------------------------------------------


def test_send_is_acked_with_seq_1_and_stored(aws_env: Any, make_chat: MakeChat, route: Route) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    # When alice sends through the send function
    frame = answer(route("send", send_body(chat_id)))
    # Then she gets an ACK with seq 1 and the message is in the messages table
    assert frame["type"] == "ACK"
    assert (frame["chatId"], frame["clientMsgId"], frame["seq"]) == (chat_id, "cm-1", 1)
    stored = aws_env.messages(chat_id)
    assert [(m["seq"], m["serverMsgId"]) for m in stored] == [(1, frame["serverMsgId"])]


def test_send_to_chat_user_is_not_in_is_forbidden_and_stores_nothing(
    aws_env: Any, make_chat: MakeChat, route: Route
) -> None:
    # Given a chat of bob and carol, and mallory who is not in it
    chat_id = make_chat("u_bob", "u_carol")
    chats_before = aws_env.scan("chats")
    # When mallory sends to it
    frame = answer(route("send", send_body(chat_id, "cm-evil"), user_id="u_mallory"))
    # Then she gets FORBIDDEN echoing her clientMsgId, and no message, head or dedup record changed
    assert (frame["type"], frame["code"], frame["clientMsgId"]) == ("ERROR", "FORBIDDEN", "cm-evil")
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == chats_before


def test_send_to_chat_that_does_not_exist_is_forbidden(aws_env: Any, route: Route) -> None:
    # Given no chat c_nowhere
    # When alice sends to it
    frame = answer(route("send", send_body("c_nowhere")))
    # Then FORBIDDEN (no hint whether the chat exists) and nothing is stored
    assert frame["code"] == "FORBIDDEN"
    assert aws_env.messages() == [] and aws_env.scan("chats") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"action": "send", "clientMsgId": "cm-bad", "ciphertext": "aGk="}, "BAD_REQUEST"),
        ({"action": "send", "clientMsgId": "cm-bad", "chatId": 5, "ciphertext": "aGk="}, "BAD_REQUEST"),
        ({"action": "send", "clientMsgId": "cm-bad", "chatId": "CHAT", "ciphertext": "%%%"}, "BAD_REQUEST"),
        (
            {
                "action": "send",
                "clientMsgId": "cm-bad",
                "chatId": "CHAT",
                "ciphertext": b64(b"\0" * (MAX_CIPHERTEXT_BYTES + 1)),
            },
            "TOO_LARGE",
        ),
        ('{"action": "send", "clientMsgId": "cm-bad", "chatId": "CHAT"', "BAD_REQUEST"),
    ],
    ids=["missing-chatId", "int-chatId", "bad-base64", "ciphertext-over-64KiB", "truncated-json"],
)
def test_bad_send_frame_answers_error_stores_nothing_and_next_good_frame_works(
    body: Any, code: str, aws_env: Any, make_chat: MakeChat, route: Route
) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    chats_before = aws_env.scan("chats")
    if isinstance(body, dict) and body.get("chatId") == "CHAT":
        body["chatId"] = chat_id
    elif isinstance(body, str):
        body = body.replace("CHAT", chat_id)
    # When alice sends a bad frame on her connection
    frame = answer(route("send", body, route_key="send"))
    # Then she gets the ERROR (echoing her clientMsgId when the frame was JSON) and nothing changed
    assert (frame["type"], frame["code"]) == ("ERROR", code)
    if isinstance(body, dict):
        assert frame["clientMsgId"] == "cm-bad"
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == chats_before
    # And when she then sends a good frame on the same connection, it is stored as seq 1
    good = answer(route("send", send_body(chat_id, "cm-good")))
    assert (good["type"], good["seq"]) == ("ACK", 1)
    assert [m["seq"] for m in aws_env.messages(chat_id)] == [1]


def test_sender_comes_from_the_token_not_the_frame(aws_env: Any, make_chat: MakeChat, route: Route) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    # When alice (token: u_alice / d_laptop) sends a frame claiming to be from bob's phone
    body = send_body(chat_id, **{"from": "u_bob", "fromDevice": "d_bobphone", "sender": "u_bob"})
    frame = answer(route("send", body, user_id="u_alice", device_id="d_laptop"))
    # Then the stored message names alice and her laptop, as her token says
    assert frame["type"] == "ACK"
    [stored] = aws_env.messages(chat_id)
    assert (stored["sender"], stored["senderDevice"]) == ("u_alice", "d_laptop")


def test_send_stores_the_ciphertext_bytes_exactly(aws_env: Any, make_chat: MakeChat, route: Route) -> None:
    # Given opaque bytes, including ones that are not UTF-8
    data = bytes(range(256)) * 3
    chat_id = make_chat("u_alice", "u_bob")
    # When alice sends them base64-encoded
    answer(route("send", send_body(chat_id, data=data)))
    # Then the table holds exactly those bytes, as binary
    [stored] = aws_env.messages(chat_id)
    assert bytes(stored["ciphertext"]) == data


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (
            RateLimited("this clientMsgId is being sent; retry", 350),
            {"code": "RATE_LIMITED", "retryAfterMs": 350},
        ),
        (Forbidden("not a member of c_1"), {"code": "FORBIDDEN"}),
        (RuntimeError("boom"), {"code": "INTERNAL"}),
    ],
    ids=["rate-limited", "forbidden", "internal"],
)
def test_only_a_rate_limited_error_frame_tells_when_to_retry(
    refusal: Exception, expected: dict[str, Any], make_message_event: MakeEvent
) -> None:
    # Given a send whose use case refuses it (or fails)
    def use_case(caller: Caller, frame: SendFrame) -> None:
        raise refusal

    event = make_message_event(send_body("c_1", "cm-9"))
    # When the route handles it
    frame = answer(handle_route(event, SendFrame, use_case, no_limits()))
    # Then the ERROR echoes the clientMsgId, and carries retryAfterMs only for RATE_LIMITED
    assert {k: frame[k] for k in ("type", "clientMsgId")} == {"type": "ERROR", "clientMsgId": "cm-9"}
    assert {k: v for k, v in frame.items() if k in ("code", "retryAfterMs")} == expected


# --- other routes --------------------------------------------------------------------------------


def test_heartbeat_answers_pong(aws_env: Any, route: Route) -> None:
    # Given a connected device
    # When it sends heartbeat
    frame = answer(route("presence", {"action": "heartbeat"}))
    # Then it gets PONG
    assert frame == {"type": "PONG"}


def test_create_chat_route_answers_chat_frame(aws_env: Any, route: Route) -> None:
    # Given alice
    body = {"action": "createChat", "requestId": "r3", "kind": "group", "name": "team", "members": ["u_5"]}
    # When she creates a group with u_5 through the chats function
    frame = answer(route("chats", body))
    # Then she gets CHAT for a group of two in which she is admin
    assert frame["type"] == "CHAT"
    assert (frame["requestId"], frame["kind"], frame["name"]) == ("r3", "group", "team")
    assert (frame["memberCount"], frame["role"]) == (2, "admin")


def test_create_chat_route_with_self_is_bad_request_echoing_request_id(aws_env: Any, route: Route) -> None:
    # Given alice
    body = {"action": "createChat", "requestId": "r4", "kind": "direct", "members": ["u_alice"]}
    # When she creates a direct chat with herself
    frame = answer(route("chats", body, user_id="u_alice"))
    # Then BAD_REQUEST echoing r4, and no chat exists
    assert (frame["code"], frame["requestId"]) == ("BAD_REQUEST", "r4")
    assert aws_env.scan("chats") == []


def test_sync_route_pushes_messages_to_the_caller_then_answers_sync_done(
    aws_env: Any, make_chat: MakeChat, management_api: Any, route: Route
) -> None:
    # Given a chat in which bob sent one message
    chat_id = make_chat("u_alice", "u_bob")
    sent = answer(route("send", send_body(chat_id, data=b"hi"), user_id="u_bob"))
    # When alice's laptop (connection conn-a) syncs from nothing
    body = {"action": "sync", "requestId": "r1"}
    laptop = {"user_id": "u_alice", "device_id": "d_laptop", "connection_id": "conn-a"}
    posted: list[dict[str, Any]] = []
    management_api.meta.events.register(
        "before-parameter-build.apigatewaymanagementapi.PostToConnection",
        lambda params, **_: posted.append(dict(params)),
    )
    with Stubber(management_api) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "conn-a", "Data": ANY})
        frame = answer(route("sync", body, **laptop))
        stub.assert_no_pending_responses()
    # Then bob's message was pushed on her connection as a MESSAGE frame
    [push] = posted
    message = json.loads(push["Data"])
    assert push["ConnectionId"] == "conn-a"
    assert message["type"] == "MESSAGE"
    assert (message["chatId"], message["seq"], message["serverMsgId"]) == (chat_id, 1, sent["serverMsgId"])
    assert (message["from"], base64.b64decode(message["ciphertext"])) == ("u_bob", b"hi")
    # And the route answers SYNC_DONE with the chat's head
    assert frame == {"type": "SYNC_DONE", "requestId": "r1", "heads": {chat_id: 1}, "more": False}
