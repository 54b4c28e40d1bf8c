"""Receipts over the local stack, through the SDK: who is told, once; strangers refused; the SDK's
automatic DELIVERED; large-group summaries and the sender's paged receipts query."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from chat_client import ChatServerError
from tests.integration.helpers import direct_chat

from .conftest import RECEIPTS_PAGE_SIZE

Connect = Callable[..., Any]


async def next_matching(client: Any, frame_type: str, timeout: float = 15, **fields: Any) -> dict[str, Any]:
    """The next `frame_type` frame whose fields match (others of that type are consumed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        frame: dict[str, Any] = await client.next_frame(frame_type, timeout=max(end - loop.time(), 0.01))
        if all(frame.get(k) == v for k, v in fields.items()):
            return frame


async def test_both_devices_of_the_sender_learn_that_the_message_was_read(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice on her phone and laptop, and bob, in a direct chat
    alice_id, bob_id = new_user("alice"), new_user("bob")
    phone, laptop = await connect(alice_id, "phone"), await connect(alice_id, "laptop")
    bob = await connect(bob_id)
    chat_id = (await phone.create_chat("direct", [bob_id]))["chatId"]
    # When alice sends from her phone and bob reads it
    ack = await phone.send(chat_id, b"hello")
    assert (await bob.next_message(timeout=10)).seq == ack.seq
    await bob.mark_read(chat_id, ack.seq)
    # Then each of alice's devices gets a READ receipt from bob up to that message
    for device in (phone, laptop):
        notice = await next_matching(device, "RECEIPT", receiptType="READ")
        assert notice["chatId"] == chat_id and notice["userId"] == bob_id
        assert notice["upToSeq"] == ack.seq and notice["at"].endswith("Z")
    # And bob gets no receipt of his own
    with pytest.raises(TimeoutError):
        await bob.next_frame("RECEIPT", timeout=1)


async def test_a_repeated_receipt_is_forwarded_once(connect: Connect, new_user: Callable[[str], str]) -> None:
    # Given alice's message to bob, whose client sends no receipts by itself
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id, auto_delivered=False)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    ack = await alice.send(chat_id, b"hello")
    await bob.next_message(timeout=10)
    # When bob sends the same READ receipt three times, in both forms
    await bob.receipt(chat_id, "READ", server_msg_id=ack.server_msg_id)
    await bob.receipt(chat_id, "READ", server_msg_id=ack.server_msg_id)
    await bob.receipt(chat_id, "READ", up_to_seq=ack.seq)
    # Then alice gets exactly one READ RECEIPT covering it (whichever frame the stack ran first),
    # and no ERROR reached bob
    notice = await alice.next_frame("RECEIPT", timeout=10)
    assert notice["receiptType"] == "READ" and notice.get("seq", notice.get("upToSeq")) == ack.seq
    with pytest.raises(TimeoutError):
        await alice.next_frame("RECEIPT", timeout=2)
    assert bob.errors.empty()


async def test_a_stranger_can_neither_receipt_nor_ask(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice's message to bob, and mallory outside the chat
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    ack = await alice.send(chat_id, b"hello")
    mallory = await connect(new_user("mallory"))
    # When mallory sends a READ receipt for it, Then FORBIDDEN, and alice hears nothing from her
    await mallory.receipt(chat_id, "READ", server_msg_id=ack.server_msg_id)
    assert (await mallory.errors.get())["code"] == "FORBIDDEN"
    # When mallory, or bob (a member but not the sender), asks who has it, Then FORBIDDEN
    query = {"action": "receipts", "chatId": chat_id, "serverMsgId": ack.server_msg_id}
    for asker in (mallory, bob):
        with pytest.raises(ChatServerError) as refused:
            await asker.request(query)
        assert refused.value.code == "FORBIDDEN"
    await asyncio.sleep(1)
    assert all(f.get("userId") != mallory.user_id for f in drain(alice))


def drain(client: Any) -> list[dict[str, Any]]:
    frames = []
    while not client.unmatched.empty():
        frames.append(client.unmatched.get_nowait())
    return frames


async def test_the_sdk_tells_the_sender_by_itself_that_messages_were_delivered(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a direct chat, bob's client with its default automatic DELIVERED
    _, bob_id, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice sends three messages and bob's client receives them (the app calls nothing)
    acks = [await alice.send(chat_id, f"m{i}".encode()) for i in range(3)]
    for _ in acks:
        await bob.next_message(timeout=10)
    # Then alice learns they were DELIVERED to bob, up to the last one
    notice = await next_matching(alice, "RECEIPT", receiptType="DELIVERED", upToSeq=acks[-1].seq)
    assert notice["userId"] == bob_id and notice["chatId"] == chat_id


async def test_a_large_group_sender_gets_summaries_and_pages_through_the_receipts(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given a group of 300: alice, bob, carol and dave online, 296 members who never connect
    alice_id, bob_id, carol_id, dave_id = (new_user(n) for n in ("alice", "bob", "carol", "dave"))
    offline = [new_user(f"m{i}") for i in range(296)]
    alice = await connect(alice_id)
    chat = await alice.create_chat("group", [bob_id, carol_id, dave_id, *offline], name="town hall")
    assert chat["memberCount"] == 300
    chat_id = chat["chatId"]
    bob, carol = await connect(bob_id), await connect(carol_id)
    dave = await connect(dave_id, auto_delivered=False)
    # When alice posts, bob and carol's clients receive it (automatic DELIVERED), bob reads it,
    # and dave, whose client sends no DELIVERED, reads it
    ack = await alice.send(chat_id, b"all hands at 10")
    for member in (bob, carol, dave):
        assert (await member.next_message(timeout=15)).seq == ack.seq
    await bob.mark_read(chat_id, ack.seq)
    await dave.mark_read(chat_id, ack.seq)
    # Then alice gets a RECEIPT_SUMMARY that counts 3 delivered (reads included) and 2 read
    summary = await next_matching(alice, "RECEIPT_SUMMARY", timeout=20, delivered=3, read=2)
    assert summary == {
        "type": "RECEIPT_SUMMARY",
        "chatId": chat_id,
        "serverMsgId": ack.server_msg_id,
        "delivered": 3,
        "read": 2,
    }
    # And no per-member RECEIPT was pushed to her
    assert all(f["type"] != "RECEIPT" for f in drain(alice))
    # When alice pages through who has the message
    seen: dict[str, str] = {}
    cursor = None
    pages = 0
    while True:
        page = await alice.request(
            {"action": "receipts", "chatId": chat_id, "serverMsgId": ack.server_msg_id, "cursor": cursor}
        )
        pages += 1
        assert page["type"] == "RECEIPTS" and len(page["receipts"]) <= RECEIPTS_PAGE_SIZE
        seen |= {r["userId"]: r["receiptType"] for r in page["receipts"]}
        cursor = page["next"]
        if cursor is None:
            break
    # Then she sees bob and dave READ and carol DELIVERED, over more than one page
    assert seen == {bob_id: "READ", carol_id: "DELIVERED", dave_id: "READ"}
    assert pages >= 2
