"""The HTTP fallback in routes.py (PROTOCOL.md v1.1 "HTTP fallback"): API Gateway HTTP API events
(payload format 2.0, JWT authorizer claims) through the same route handling as WebSocket events,
answered `{"frames": [...]}`; sync's replay collected into the answer instead of posted."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.stub import Stubber

from chat_backend.errors import Forbidden
from chat_backend.logic.frame_sink import FrameCollector
from chat_backend.logic.send import Ledger
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import SendFrame, SyncFrame
from chat_backend.models.common import MAX_FRAME_BYTES
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import OkFrame
from chat_backend.routes import handle_route, http_response, is_http
from tests.unit.helpers import GRACE_S, MakeChat, no_limits
from tests.unit.lambda_events import load_handler, message_event


def http_event(
    body: Any,
    *,
    action: str | None = None,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event of `POST /v1/<action>` past the JWT authorizer,
    shaped like powertools' sample apiGatewayProxyV2Event.json. `claims` None: no authorizer."""
    raw = body if body is None or isinstance(body, str) else json.dumps(body)
    if base64_body and raw is not None:
        raw = base64.b64encode(raw.encode()).decode()
    action = action or (body.get("action") if isinstance(body, dict) else "send")
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "api-id",
        "domainName": "api-id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "api-id",
        "http": {
            "method": "POST",
            "path": f"/v1/{action}",
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7",
            "userAgent": "chat-sdk",
        },
        "requestId": "id",
        "routeKey": f"POST /v1/{action}",
        "stage": "$default",
        "time": "28/Nov/2026:03:21:07 +0000",
        "timeEpoch": 1795836067123,
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": f"POST /v1/{action}",
        "rawPath": f"/v1/{action}",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": context,
        "body": raw,
        "isBase64Encoded": base64_body,
    }


ALICE_PHONE = {"sub": "u_alice", "device": "d_phone", "exp": "1895836067", "iat": "1795836067"}


def frames_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert list(body) == ["frames"]
    return list(body["frames"])


def send_body(chat_id: str, client_msg_id: str = "cm-1") -> dict[str, Any]:
    return {
        "action": "send",
        "clientMsgId": client_msg_id,
        "chatId": chat_id,
        "ciphertext": base64.b64encode(b"hello").decode(),
    }


def recorded_caller(event: dict[str, Any]) -> Caller:
    seen: list[Caller] = []

    def use_case(caller: Caller, frame: SendFrame) -> OkFrame:
        seen.append(caller)
        return OkFrame(requestId=frame.client_msg_id)

    frames_of(handle_route(event, SendFrame, use_case, no_limits()))
    [caller] = seen
    return caller


# --- the caller ------------------------------------------------------------------------------------


def test_http_and_websocket_events_are_told_apart() -> None:
    # Given an HTTP API event and a WebSocket MESSAGE event of the same frame
    body = send_body("c_1")
    # When routes.py looks at them
    # Then only the first is HTTP
    assert is_http(http_event(body, claims=ALICE_PHONE))
    assert not is_http(message_event(body))


def test_http_caller_is_the_sub_and_device_claims_with_a_per_device_pseudo_connection() -> None:
    # Given a request whose token has a device claim, and an X-Chat-Device header naming another
    event = http_event(send_body("c_1"), claims=ALICE_PHONE, headers={"X-Chat-Device": "d_other"})
    # When the route runs its use case
    caller = recorded_caller(event)
    # Then the caller is the claims' user and device (the claim wins over the header), and its
    # pseudo connection id is per user and device
    assert caller == Caller(user_id="u_alice", device_id="d_phone", connection_id="http:u_alice:d_phone")


@pytest.mark.parametrize(
    ("headers", "device"),
    [({"x-chat-device": "d_tablet"}, "d_tablet"), ({}, "default")],
    ids=["header", "none"],
)
def test_http_device_without_claim_is_the_header_else_default(headers: dict[str, str], device: str) -> None:
    # Given a token without a device claim (a Cognito token)
    claims = {"sub": "u_bob", "exp": "1895836067"}
    # When a request comes with (or without) an X-Chat-Device header
    caller = recorded_caller(http_event(send_body("c_1"), claims=claims, headers=headers))
    # Then the device is the header's, else "default"
    assert (caller.user_id, caller.device_id) == ("u_bob", device)
    assert caller.connection_id == f"http:u_bob:{device}"


@pytest.mark.parametrize(
    ("claims", "headers"),
    [
        (None, {}),
        ({"sub": "not a user id!", "exp": "1895836067"}, {}),
        ({"sub": "u_bob", "exp": "1895836067"}, {"x-chat-device": "../../etc"}),
    ],
    ids=["no-authorizer", "bad-sub", "bad-device-header"],
)
def test_http_request_without_a_valid_identity_is_401_and_runs_nothing(
    claims: dict[str, Any] | None, headers: dict[str, str]
) -> None:
    # Given a request with no authorizer claims, or ones that name no valid user or device
    event = http_event(send_body("c_1"), claims=claims, headers=headers)
    ran: list[Caller] = []
    # When the route handles it
    response = handle_route(event, SendFrame, lambda caller, frame: ran.append(caller), no_limits())
    # Then 401 and the use case never ran
    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"message": "Unauthorized"}
    assert ran == []


# --- answers ---------------------------------------------------------------------------------------


