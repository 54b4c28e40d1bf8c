"""The core message path over the local stack, through the SDK and real WebSockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack
from tests.integration.helpers import direct_chat

Connect = Callable[..., Any]


async def collect(client: ChatClient, count: int, timeout: float = 20.0) -> list[Any]:
    return [await client.next_message(timeout) for _ in range(count)]


async def test_a_sent_message_is_acked_and_delivered_to_the_other_member(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob online, with a direct chat between them
    alice_id, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice sends a message
    ack = await alice.send(chat_id, b"ciphertext-1")
    # Then she gets an ACK with seq 1, and bob receives the same message, `from` set by the server
    assert ack.seq == 1 and ack.chat_id == chat_id
    message = await bob.next_message(10)
    assert (message.chat_id, message.seq, message.server_msg_id) == (chat_id, 1, ack.server_msg_id)
    assert message.sender == alice_id and message.sender_device == "d1"
    assert message.ciphertext == b"ciphertext-1"


async def test_creating_a_direct_chat_twice_from_either_side_gives_the_same_chat(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice created a direct chat with bob
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id)
    first = await alice.create_chat("direct", [bob_id])
    # When alice creates it again, and bob creates it from his side
    again = await alice.create_chat("direct", [bob_id])
    from_bob = await bob.create_chat("direct", [alice_id])
    # Then all three answers name the same chat of two members
    assert first["chatId"] == again["chatId"] == from_bob["chatId"]
    assert first["memberCount"] == 2 and first["role"] == "admin"


async def test_retried_and_concurrent_duplicate_sends_make_one_message_with_one_seq(
    connect: Connect, new_user: Callable[[str], str], stack: RunningStack
) -> None:
    # Given a chat, and alice on two devices
    alice_id, bob_id = new_user("alice"), new_user("bob")
    phone, laptop = await connect(alice_id, "phone"), await connect(alice_id, "laptop")
    bob = await connect(bob_id)
    chat_id = (await phone.create_chat("direct", [bob_id]))["chatId"]
    client_msg_id = str(uuid.uuid4())
    # When the same clientMsgId is sent at once from both devices and from four more raw
    # connections (each sending the frame twice), then retried once more later
    sdk_acks = asyncio.gather(
        *(d.send(chat_id, b"once", client_msg_id=client_msg_id) for d in (phone, laptop))
    )
    raw = asyncio.gather(*(raw_send_twice(stack, alice_id, chat_id, client_msg_id) for _ in range(4)))
    sdk_results, raw_results = await asyncio.gather(sdk_acks, raw)
    retried = await phone.send(chat_id, b"once", client_msg_id=client_msg_id)
    # Then all 11 answers are the same ACK: one serverMsgId, seq 1
    answers = {(a.server_msg_id, a.seq) for a in [*sdk_results, retried]}
    answers |= {(f["serverMsgId"], f["seq"]) for frames in raw_results for f in frames}
    assert answers == {(retried.server_msg_id, 1)}
    # And the chat holds exactly one message
    assert (await bob.next_message(10)).seq == 1
    assert (await bob.sync())[chat_id] == 1


async def raw_send_twice(
    stack: RunningStack, user: str, chat_id: str, client_msg_id: str
) -> list[dict[str, Any]]:
    """The same send frame twice on a fresh raw connection, without waiting in between."""
    url = f"{stack.url}?token={mint_token(user, 'raw' + uuid.uuid4().hex[:6], secret=stack.secret)}"
    frame = json.dumps(
        {
            "action": "send",
            "clientMsgId": client_msg_id,
            "chatId": chat_id,
            "ciphertext": "b25jZQ==",
            "mediaIds": [],
        }
    )
    async with websockets.connect(url) as ws:
        await ws.send(frame)
        await ws.send(frame)
        return [json.loads(await asyncio.wait_for(ws.recv(), 20)) for _ in range(2)]


async def test_three_members_sending_concurrently_get_one_gapless_total_order(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given a group of three, all online
    ids = [new_user(n) for n in ("ann", "ben", "cat")]
    members = [await connect(i) for i in ids]
    chat_id = (await members[0].create_chat("group", ids[1:], name="trio"))["chatId"]
    per_member = 15
    # When all three send 15 messages each at the same time
    acks = await asyncio.gather(
        *(m.send(chat_id, f"{i}:{n}".encode()) for i, m in enumerate(members) for n in range(per_member))
    )
    # Then the seqs are exactly 1..45
    total = 3 * per_member
    assert sorted(a.seq for a in acks) == list(range(1, total + 1))
    # And each member sees the others' messages in seq order, and the same order as everyone else
    order_by_seq = {a.seq: a.server_msg_id for a in acks}
    for member in members:
        received = await collect(member, total - per_member)
        seqs = [m.seq for m in received]
        assert seqs == sorted(seqs)
        assert all(order_by_seq[m.seq] == m.server_msg_id for m in received)


async def test_an_offline_member_gets_everything_in_order_with_paging_on_reconnect(
    connect: Connect, new_user: Callable[[str], str], stack: RunningStack
) -> None:
    # Given bob has never connected and alice sends him 25 messages
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    for n in range(25):
        await alice.send(chat_id, f"m{n}".encode())
    # When bob connects with a sync page of 10 messages
    bob = await connect(bob_id, sync_limit=10)
    # Then he has all 25, in order, each once
    received = await collect(bob, 25)
    assert [m.seq for m in received] == list(range(1, 26))
    assert [m.ciphertext for m in received] == [f"m{n}".encode() for n in range(25)]
    assert bob.messages.empty()
    # And a raw sync with limit 10 from cursor 0 says there is more
    done = await bob.request({"action": "sync", "cursors": {chat_id: 0}, "limit": 10})
    assert done["more"] is True and done["heads"][chat_id] == 25


async def test_a_connection_dropped_mid_stream_loses_nothing_after_reconnect(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given bob online in a chat with alice
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id, reconnect_min=0.05, reconnect_max=0.2)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]

    # When alice sends 40 messages and bob's connection drops abruptly in the middle
    async def send_all() -> None:
        for n in range(40):
            await alice.send(chat_id, f"m{n}".encode())
            if n == 15:
                await bob.drop_connection()

    await send_all()
    # Then bob, after reconnecting and syncing, has all 40 exactly once and in order
    received = await collect(bob, 40)
    assert [m.seq for m in received] == list(range(1, 41))
    await asyncio.wait_for(bob.connected.wait(), 10)  # the reconnect counts once its sync is done
    assert bob.reconnects >= 1
    await asyncio.sleep(0.5)
    assert bob.messages.empty()


async def test_the_sending_device_does_not_get_its_own_message_but_the_senders_other_device_does(
    connect: Connect, new_user: Callable[[str], str], stack: RunningStack
) -> None:
    # Given alice on a laptop (SDK) and a phone (raw socket, to see every frame), in a chat with bob
    alice_id, bob_id = new_user("alice"), new_user("bob")
    laptop = await connect(alice_id, "laptop")
    await connect(bob_id, auto_delivered=False)  # no DELIVERED receipts for the phone to see
    chat_id = (await laptop.create_chat("direct", [bob_id]))["chatId"]
    phone_url = f"{stack.url}?token={mint_token(alice_id, 'phone', secret=stack.secret)}"
    async with websockets.connect(phone_url) as phone:
        # When the phone sends
        await phone.send(
            json.dumps(
                {
                    "action": "send",
                    "clientMsgId": "p1",
                    "chatId": chat_id,
                    "ciphertext": "aGk=",
                    "mediaIds": [],
                }
            )
        )
        ack = json.loads(await asyncio.wait_for(phone.recv(), 10))
        # Then the laptop receives the message
        assert (await laptop.next_message(10)).server_msg_id == ack["serverMsgId"]
        # And the phone got the ACK and nothing else
        with pytest.raises(TimeoutError):
            extra = await asyncio.wait_for(phone.recv(), 1.0)
            pytest.fail(f"the sending device got {extra}")
    assert ack["type"] == "ACK"


async def test_a_new_member_learns_of_the_chat_from_sync_heads(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice created a group with bob and sent a message while bob was offline
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    chat_id = (await alice.create_chat("group", [bob_id], name="g"))["chatId"]
    await alice.send(chat_id, b"welcome")
    # When bob connects for the first time
    bob = await connect(bob_id)
    # Then his heads list the chat and he has the message
    assert bob.heads[chat_id] == 1
    assert (await bob.next_message(10)).ciphertext == b"welcome"
