"""API Gateway's frame rules on the local gateway (PROTOCOL.md v1.1, "Frames on the wire"): a client
frame over 32 KiB or a message over 128 KiB closes the connection with 1009; a fragmented message up
to 128 KiB is carried; the SDK fragments what it sends."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from chat_client import mint_token
from chat_client.wire import fragments
from local_stack.child import RunningStack
from tests.integration.helpers import Connect, direct_chat


async def raw_connection(stack: RunningStack, user: str) -> ClientConnection:
    """A WebSocket with no SDK in between, so a test decides exactly which frames go out."""
    token = mint_token(user, "d_raw", secret=stack.secret)
    return await websockets.connect(f"{stack.url}?token={token}", max_size=None, compression=None)


def send_body(chat_id: str, client_msg_id: str, ciphertext: bytes, padding: int = 0) -> str:
    frame: dict[str, Any] = {
        "action": "send",
        "clientMsgId": client_msg_id,
        "chatId": chat_id,
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    if padding:
        frame["padding"] = "p" * padding  # unknown fields are ignored, but they count toward size
    return json.dumps(frame)


async def reply(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    return closed.value.rcvd.code if closed.value.rcvd else None


class RawAlice(NamedTuple):
    alice: Any  # her SDK client, to sync
    bob: Any
    chat_id: str
    ws: ClientConnection  # her raw connection, to send exactly the frames a test chooses


@pytest.fixture
async def raw_alice(stack: RunningStack, connect: Connect, new_user: Callable[[str], str]) -> RawAlice:
    """alice and bob in a direct chat, and alice also on a raw connection."""
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    assert alice.user_id
    return RawAlice(alice, bob, chat_id, await raw_connection(stack, alice.user_id))


async def test_one_frame_over_32_kib_closes_the_connection_with_1009(raw_alice: RawAlice) -> None:
    # Given alice on a raw connection, in a chat with bob
    alice, _bob, chat_id, ws = raw_alice
    # When she sends a valid send frame of 33 KiB in one WebSocket frame
    body = send_body(chat_id, "cm-big", b"x" * (24 * 1024))
    assert 32 * 1024 < len(body) < 128 * 1024
    await ws.send(body)
    # Then the connection is closed with 1009, as API Gateway does
    assert await closed_with(ws) == 1009
    # And nothing was stored
    assert (await alice.sync())[chat_id] == 0


async def test_a_fragmented_message_up_to_128_kib_is_carried(raw_alice: RawAlice) -> None:
    # Given alice on a raw connection, in a chat with bob
    _alice, bob, chat_id, ws = raw_alice
    # When she sends a 120 KiB send frame as 32 KiB continuation frames
    ciphertext = os.urandom(64 * 1024)
    body = send_body(chat_id, "cm-frag", ciphertext, padding=120 * 1024 - 90_000)
    assert 96 * 1024 < len(body) <= 128 * 1024
    await ws.send(fragments(body))
    # Then it is ACKed, and bob gets the ciphertext intact
    ack = await reply(ws)
    assert ack["type"] == "ACK" and ack["seq"] == 1, ack
    message = await bob.next_message(10)
    assert message.ciphertext == ciphertext


async def test_a_fragmented_message_over_128_kib_closes_the_connection_with_1009(raw_alice: RawAlice) -> None:
    # Given alice on a raw connection, in a chat with bob
    alice, _bob, chat_id, ws = raw_alice
    # When she sends 129 KiB in frames of 32 KiB
    body = send_body(chat_id, "cm-huge", b"x", padding=129 * 1024)
    await ws.send(fragments(body))
    # Then the connection is closed with 1009 and nothing is stored
    assert await closed_with(ws) == 1009
    assert (await alice.sync())[chat_id] == 0


async def test_the_sdk_fragments_a_64_kib_ciphertext_and_it_arrives(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a chat, over the SDK
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice sends the largest ciphertext the protocol allows (its frame is about 88 KiB)
    ciphertext = os.urandom(64 * 1024)
    ack = await alice.send(chat_id, ciphertext)
    # Then it is stored and bob gets it, byte for byte
    assert ack.seq == 1
    assert (await bob.next_message(10)).ciphertext == ciphertext


async def test_two_lone_surrogate_frames_each_get_a_bad_request_and_the_connection_stays(
    raw_alice: RawAlice,
) -> None:
    # Given alice on a raw connection, in a chat with bob
    _alice, _bob, chat_id, ws = raw_alice
    # When she sends two frames whose ids are lone surrogates (JSON escapes)
    await ws.send('{"action":"sync","requestId":"\\ud800"}')
    await ws.send(f'{{"action":"send","clientMsgId":"\\udfff","chatId":"{chat_id}","ciphertext":"eA=="}}')
    # Then each gets a BAD_REQUEST
    answers = [await reply(ws), await reply(ws)]
    assert [a.get("code") for a in answers] == ["BAD_REQUEST", "BAD_REQUEST"], answers
    # And the connection still works
    await ws.send(send_body(chat_id, "cm-ok", b"fine"))
    assert (await reply(ws))["type"] == "ACK"
