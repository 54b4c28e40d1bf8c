"""A busy chat over the local stack: bursts from many devices at once are all served, each ACKed
once, in one gapless order. Devices speak the raw protocol here (bench/raw.py), so any refusal
(an ERROR frame) is seen, not retried away by the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bench.raw import RawDevice
from chat_client import ChatClient
from local_stack.child import RunningStack
from tests.integration.helpers import direct_chat

Connect = Callable[..., Any]


async def group_of(
    connect: Connect, new_user: Callable[[str], str], size: int
) -> tuple[ChatClient, list[str], str]:
    """A reader (SDK, on the first member's own device) and a group of `size` members."""
    users = [new_user(f"m{i}") for i in range(size)]
    reader = await connect(users[0], "reader", auto_delivered=False)
    chat = await reader.create_chat("group", users[1:], name="hot")
    return reader, users, chat["chatId"]


async def assert_one_gapless_order(reader: ChatClient, chat_id: str, acks: list[dict[str, Any]]) -> None:
    """Every ACK is distinct, and the reader sees each seq 1..head exactly once: the ACKed messages
    at their seqs, nothing else but VOIDs (which the SDK steps over)."""
    seqs = [a["seq"] for a in acks]
    assert len(set(seqs)) == len(seqs)
    replayed = [await reader.next_message(20) for _ in acks]
    assert [m.seq for m in replayed] == sorted(seqs)
    assert {m.seq: m.server_msg_id for m in replayed} == {a["seq"]: a["serverMsgId"] for a in acks}
    assert reader.cursors[chat_id] == (await reader.sync())[chat_id]


async def test_devices_sending_bursts_at_once_into_one_group_are_all_served_in_one_gapless_order(
    connect: Connect, new_user: Callable[[str], str], stack: RunningStack
) -> None:
    # Given a group of 25 members, each online on one raw device
    reader, users, chat_id = await group_of(connect, new_user, 25)
    devices = [await RawDevice.open(stack.url, u, "d1", stack.secret) for u in users]
    # When every device sends 4 messages at once, without waiting for any answer
    sent = await asyncio.gather(*(d.send(chat_id, f"{d.user_id}:{n}") for d in devices for n in range(4)))
    answers = await asyncio.gather(*(d.answer(c) for d in devices for c in d.sent_at if c in sent))
    # Then every one of the 100 sends is ACKed, none refused
    assert len(answers) == 100
    assert [a for a in answers if a["type"] != "ACK"] == []
    # And the seqs form one gapless order, the same for a reader
    await assert_one_gapless_order(reader, chat_id, answers)
    # And every device was pushed every other device's messages
    await asyncio.sleep(1.0)
    for d in devices:
        others = {a["seq"] for a in answers} - {a["seq"] for a in d.answers.values()}
        assert others <= set(d.pushed)
    await asyncio.gather(*(d.close() for d in devices))


async def test_devices_sending_as_fast_as_acks_return_into_one_chat_are_never_refused(
    connect: Connect, new_user: Callable[[str], str], stack: RunningStack
) -> None:
    # Given a group of 10 members, each online on one raw device
    reader, users, chat_id = await group_of(connect, new_user, 10)
    devices = [await RawDevice.open(stack.url, u, "d1", stack.secret) for u in users]

    async def closed_loop(device: RawDevice) -> list[dict[str, Any]]:
        return [await device.answer(await device.send(chat_id, f"{device.user_id}:{n}")) for n in range(10)]

    # When each sends 10 messages, each as soon as the previous one is ACKed
    answers = [a for run in await asyncio.gather(*(closed_loop(d) for d in devices)) for a in run]
    # Then all 100 are ACKed, none refused, in one gapless order
    assert [a for a in answers if a["type"] != "ACK"] == []
    await assert_one_gapless_order(reader, chat_id, answers)
    await asyncio.gather(*(d.close() for d in devices))


async def test_an_outbox_flushed_at_once_by_one_device_is_all_stored_and_delivered_in_order(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a direct chat
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice's device flushes 20 queued messages at once (an offline outbox on reconnect)
    acks = await asyncio.gather(*(alice.send(chat_id, f"queued {n}".encode()) for n in range(20)))
    # Then all 20 are ACKed with the seqs 1..20
    assert sorted(a.seq for a in acks) == list(range(1, 21))
    # And bob gets all 20 once, in seq order
    received = [await bob.next_message(20) for _ in range(20)]
    assert [m.seq for m in received] == list(range(1, 21))
    assert {m.server_msg_id for m in received} == {a.server_msg_id for a in acks}
