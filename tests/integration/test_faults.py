"""What AWS does when parts fail, injected into the local stack (local_stack/faults.py): a send
function dying between reserving a seq and storing its message, a recipient whose pushes fail,
a push lost on its way to a connected client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets

from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack

Connect = Callable[..., Any]


@pytest.fixture
async def faults(stack: RunningStack) -> AsyncIterator[RunningStack]:
    """The stack, with every fault cleared after the test."""
    yield stack
    stack.clear_faults()


async def replay(stack: RunningStack, user: str, chat_id: str) -> dict[int, set[str]]:
    """seq -> the frame types a fresh device of `user` gets for it when it syncs the chat from the
    start (a live push may arrive meanwhile too: the same frame again)."""
    url = f"{stack.url}?token={mint_token(user, 'replay', secret=stack.secret)}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "sync", "requestId": "r", "cursors": {chat_id: 0}}))
        frames = []
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 20)))["type"] != "SYNC_DONE":
            frames.append(frame)
        by_seq: dict[int, set[str]] = {}
        for frame in frames:
            if frame.get("chatId") == chat_id:
                by_seq.setdefault(frame["seq"], set()).add(frame["type"])
        return by_seq


@pytest.mark.parametrize(
    "dies_after",
    [
        pytest.param("headSeq", id="after reserving the seq"),
        pytest.param("serverMsgId", id="after recording the seq in its claim"),
    ],
)
async def test_a_send_that_dies_between_reserving_and_writing_is_stored_once_and_its_seq_becomes_a_void(
    connect: Connect, new_user: Callable[[str], str], faults: RunningStack, dies_after: str
) -> None:
    # Given alice and bob in a direct chat, and a send function that will die once right after
    # the UpdateItem that reserves the seq (or records it in the claim)
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id, ack_timeout=1.0)
    bob = await connect(bob_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    faults.inject_fault(kind="crash", function="send", operation="dynamodb.UpdateItem", contains=dies_after)
    # When alice sends (the SDK re-sends the same clientMsgId when no ACK comes)
    ack = await alice.send(chat_id, b"survives", deadline=60)
    # Then the fault fired, and the message was stored once, at the seq after the dead one
    assert faults.clear_faults() == 1
    assert ack.seq == 2
    # And bob gets it exactly once (the SDK steps over the dead seq once it is a VOID)
    message = await bob.next_message(30)
    assert (message.seq, message.text, message.server_msg_id) == (2, "survives", ack.server_msg_id)
    # And the chat replays as VOID 1, then the message: every seq exactly once
    assert await replay(faults, bob_id, chat_id) == {1: {"VOID"}, 2: {"MESSAGE"}}
    # And the next message takes the next seq
    assert (await alice.send(chat_id, b"next")).seq == 3
    assert (await bob.next_message(10)).seq == 3
    await asyncio.sleep(0.5)
    assert bob.messages.empty()


async def test_a_recipient_whose_pushes_fail_delays_no_one_else_and_gets_everything_later(
    connect: Connect, new_user: Callable[[str], str], faults: RunningStack
) -> None:
    # Given a group of alice, bob and carol, all online, and every push to carol failing (HTTP 500)
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    alice, bob = await connect(alice_id), await connect(bob_id)
    carol = await connect(carol_id)
    chat_id = (await alice.create_chat("group", [bob_id, carol_id], name="g"))["chatId"]
    faults.inject_fault(kind="post", userId=carol_id, deviceId="d1", mode="500", count=-1)
    # When alice sends five messages, one after the other
    latencies = []
    for n in range(5):
        started = time.perf_counter()
        await alice.send(chat_id, f"m{n}".encode())
        received = await bob.next_message(10)
        latencies.append(time.perf_counter() - started)
        assert received.seq == n + 1
    # Then bob got each one at once: carol's failures held up neither him nor the next message
    assert max(latencies) < 2.0
    assert carol.messages.empty()
    # And once carol's connection works again, her retries bring all five, in order
    faults.clear_faults()
    got = [await carol.next_message(30) for _ in range(5)]
    assert [m.seq for m in got] == [1, 2, 3, 4, 5]
    assert carol.reconnects == 0


async def test_a_push_lost_after_the_ack_reaches_a_connected_client_within_a_heartbeat(
    connect: Connect, new_user: Callable[[str], str], faults: RunningStack
) -> None:
    # Given bob online with a short heartbeat, and the next push to him accepted but never delivered
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    bob: ChatClient = await connect(bob_id, heartbeat_interval=1.0)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    faults.inject_fault(kind="post", userId=bob_id, deviceId="d1", mode="drop", count=1)
    # When alice sends, and the push to bob is lost
    ack = await alice.send(chat_id, b"lost push")
    # Then bob still gets it, from the PONG of his next heartbeat and a sync, without reconnecting
    message = await bob.next_message(10)
    assert (message.seq, message.server_msg_id) == (ack.seq, ack.server_msg_id)
    assert faults.clear_faults() == 1
    assert bob.reconnects == 0
