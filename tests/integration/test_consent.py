"""Consent over the local stack (PROTOCOL.md v1.1, "Consent and privacy"): a blocked user reaches
the blocker with nothing and cannot tell; groupAdd decides who may put a user in a group."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chat_client import ChatServerError
from tests.integration.helpers import Connect, direct_chat


async def test_a_blocked_user_is_acked_but_reaches_the_blocker_with_nothing(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a direct chat, both online, and alice blocking bob
    alice_id, bob_id, alice, bob, chat_id = await direct_chat(connect, new_user)
    assert (await alice.block(bob_id))["type"] == "OK"
    # When bob sends two messages and types
    acks = [await bob.send(chat_id, b"are you there?"), await bob.send(chat_id, b"hello?")]
    await bob.send_frame({"action": "typing", "chatId": chat_id})
    # Then bob is ACKed as usual (he cannot tell), and alice is shown nothing at all
    assert [a.seq for a in acks] == [1, 2]
    with pytest.raises(TimeoutError):
        await alice.next_message(2)
    with pytest.raises(TimeoutError):
        await alice.next_frame("TYPING", timeout=1)
    # But her device stepped over both seqs (VOIDs), so the chat is not stuck
    assert (await alice.sync())[chat_id] == 2
    assert alice.cursors[chat_id] == 2
    # And bob may not watch her presence any more
    with pytest.raises(ChatServerError) as refused:
        await bob.request({"action": "presence", "subscribe": [alice_id]})
    assert refused.value.code == "FORBIDDEN"
    # And after she unblocks him, his next message reaches her
    await alice.unblock(bob_id)
    await bob.send(chat_id, b"back")
    assert (await alice.next_message(10)).ciphertext == b"back"


async def test_group_add_privacy_leaves_users_out_and_names_them_to_the_requester_only(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given bob, who lets nobody add him to groups, and carol, who set nothing
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    alice, bob, carol = await connect(alice_id), await connect(bob_id), await connect(carol_id)
    assert (await bob.set_privacy("nobody"))["type"] == "OK"
    # When alice creates a group with both
    group = await alice.create_chat("group", [bob_id, carol_id], name="party")
    # Then carol is in and bob is left out, named in alice's answer only
    assert (group["memberCount"], group["notAdded"]) == (2, [bob_id])
    heads = await bob.sync()
    assert group["chatId"] not in heads
    assert group["chatId"] in await carol.sync()
