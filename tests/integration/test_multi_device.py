"""Multi-device over the local stack: every device of every member gets each message, the sending
device excepted; each device keeps its own cursors; a new device syncs the history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Connect = Callable[..., Any]


async def test_four_devices_of_two_users_each_get_every_message_but_their_own(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob, each online on a phone and a laptop, in a direct chat
    alice_id, bob_id = new_user("alice"), new_user("bob")
    devices = {
        (user, device): await connect(user, device)
        for user in (alice_id, bob_id)
        for device in ("phone", "laptop")
    }
    chat_id = (await devices[alice_id, "phone"].create_chat("direct", [bob_id]))["chatId"]
    # When each of the four devices sends one message
    for (user, device), client in devices.items():
        await client.send(chat_id, f"{user}/{device}".encode())
    # Then each device receives the three messages the other devices sent, in seq order
    for (user, device), client in devices.items():
        received = [await client.next_message(10) for _ in range(3)]
        assert [m.seq for m in received] == sorted(m.seq for m in received)
        senders = {(m.sender, m.sender_device) for m in received}
        assert senders == set(devices) - {(user, device)}
        await asyncio.sleep(0.3)
        assert client.messages.empty()


async def test_a_device_connecting_for_the_first_time_gets_the_whole_history(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob exchanged five messages on their phones
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob_phone = await connect(alice_id, "phone"), await connect(bob_id, "phone")
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    for n in range(5):
        await (alice if n % 2 == 0 else bob_phone).send(chat_id, f"m{n}".encode())
    # When bob connects a new tablet
    tablet = await connect(bob_id, "tablet")
    # Then the tablet has all five, in order, its own user's included (they came from another device)
    history = [await tablet.next_message(10) for _ in range(5)]
    assert [m.ciphertext for m in history] == [f"m{n}".encode() for n in range(5)]
    assert tablet.cursors[chat_id] == 5
    # And the phone, with its own cursor, got alice's three (its own two only advanced its cursor)
    from_alice = [await bob_phone.next_message(10) for _ in range(3)]
    assert [m.ciphertext for m in from_alice] == [b"m0", b"m2", b"m4"]
    assert bob_phone.cursors[chat_id] == 5