def test_http_send_is_answered_with_the_ack_frame_and_stored(
    aws_env: Any, make_chat: MakeChat, lambda_context: Any
) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    # When alice's phone POSTs a send through the send function
    response = load_handler("send").handler(
        http_event(send_body(chat_id), claims=ALICE_PHONE), lambda_context
    )
    # Then the answer's frames are the ACK, and the message is stored as hers
    [ack] = frames_of(response)
    assert (ack["type"], ack["clientMsgId"], ack["seq"]) == ("ACK", "cm-1", 1)
    [stored] = aws_env.messages(chat_id)
    assert (stored["sender"], stored["senderDevice"]) == ("u_alice", "d_phone")


def test_http_error_frames_are_in_the_frames_with_the_same_codes() -> None:
    # Given a send whose use case refuses it
    def use_case(caller: Caller, frame: SendFrame) -> None:
        raise Forbidden("not a member of c_1")

    event = http_event(send_body("c_1", "cm-9"), claims=ALICE_PHONE)
    # When the route handles it
    [frame] = frames_of(handle_route(event, SendFrame, use_case, no_limits()))
    # Then the answer is 200 with the same ERROR frame a WebSocket would have got
    assert (frame["type"], frame["code"], frame["clientMsgId"]) == ("ERROR", "FORBIDDEN", "cm-9")


def test_http_frame_whose_action_is_not_the_paths_is_bad_request() -> None:
    # Given a send frame POSTed to /v1/createChat
    event = http_event(send_body("c_1", "cm-3"), action="createChat", claims=ALICE_PHONE)
    # When the route handles it
    [frame] = frames_of(handle_route(event, SendFrame, lambda c, f: None, no_limits()))
    # Then BAD_REQUEST echoing the clientMsgId
    assert (frame["code"], frame["clientMsgId"]) == ("BAD_REQUEST", "cm-3")
    assert "createChat" in frame["message"]


def test_http_frame_over_the_websocket_limit_is_too_large() -> None:
    # Given a body over 128 KiB (within the HTTP API's 10 MB)
    body = json.dumps(send_body("c_1") | {"pad": "x" * MAX_FRAME_BYTES})
    # When the route handles it
    [frame] = frames_of(
        handle_route(http_event(body, claims=ALICE_PHONE), SendFrame, lambda c, f: None, no_limits())
    )
    # Then TOO_LARGE, as the WebSocket's rule has it
    assert (frame["type"], frame["code"]) == ("ERROR", "TOO_LARGE")


def test_http_base64_body_is_decoded() -> None:
    # Given a body API Gateway passed base64-encoded
    event = http_event(send_body("c_1", "cm-5"), claims=ALICE_PHONE, base64_body=True)
    # When the route handles it
    [frame] = frames_of(
        handle_route(event, SendFrame, lambda c, f: OkFrame(requestId=f.client_msg_id), no_limits())
    )
    # Then the frame was read as if it were plain
    assert (frame["type"], frame["requestId"]) == ("OK", "cm-5")


def test_http_route_answering_nothing_has_no_frames() -> None:
    # Given a use case that answers nothing (a receipt)
    event = http_event(send_body("c_1"), claims=ALICE_PHONE)
    # When the route handles it
    response = handle_route(event, SendFrame, lambda c, f: None, no_limits())
    # Then an empty list of frames
    assert frames_of(response) == []
    assert http_response(200, []) == response


# --- sync ------------------------------------------------------------------------------------------


def test_http_sync_answers_the_replay_then_sync_done_and_posts_nothing(
    aws_env: Any, make_chat: MakeChat, management_api: Any, lambda_context: Any
) -> None:
    # Given a chat in which bob sent two messages
    chat_id = make_chat("u_alice", "u_bob")
    bob = {**ALICE_PHONE, "sub": "u_bob", "device": "d_bob"}
    for cmid in ("cm-1", "cm-2"):
        load_handler("send").handler(http_event(send_body(chat_id, cmid), claims=bob), lambda_context)
    # When alice's phone POSTs a sync from nothing (any post to a connection would fail the stub)
    body = {"action": "sync", "requestId": "r1"}
    with Stubber(management_api) as stub:
        frames = frames_of(load_handler("sync").handler(http_event(body, claims=ALICE_PHONE), lambda_context))
        stub.assert_no_pending_responses()
    # Then the answer holds bob's messages in order, then SYNC_DONE
    assert [(f["type"], f.get("seq")) for f in frames] == [
        ("MESSAGE", 1),
        ("MESSAGE", 2),
        ("SYNC_DONE", None),
    ]
    assert frames[-1] == {"type": "SYNC_DONE", "requestId": "r1", "heads": {chat_id: 2}, "more": False}


def test_sync_into_a_collector_keeps_the_frames_it_would_have_posted(
    ledger: Ledger, make_chat: MakeChat, poster: Any
) -> None:
    # Given a chat with three messages from bob
    chat_id = make_chat("u_alice", "u_bob")
    bob = Caller(user_id="u_bob", device_id="d_bob", connection_id="conn-bob")
    from tests.unit.test_sync_replay import send

    for text in ("a", "b", "c"):
        send(ledger, bob, chat_id, text)
    alice = Caller(user_id="u_alice", device_id="d_phone", connection_id="http:u_alice:d_phone")
    frame = SyncFrame.model_validate({"action": "sync", "requestId": "r2", "cursors": {chat_id: 1}})
    # When alice syncs once into a collector and once into a poster
    collector = FrameCollector()
    done = sync(ledger, collector, alice, frame, GRACE_S)
    sync(ledger, poster, alice, frame, GRACE_S)
    # Then the collector holds exactly what the poster was given, in order, and SYNC_DONE is the same
    assert [json.loads(f) for f in collector.frames] == poster.frames()
    assert [json.loads(f)["seq"] for f in collector.frames] == [2, 3]
    assert done is not None and done.heads == {chat_id: 3}
