"""End-to-end encrypted text over the local stack (chat_client/secure.py): each device decrypts
what is meant for it, and nothing the server stores holds the plaintext."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.state import snapshotter
from chat_client.crypto.store import DeviceStore, new_store_key
from chat_client.secure import SecureChat
from local_stack.child import RunningStack

Connect = Callable[..., Any]


async def test_encrypted_text_reaches_every_device_and_the_server_stores_only_ciphertext(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str], tmp_path: Path
) -> None:
    # Given alice (phone and laptop) and bob, each device with its own store, in a direct chat
    alice_id, bob_id = new_user("alice"), new_user("bob")
    secure: dict[str, SecureChat] = {}
    for name, user, device in (("phone", alice_id, "d1"), ("laptop", alice_id, "d2"), ("bob", bob_id, "d1")):
        client = await connect(user, device)
        store = DeviceStore(tmp_path, user, device, new_store_key()).open()
        secure[name] = SecureChat(client, store)
        await secure[name].start()
    chat_id = (await secure["phone"].client.create_chat("direct", [bob_id]))["chatId"]
    secret = "the launch code is 4 8 15 16 23 42"
    try:
        # When alice's phone sends an encrypted text
        ack = await secure["phone"].send_text(chat_id, secret)
        # Then bob and alice's laptop each decrypt it, from her phone
        for reader in ("bob", "laptop"):
            got = await secure[reader].next_message(15)
            while got.state == "pending":  # the key may come after the message: then it is said again
                got = await secure[reader].next_message(15)
            assert (got.state, got.text, got.message.seq) == ("ok", secret, ack.seq)
            assert (got.message.sender, got.message.sender_device) == (alice_id, "d1")
        # When bob answers, Then alice's phone decrypts it
        await secure["bob"].send_text(chat_id, "roger")
        answer = await secure["phone"].next_message(15)
        while answer.state == "pending":
            answer = await secure["phone"].next_message(15)
        assert (answer.state, answer.text) == ("ok", "roger")
        # And no table or object the stack holds contains either text, plain or base64
        stored = "\n".join(snapshotter(stack.emulator_urls["dynamodb-local"], stack.emulator_urls["moto"])())
        for text in (secret, "roger"):
            assert text not in stored and base64.b64encode(text.encode()).decode() not in stored
        assert "launch code" not in stored
    finally:
        for s in secure.values():
            await s.close()
            s.engine.olm.store.close()
