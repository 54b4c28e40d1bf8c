"""Hot and archived history over the local stack: the archiver, run by the stack's scheduler as
EventBridge would run it (at a time 31 days ahead), moves a chat's messages to the archive bucket;
a device that has never synced gets every message, archived and hot, in order, with the same seqs
and ids the live pushes carried."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from local_stack.child import RunningStack

Connect = Callable[..., Any]
DAY_S = 86_400


def run_archiver(stack: RunningStack, at_s: float, chat_ids: list[str]) -> dict[str, Any]:
    """The archiver's scheduled run, at `at_s`, for these chats only (the session's other tests'
    chats are left as they are)."""
    body = json.dumps({"function": "archiver", "time": at_s, "detail": {"chatIds": chat_ids}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.port}/_local/schedule",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return dict(json.load(resp))


async def test_a_new_device_syncs_archived_and_hot_messages_in_order_with_the_same_seqs_and_ids(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob's chat with eight messages, which bob's phone received live
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, phone = await connect(alice_id, "phone"), await connect(bob_id, "phone")
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    for n in range(8):
        await alice.send(chat_id, f"old-{n}".encode())
    live = [await phone.next_message(10) for _ in range(8)]
    # When the archiver runs 31 days later (past the 30-day hot window)
    report = run_archiver(stack, time.time() + 31 * DAY_S, [chat_id])
    # Then it archived and deleted all eight
    assert (report["ranges"], report["archived"], report["deleted"]) == (1, 8, 8)
    # And when three more (hot) messages follow
    for n in range(3):
        await alice.send(chat_id, f"hot-{n}".encode())
    live += [await phone.next_message(10) for _ in range(3)]
    # Then a tablet bob connects for the first time syncs from zero: all eleven, in seq order, the
    # same seqs, ids, senders and bytes as the live pushes, archived and hot alike
    tablet = await connect(bob_id, "tablet")
    history = [await tablet.next_message(10) for _ in range(11)]

    def seen(messages: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (m.seq, m.server_msg_id, m.sender, m.sender_device, m.ciphertext, m.created_at) for m in messages
        ]

    assert seen(history) == seen(live)
    assert [m.seq for m in history] == list(range(1, 12))
    assert [m.ciphertext for m in history] == [f"old-{n}".encode() for n in range(8)] + [
        f"hot-{n}".encode() for n in range(3)
    ]
    await asyncio.sleep(0.3)
    assert tablet.messages.empty() and tablet.cursors[chat_id] == 11
    # And a rerun an hour short of the hot ones' 30 days finds nothing more to do
    again = run_archiver(stack, time.time() + 30 * DAY_S - 3600, [chat_id])
    assert (again["archived"], again["deleted"]) == (0, 0)
