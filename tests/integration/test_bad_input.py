"""Bad input over the local stack: a clear ERROR, the connection stays usable, nothing is stored,
and nobody reads or writes a chat they are not in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from chat_client import ChatAuthError, ChatClient, ChatServerError, mint_token
from local_stack.child import RunningStack
from tests.integration.helpers import direct_chat

Connect = Callable[..., Any]
B64 = base64.b64encode(b"x").decode()


def send_frame(chat_id: str, **overrides: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"action": "send", "clientMsgId": "c1", "chatId": chat_id, "ciphertext": B64}
    frame.update(overrides)
    return {k: v for k, v in frame.items() if v is not ...}


BAD_FRAMES: list[tuple[str, Callable[[str], str], str]] = [
    ("malformed JSON", lambda chat: '{"action": "send", ', "BAD_REQUEST"),
    ("not an object", lambda chat: "[1, 2]", "BAD_REQUEST"),
    ("unknown action", lambda chat: json.dumps({"action": "teleport", "requestId": "r1"}), "BAD_REQUEST"),
    ("no action", lambda chat: json.dumps({"chatId": chat}), "BAD_REQUEST"),
    ("missing chatId", lambda chat: json.dumps(send_frame(chat, chatId=...)), "BAD_REQUEST"),
    ("missing ciphertext", lambda chat: json.dumps(send_frame(chat, ciphertext=...)), "BAD_REQUEST"),
    ("ill-typed chatId", lambda chat: json.dumps(send_frame(chat, chatId=42)), "BAD_REQUEST"),
    ("ill-typed mediaIds", lambda chat: json.dumps(send_frame(chat, mediaIds="md_1")), "BAD_REQUEST"),
    ("bad base64", lambda chat: json.dumps(send_frame(chat, ciphertext="not base64!")), "BAD_REQUEST"),
    (
        "ciphertext over 64 KiB decoded",
        lambda chat: json.dumps(
            send_frame(chat, ciphertext=base64.b64encode(b"x" * (64 * 1024 + 1)).decode())
        ),
        "TOO_LARGE",
    ),
    (
        "lone surrogate in clientMsgId",
        lambda chat: json.dumps(send_frame(chat, clientMsgId="\ud800")),
        "BAD_REQUEST",
    ),
    (
        "lone surrogate in a cursor's chat id",
        lambda chat: json.dumps({"action": "sync", "requestId": "r", "cursors": {"\udc00": 1}}),
        "BAD_REQUEST",
    ),
    (
        "60-digit upToSeq",
        lambda chat: f'{{"action":"receipt","chatId":"{chat}","type":"READ","upToSeq":{"9" * 60}}}',
        "BAD_REQUEST",
    ),
    (
        "60-digit cursor",
        lambda chat: f'{{"action":"sync","requestId":"r","cursors":{{"{chat}":{"9" * 60}}}}}',
        "BAD_REQUEST",
    ),
    (
        "sync with ill-typed cursor",
        lambda chat: json.dumps({"action": "sync", "requestId": "r", "cursors": {chat: "0"}}),
        "BAD_REQUEST",
    ),
    (
        "sync limit over 1000",
        lambda chat: json.dumps({"action": "sync", "requestId": "r", "limit": 5000}),
        "BAD_REQUEST",
    ),
    (
        "JSON nested 5,000 deep",
        lambda chat: '{"action": "send", "d": ' + "[" * 5000 + "]" * 5000 + "}",
        "BAD_REQUEST",
    ),
    (
        "createChat of unknown kind",
        lambda chat: json.dumps({"action": "createChat", "requestId": "r", "kind": "x", "members": ["u"]}),
        "BAD_REQUEST",
    ),
]


@pytest.mark.parametrize(("case", "make_frame", "code"), BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
async def test_a_bad_frame_gets_a_clear_error_stores_nothing_and_the_connection_stays_usable(
    connect: Connect, new_user: Callable[[str], str], case: str, make_frame: Callable[[str], str], code: str
) -> None:
    # Given alice and bob in a chat with no messages yet
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice sends a bad frame
    await alice.send_raw(make_frame(chat_id))
    # Then she gets an ERROR with the expected code
    error = await asyncio_get(alice.errors)
    assert error["type"] == "ERROR" and error["code"] == code, error
    assert error["message"]
    # And nothing was stored: the chat is still empty
    assert (await bob.sync())[chat_id] == 0
    # And the next good frame on the same connection works
    ack = await alice.send(chat_id, b"fine")
    assert ack.seq == 1


async def test_an_error_echoes_the_frames_request_id_and_client_msg_id(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice in a chat
    _, _, alice, _, chat_id = await direct_chat(connect, new_user)
    # When a send with a bad ciphertext carries a clientMsgId, and a bad sync a requestId
    await alice.send_raw(json.dumps(send_frame(chat_id, clientMsgId="cm-7", ciphertext="%%%")))
    first = await asyncio_get(alice.errors)
    await alice.send_raw(json.dumps({"action": "sync", "requestId": "rq-9", "limit": "ten"}))
    second = await asyncio_get(alice.errors)
    # Then each ERROR echoes the id
    assert (first["clientMsgId"], first["code"]) == ("cm-7", "BAD_REQUEST")
    assert (second["requestId"], second["code"]) == ("rq-9", "BAD_REQUEST")


async def test_a_non_member_gets_forbidden_and_learns_nothing_about_the_chat(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob's chat with one message, and mallory who is not in it
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    await alice.send(chat_id, b"private")
    mallory = await connect(new_user("mallory"))
    # When mallory sends to it, and syncs naming it in her cursors
    with pytest.raises(ChatServerError) as refused:
        await mallory.send(chat_id, b"let me in")
    heads = await mallory.sync()
    done = await mallory.request({"action": "sync", "cursors": {chat_id: 0}})
    # Then the send is FORBIDDEN, and her syncs show neither the chat nor its messages
    assert refused.value.code == "FORBIDDEN"
    assert chat_id not in heads and chat_id not in done["heads"]
    assert mallory.messages.empty()
    # And the same answer comes for a chat that does not exist, so existence is not leaked
    with pytest.raises(ChatServerError) as missing:
        await mallory.send("d_doesnotexist", b"?")
    assert missing.value.code == "FORBIDDEN"
    # And nothing was added to the chat
    assert (await bob.sync())[chat_id] == 1


async def test_from_is_taken_from_the_token_not_the_frame(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a chat
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice sends a frame claiming to be from bob
    await alice.send_raw(
        json.dumps(send_frame(chat_id, clientMsgId="spoof", **{"from": bob.user_id or "bob"}))
    )
    # Then bob receives it as from alice
    message = await bob.next_message(10)
    assert message.sender == alice.user_id


BAD_TOKENS: dict[str, Callable[[str], str | None]] = {
    "missing": lambda secret: None,
    "malformed": lambda secret: "not-a-jwt",
    "wrong signature": lambda secret: mint_token("eve", "d1", secret="some-other-secret-0123456789abcdef"),
    "expired": lambda secret: mint_token("eve", "d1", secret=secret, ttl_s=-60),
    "bad user id": lambda secret: mint_token("eve with spaces", "d1", secret=secret),
    "the reserved user id": lambda secret: mint_token("system", "d1", secret=secret),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_a_bad_token_is_refused_at_the_handshake(stack: RunningStack, kind: str) -> None:
    # Given a token that is missing, malformed, wrongly signed, expired or names a bad user id
    token = BAD_TOKENS[kind](stack.secret)
    url = stack.url if token is None else f"{stack.url}?token={token}"
    # When a client connects with it
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    # Then the handshake is refused: the authorizer denies (403), it does not fail
    assert refused.value.response.status_code == 403


async def test_the_sdk_reports_a_refused_handshake_without_retrying(stack: RunningStack) -> None:
    # Given a client with a wrongly signed token
    client = ChatClient(stack.url, mint_token("eve", "d1", secret="wrong-secret-0123456789abcdef0123"))
    # When it connects, Then it raises ChatAuthError
    with pytest.raises(ChatAuthError):
        await client.connect()
    await client.close()


async def asyncio_get(queue: Any, timeout: float = 10.0) -> dict[str, Any]:
    return dict(await asyncio.wait_for(queue.get(), timeout))
