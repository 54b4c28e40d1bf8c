"""Groups over the local stack through the SDK: membership changes, their system messages, and the
10,000-member limit and fan-out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chat_client import ChatServerError, Message

Connect = Callable[..., Any]
GROUP_LIMIT = 10_000


def announcement(message: Message) -> dict[str, Any]:
    assert message.sender == "system"
    return dict(json.loads(message.ciphertext))


async def test_admin_adds_a_member_whose_history_starts_at_the_change_and_everyone_sees_it_in_order(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice's group with bob, both online, and a first message from alice
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    alice, bob = await connect(alice_id), await connect(bob_id)
    chat_id = (await alice.create_chat("group", [bob_id], name="team"))["chatId"]
    await alice.send(chat_id, b"before carol")
    assert (await bob.next_message(timeout=10)).seq == 1
    # When alice adds carol
    answer = await alice.add_members(chat_id, [carol_id])
    # Then the answer is the chat with 3 members
    assert (answer["type"], answer["chatId"], answer["memberCount"]) == ("CHAT", chat_id, 3)
    # And bob gets the change as system message #2
    change = await bob.next_message(timeout=10)
    assert change.seq == 2
    assert announcement(change) == {"event": "added", "members": [carol_id], "by": alice_id}
    # And carol, connecting later, syncs the chat from the change that added her: the message
    # before it is not hers (her history window starts at 2)
    carol = await connect(carol_id)
    first = await carol.next_message(timeout=10)
    assert (first.seq, announcement(first)["event"]) == (2, "added")
    assert carol.cursors == {chat_id: 2}
    # And she can list the members and write to the chat
    members = await carol.get_members(chat_id)
    assert {m["userId"]: m["role"] for m in members["members"]} == {
        alice_id: "admin",
        bob_id: "member",
        carol_id: "member",
    }
    assert members["next"] is None
    assert (await carol.send(chat_id, b"hi all")).seq == 3


async def test_only_admins_change_members_and_a_refused_change_changes_nothing(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice's group with bob and carol
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    alice, bob = await connect(alice_id), await connect(bob_id)
    chat_id = (await alice.create_chat("group", [bob_id, carol_id]))["chatId"]
    # When bob, a member, adds dave or removes carol
    # Then each is FORBIDDEN and echoes its requestId
    for call in (bob.add_members(chat_id, [new_user("dave")]), bob.remove_members(chat_id, [carol_id])):
        with pytest.raises(ChatServerError) as refused:
            await call
        assert refused.value.code == "FORBIDDEN"
        assert refused.value.frame is not None and refused.value.frame["requestId"]
    # And the chat is as it was: three members, no messages
    members = await alice.get_members(chat_id)
    assert len(members["members"]) == 3
    assert (await alice.sync())[chat_id] == 0
    # And a stranger cannot even list the members
    mallory = await connect(new_user("mallory"))
    with pytest.raises(ChatServerError) as refused:
        await mallory.get_members(chat_id)
    assert refused.value.code == "FORBIDDEN"


async def test_a_removed_member_can_no_longer_send_sync_or_get_pushes(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice's group with bob and carol, all online
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    alice, bob, carol = await connect(alice_id), await connect(bob_id), await connect(carol_id)
    chat_id = (await alice.create_chat("group", [bob_id, carol_id]))["chatId"]
    # When alice removes bob, then sends a message
    assert (await alice.remove_members(chat_id, [bob_id]))["memberCount"] == 2
    await alice.send(chat_id, b"after bob")
    # Then carol gets the removal and the message
    removal = await carol.next_message(timeout=10)
    assert announcement(removal) == {"event": "removed", "members": [bob_id], "by": alice_id}
    assert (await carol.next_message(timeout=10)).text == "after bob"
    # And bob gets the removal, and nothing after it
    assert announcement(await bob.next_message(timeout=10))["event"] == "removed"
    with pytest.raises(TimeoutError):
        await bob.next_message(timeout=1.5)
    # And his sends are FORBIDDEN, and his sync no longer lists the chat
    with pytest.raises(ChatServerError) as refused:
        await bob.send(chat_id, b"let me back")
    assert refused.value.code == "FORBIDDEN"
    assert chat_id not in await bob.sync()


async def test_a_removed_members_offline_device_syncs_its_window_through_the_removal(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice's group with bob, whose laptop last synced the chat at its start
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id)
    chat_id = (await alice.create_chat("group", [bob_id]))["chatId"]
    # When alice sends, removes bob, and sends again while the laptop is away
    await alice.send(chat_id, b"while bob was in")
    await alice.remove_members(chat_id, [bob_id])
    await alice.send(chat_id, b"after bob")
    laptop = await connect(bob_id, "d_laptop", cursors={chat_id: 0})
    # Then the laptop gets the message of his window and his removal, nothing after
    first, removal = await laptop.next_message(timeout=10), await laptop.next_message(timeout=10)
    assert (first.text, removal.seq, announcement(removal)["event"]) == ("while bob was in", 2, "removed")
    with pytest.raises(TimeoutError):
        await laptop.next_message(timeout=1.5)
    # And the chat stays at his removal, out of his chats
    assert laptop.cursors[chat_id] == 2 and laptop.left == {chat_id}
    assert chat_id not in await laptop.sync()


async def test_a_member_may_leave(connect: Connect, new_user: Callable[[str], str]) -> None:
    # Given alice's group with bob
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id)
    chat_id = (await alice.create_chat("group", [bob_id]))["chatId"]
    # When bob removes himself
    await bob.remove_members(chat_id, [bob_id])
    # Then alice sees him leave
    change = await alice.next_message(timeout=10)
    assert announcement(change) == {"event": "removed", "members": [bob_id], "by": bob_id}


def member_ids(count: int) -> list[str]:
    """Short ids (7 characters), so 10,000 of them fit one 128 KiB createChat frame."""
    prefix = uuid.uuid4().hex[:3]
    return [f"{prefix}{i:04d}" for i in range(count)]


@pytest.fixture(scope="module")
def big_group_members() -> list[str]:
    return member_ids(GROUP_LIMIT - 11)  # with the creator: 9,990 members, room for 10


async def test_a_10000_member_group_holds_under_concurrent_adds_and_reaches_150_online_members(
    connect: Connect, new_user: Callable[[str], str], big_group_members: list[str]
) -> None:
    # Given alice's group of 9,990 members
    alice_id = new_user("alice")
    alice = await connect(alice_id)
    created = await alice.request(
        {"action": "createChat", "kind": "group", "name": "everyone", "members": big_group_members},
        timeout=60,
    )
    chat_id = created["chatId"]
    # (should the create run short of time, a member job adds the rest: wait for its announcements)
    pending = created.get("pendingMembers", 0)
    assert created["memberCount"] + pending == GROUP_LIMIT - 10
    deadline = time.monotonic() + 90
    while (await alice.sync()).get(chat_id, 0) < -(-pending // 95):
        assert time.monotonic() < deadline, "the member job did not finish"
        await asyncio.sleep(0.5)
    # When 20 adds of one new member each race
    newcomers = member_ids(20)
    outcomes = await asyncio.gather(
        *(alice.add_members(chat_id, [user]) for user in newcomers), return_exceptions=True
    )
    # Then exactly 10 got in and the other 10 were told GROUP_FULL
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert {getattr(o, "code", repr(o)) for o in refused} == {"GROUP_FULL"}
    assert len(refused) == 10
    # And the 10,001st member is refused too
    with pytest.raises(ChatServerError) as full:
        await alice.add_members(chat_id, [new_user("one_too_many")])
    assert full.value.code == "GROUP_FULL"
    # And paging the members lists exactly 10,000
    listed, cursor = 0, None
    while True:
        page = await alice.get_members(chat_id, cursor)
        listed += len(page["members"])
        cursor = page["next"]
        if cursor is None:
            break
    assert listed == GROUP_LIMIT
    # Given 150 of the members online, each caught up with the chat
    online = [await connect(user) for user in big_group_members[:150]]
    for client in online:
        await client.sync()  # the SDK drops any later push of what it synced
        while not client.messages.empty():
            client.messages.get_nowait()
    # When alice sends one message
    started = time.monotonic()
    ack = await alice.send(chat_id, b"hello everyone")
    received = await asyncio.gather(*(c.next_message(timeout=30) for c in online))
    elapsed = time.monotonic() - started
    # Then every online member gets it, once, with the ACKed seq
    assert {(m.seq, m.text) for m in received} == {(ack.seq, "hello everyone")}
    print(f"10,000-member group: 150 online members had the message {elapsed * 1000:.0f} ms after send")
