"""To-device messages over the local stack through the SDK: key material from one device to
another, pushed live to a connected device, replayed by sync to one that was away, each once,
and forgotten by the server once acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from chat_client import ChatServerError
from tests.integration.helpers import direct_chat

Connect = Callable[..., Any]


async def test_key_material_reaches_each_device_once_live_or_by_sync_until_acknowledged(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a direct chat, bob's phone online, his laptop not yet connected
    alice_id, bob_id, alice, bob, _ = await direct_chat(connect, new_user)
    # When alice sends one ciphertext to each of bob's devices
    count = await alice.send_to_device(
        [(bob_id, "d1", b"for the phone"), (bob_id, "d_laptop", b"for the laptop")]
    )
    # Then the server took both, and the phone gets its own at once, from alice's device
    assert count == 2
    phone = await asyncio.wait_for(bob.to_device.get(), 10)
    assert (phone.sender, phone.sender_device, phone.ciphertext) == (alice_id, "d1", b"for the phone")
    # When the laptop connects, Then its sync replays its own, once
    laptop = await connect(bob_id, "d_laptop")
    got = await asyncio.wait_for(laptop.to_device.get(), 10)
    assert got.ciphertext == b"for the laptop"
    await laptop.sync()
    await asyncio.sleep(0.3)
    assert laptop.to_device.empty()
    # When the laptop acknowledges it and a fresh connection of the laptop syncs
    await laptop.ack_to_device([got.id])
    again = await connect(bob_id, "d_laptop")
    await again.sync()
    await asyncio.sleep(0.3)
    # Then nothing is replayed any more
    assert again.to_device.empty()


async def test_a_stranger_cannot_send_key_material(connect: Connect, new_user: Callable[[str], str]) -> None:
    # Given mallory, who shares no chat with bob
    mallory, bob_id = await connect(new_user("mallory")), new_user("bob")
    # When she sends bob's device a to-device message, Then it is FORBIDDEN
    with pytest.raises(ChatServerError) as refused:
        await mallory.send_to_device([(bob_id, "d1", b"x")])
    assert refused.value.code == "FORBIDDEN"
