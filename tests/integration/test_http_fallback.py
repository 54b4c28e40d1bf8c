"""The HTTP fallback over the local stack (PROTOCOL.md v1.1 "HTTP fallback"): `POST /v1/<action>`
on the gateway's port with the WebSocket's token, and the SDK going over it by itself when no
WebSocket opens, with the WebSocket's guarantees, and back to the WebSocket when it can."""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from chat_client import ChatAuthError, ChatClient, mint_token
from local_stack.child import RunningStack
from tests.integration.helpers import Connect, NewUser


def http_base(stack: RunningStack) -> str:
    return f"http://127.0.0.1:{stack.port}"


def closed_port_url() -> str:
    """A ws:// URL nothing listens on: every WebSocket open is refused, as on a network that blocks them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


async def post(stack: RunningStack, action: str, frame: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{http_base(stack)}/v1/{action}", json=frame, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def send_frame(chat_id: str, client_msg_id: str, text: bytes) -> dict[str, Any]:
    return {
        "action": "send",
        "clientMsgId": client_msg_id,
        "chatId": chat_id,
        "ciphertext": base64.b64encode(text).decode(),
    }


@pytest.fixture
async def fallback_client(stack: RunningStack) -> AsyncIterator[Callable[..., ChatClient]]:
    """ChatClients whose WebSocket URL is refused (and whose http_url works); closed at the end."""
    made: list[ChatClient] = []

    def make(user: str, device: str = "d1", **options: Any) -> ChatClient:
        options = {"http_poll_min": 0.1, "http_poll_max": 0.5, "reconnect_min": 0.05, **options}
        token = mint_token(user, device, secret=stack.secret)
        client = ChatClient(closed_port_url(), token, http_url=http_base(stack) + "/", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


# --- the HTTP API itself ---------------------------------------------------------------------------


async def test_http_send_twice_is_one_message_with_the_same_ack_and_sync_replays_it(
    stack: RunningStack, connect: Connect, new_user: NewUser
) -> None:
    # Given alice (on a WebSocket) in a direct chat with bob
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    bob_token = mint_token(bob_id, "laptop", secret=stack.secret)
    # When bob POSTs the same send twice (same clientMsgId)
    frame = send_frame(chat_id, str(uuid.uuid4()), b"over http")
    first = await post(stack, "send", frame, bob_token)
    second = await post(stack, "send", frame, bob_token)
    # Then both answers are the same ACK, for one message at seq 1
    assert first[0] == second[0] == 200
    [ack] = first[1]["frames"]
    assert ack["type"] == "ACK" and ack["seq"] == 1
    assert second[1]["frames"] == [ack]
    # And alice, on her WebSocket, gets it pushed once
    message = await alice.next_message()
    assert (message.seq, message.sender, message.ciphertext) == (1, bob_id, b"over http")
    # And bob's sync over HTTP answers the message, then SYNC_DONE with head 1
    status, body = await post(stack, "sync", {"action": "sync", "requestId": "r1", "cursors": {}}, bob_token)
    assert status == 200
    frames = body["frames"]
    assert [(f["type"], f.get("seq")) for f in frames] == [("MESSAGE", 1), ("SYNC_DONE", None)]
    assert frames[0]["serverMsgId"] == ack["serverMsgId"]
    assert frames[-1]["heads"] == {chat_id: 1} and frames[-1]["requestId"] == "r1"


@pytest.mark.parametrize("token", [None, "not-a-jwt", "forged"], ids=["missing", "garbage", "wrong-key"])
async def test_http_request_without_a_valid_token_is_401(stack: RunningStack, token: str | None) -> None:
    # Given a request with no token, a malformed one, or one signed with another key
    if token == "forged":
        token = mint_token("u_mallory", "d1", secret="another-secret")
    # When it is POSTed
    status, body = await post(stack, "listChats", {"action": "listChats", "requestId": "r1"}, token)
    # Then 401, as API Gateway's JWT authorizer answers
    assert (status, body) == (401, {"message": "Unauthorized"})


async def test_http_unknown_or_live_connection_action_is_404_and_errors_are_frames(
    stack: RunningStack, new_user: NewUser
) -> None:
    # Given a valid token
    token = mint_token(new_user("carol"), "d1", secret=stack.secret)
    # When it POSTs an action no route serves, and one only a live connection has
    unknown = await post(stack, "launchRockets", {"action": "launchRockets"}, token)
    heartbeat = await post(stack, "heartbeat", {"action": "heartbeat"}, token)
    # And a frame whose action is not the path's, and a send to a chat that does not exist
    mismatch = await post(stack, "listChats", {"action": "sync", "requestId": "r2"}, token)
    forbidden = await post(stack, "send", send_frame("c_nothing", "cm-1", b"x"), token)
    # Then 404 for the first two; ERROR frames with the WebSocket's codes for the others
    assert unknown[0] == heartbeat[0] == 404
    assert mismatch[0] == 200 and [(f["code"], f["requestId"]) for f in mismatch[1]["frames"]] == [
        ("BAD_REQUEST", "r2")
    ]
    assert forbidden[0] == 200 and [(f["type"], f["code"]) for f in forbidden[1]["frames"]] == [
        ("ERROR", "FORBIDDEN")
    ]


# --- the SDK's fallback ----------------------------------------------------------------------------


async def test_sdk_falls_back_to_http_with_the_same_guarantees_and_returns_to_the_websocket(
    stack: RunningStack, connect: Connect, new_user: NewUser, fallback_client: Callable[..., ChatClient]
) -> None:
    # Given alice on a WebSocket and bob whose network lets no WebSocket through
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    bob = fallback_client(bob_id, websocket_retry_s=0.5)
    await bob.connect()
    # Then bob is connected over HTTP
    assert bob.transport == "http"
    chat_id = (await bob.create_chat("direct", [alice_id]))["chatId"]
    # When they exchange messages both ways
    await asyncio.gather(*(alice.send(chat_id, f"a{i}".encode()) for i in range(3)))
    acks = [await bob.send(chat_id, f"b{i}".encode()) for i in range(3)]
    # Then bob's sends were acknowledged at distinct seqs, in the order sent
    assert [a.seq for a in acks] == sorted(a.seq for a in acks)
    # And each gets the other's messages once, in seq order (bob's by polling sync)
    got_by_bob = [await bob.next_message(timeout=10) for _ in range(3)]
    got_by_alice = [await alice.next_message(timeout=10) for _ in range(3)]
    assert sorted(m.ciphertext for m in got_by_bob) == [b"a0", b"a1", b"a2"]
    assert [m.seq for m in got_by_bob] == sorted(m.seq for m in got_by_bob)
    assert [m.ciphertext for m in got_by_alice] == [b"b0", b"b1", b"b2"]
    assert [m.seq for m in got_by_alice] == [a.seq for a in acks]
    # And nothing comes twice, however often bob polled
    await asyncio.sleep(1.0)
    assert bob.messages.empty() and alice.messages.empty()
    assert bob.transport == "http"

    # When the WebSocket becomes reachable
    bob.url = stack.url
    for _ in range(100):
        if bob.transport == "websocket" and bob.connected.is_set():
            break
        await asyncio.sleep(0.1)
    # Then bob is back on it, and a message from alice is pushed to him there, once
    assert bob.transport == "websocket" and bob.connected.is_set()
    await alice.send(chat_id, b"a3")
    message = await bob.next_message(timeout=10)
    assert message.ciphertext == b"a3"
    await asyncio.sleep(0.5)
    assert bob.messages.empty()


async def test_sdk_over_http_reports_a_refused_token_as_an_auth_error(
    stack: RunningStack, new_user: NewUser
) -> None:
    # Given a client whose WebSocket is refused and whose token the HTTP API refuses
    token = mint_token(new_user("mallory"), "d1", secret="another-secret")
    client = ChatClient(closed_port_url(), token, http_url=http_base(stack), reconnect_min=0.05)
    # When it connects
    # Then it gets ChatAuthError (401), not a connection error
    with pytest.raises(ChatAuthError) as refused:
        await client.connect()
    assert refused.value.status == 401
    await client.close()


async def test_sdk_without_fallback_fails_as_before(stack: RunningStack, new_user: NewUser) -> None:
    # Given a client with the fallback off and a WebSocket URL nothing listens on
    token = mint_token(new_user("dave"), "d1", secret=stack.secret)
    client = ChatClient(closed_port_url(), token, http_url=http_base(stack), http_fallback=False)
    # When it connects
    # Then it fails with the network error, and never went over HTTP
    with pytest.raises(OSError):
        await client.connect()
    assert client.transport == "websocket"
    await client.close()
