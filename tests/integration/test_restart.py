"""`make run` stopped and started again on its data directory: everything is where it was, on the
same port at once."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from chat_client import ChatClient, Message, mint_token
from chat_client.media import post_form
from local_stack.child import RunningStack, start_local_stack
from local_stack.processes import free_port


def client(stack: RunningStack, user: str, device: str) -> ChatClient:
    return ChatClient(stack.url, mint_token(user, device, secret=stack.secret))


async def message_with_id(device: ChatClient, server_msg_id: str, timeout_s: float = 20.0) -> Message:
    end = time.monotonic() + timeout_s
    while True:
        message = await device.next_message(max(0.1, end - time.monotonic()))
        if message.server_msg_id == server_msg_id:
            return message


async def download(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


def fanout_invocations(stack: RunningStack) -> int:
    """From the stack's log (one line per invocation): no call to a stack that may be busy."""
    return stack.log_path.read_text().count(" fanout stream ")


async def eventually(check: Any, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while not check() and time.monotonic() < end:
        await asyncio.sleep(0.1)
    return bool(check())


async def test_a_restart_on_the_same_data_dir_finds_everything_and_takes_the_same_port(
    tmp_path: Path,
) -> None:
    data, port = tmp_path / "data", free_port()
    alice_id, bob_id, carol_id, dave_id, erin_id = (
        f"{n}_{uuid.uuid4().hex[:8]}" for n in ("alice", "bob", "carol", "dave", "erin")
    )
    # Given a stack on a data directory, where alice added erin to a group of bob and carol (an
    # announcement through the stream), then sent a message with a media object, and bob read it
    first = start_local_stack(tmp_path / "first.log", data_dir=data, port=port)
    assert first.data == str(data.resolve())
    try:
        async with client(first, alice_id, "phone") as alice, client(first, bob_id, "phone") as bob:
            chat_id = (await alice.create_chat("group", [bob_id, carol_id], name="team"))["chatId"]
            await alice.add_members(chat_id, [erin_id])
            await asyncio.wait_for(_system_message(bob), 20)
            blob = os.urandom(5000)
            upload = await alice.request(
                {"action": "mediaUpload", "chatId": chat_id, "contentType": "image/png", "size": len(blob)}
            )
            assert await post_form(upload["url"], upload["fields"], blob) in (200, 201, 204)
            sent = await alice.send(chat_id, b"before the restart", media_ids=[upload["mediaId"]])
            await message_with_id(bob, sent.server_msg_id)
            await bob.mark_read(chat_id, sent.seq)
            receipt = await alice.next_frame("RECEIPT", timeout=10)
            while receipt["receiptType"] == "DELIVERED":  # bob's automatic one may come first
                receipt = await alice.next_frame("RECEIPT", timeout=10)
            assert receipt["receiptType"] == "READ"
        assert fanout_invocations(first) >= 1  # erin's announcement went through the stream
    finally:
        # When the stack is stopped with SIGTERM and started again at once on the same port and data
        stopped = first.stop()
    assert stopped == 0, first.log_path.read_text()[-3000:]
    started = time.monotonic()
    second = start_local_stack(tmp_path / "second.log", data_dir=data, port=port)
    restart_s = time.monotonic() - started
    try:
        # Then it listens on the same port (not refused for the old connections' TIME_WAIT), soon
        assert second.port == port and restart_s < 60
        # And new devices syncing from zero find the chat, the message (same seq and id), its
        # members, bob's READ watermark and the media object
        async with client(second, bob_id, "tablet") as bob2, client(second, alice_id, "laptop") as alice2:
            kept = await message_with_id(bob2, sent.server_msg_id)
            assert (kept.chat_id, kept.seq, kept.ciphertext) == (chat_id, sent.seq, b"before the restart")
            assert kept.media_ids == [upload["mediaId"]]
            members = await alice2.get_members(chat_id)
            assert {m["userId"] for m in members["members"]} == {alice_id, bob_id, carol_id, erin_id}
            receipts: dict[str, Any] = await alice2.request(
                {"action": "receipts", "chatId": chat_id, "serverMsgId": sent.server_msg_id}
            )
            assert {r["userId"]: r["receiptType"] for r in receipts["receipts"]} == {bob_id: "READ"}
            media = await bob2.request(
                {"action": "mediaDownload", "chatId": chat_id, "mediaId": kept.media_ids[0]}
            )
            assert await download(media["url"]) == (200, blob)
            # And nothing the first run's stream carried was fanned out again
            assert fanout_invocations(second) == 0
            # And the next message gets the next seq, and the stream resumes: dave's addition reaches bob
            after = await alice2.send(chat_id, b"after the restart")
            assert after.seq == sent.seq + 1
            assert (await message_with_id(bob2, after.server_msg_id)).seq == after.seq
            await alice2.add_members(chat_id, [dave_id])
            announcement = await asyncio.wait_for(_system_message(bob2), 20)
            assert announcement.seq == after.seq + 1
            assert await eventually(lambda: fanout_invocations(second) >= 1)
    finally:
        stopped = second.stop()
    assert stopped == 0, second.log_path.read_text()[-3000:]
    print(f"restart: listening again {restart_s:.1f} s after the stop")


async def _system_message(device: ChatClient) -> Message:
    while True:
        message = await device.next_message(20)
        if message.sender == "system":
            return message
