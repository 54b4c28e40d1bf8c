"""Typing over the local stack: relayed to the other members' online devices, never stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.helpers import direct_chat

Connect = Callable[..., Any]


async def test_typing_is_relayed_to_the_other_member_and_not_stored(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob online in a direct chat
    alice_id, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice starts typing
    await alice.send_frame({"action": "typing", "chatId": chat_id})
    # Then bob gets a TYPING frame naming her
    notice = await bob.next_frame("TYPING", timeout=10)
    assert notice == {"type": "TYPING", "chatId": chat_id, "userId": alice_id}
    # And nothing was stored: the chat has no messages
    assert (await bob.sync())[chat_id] == 0


async def test_typing_in_a_chat_one_is_not_in_is_forbidden(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob's chat, and mallory outside it
    _, _, _, bob, chat_id = await direct_chat(connect, new_user)
    mallory = await connect(new_user("mallory"))
    # When mallory sends typing for it
    await mallory.send_frame({"action": "typing", "chatId": chat_id})
    # Then she gets FORBIDDEN, and bob gets nothing
    error = await mallory.errors.get()
    assert error["code"] == "FORBIDDEN"
    with pytest.raises(TimeoutError):
        await bob.next_frame("TYPING", timeout=1.5)
