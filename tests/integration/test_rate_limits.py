"""Rate limits over the local stack: a script meets them, a person does not, and the SDK waits as
told (PROTOCOL.md v1.1, "Rate limits")."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from chat_client import mint_token
from local_stack.child import RunningStack
from tests.integration.helpers import Connect, direct_chat
from tests.integration.test_frame_rules import raw_connection


async def answers(ws: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` ACK / ERROR frames (RECEIPTs of the peer's SDK in between are skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["type"] in ("ACK", "ERROR"):
            found.append(frame)
    return found


async def test_a_script_flooding_sends_meets_the_limit_and_a_person_never_does(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a chat, and alice on a raw connection
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    assert alice.user_id
    ws = await raw_connection(stack, alice.user_id)
    ciphertext = base64.b64encode(b"spam").decode()
    # When a script pipelines 250 sends on it at once
    for n in range(250):
        frame = {"action": "send", "clientMsgId": f"s{n}", "chatId": chat_id, "ciphertext": ciphertext}
        await ws.send(json.dumps(frame))
    replies = await answers(ws, 250)
    acked = [r for r in replies if r["type"] == "ACK"]
    limited = [r for r in replies if r.get("code") == "RATE_LIMITED"]
    # Then at least the burst of 100 is ACKed, the rest are RATE_LIMITED with a wait, nothing else
    assert len(acked) + len(limited) == 250
    assert 100 <= len(acked) < 250 and limited
    assert all(isinstance(r["retryAfterMs"], int) and r["retryAfterMs"] > 0 for r in limited)
    # And exactly the ACKed messages are stored, gapless
    assert sorted(a["seq"] for a in acked) == list(range(1, len(acked) + 1))
    assert (await bob.sync())[chat_id] == len(acked)


async def test_the_sdk_waits_as_told_and_every_message_of_a_long_burst_gets_through(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a chat, over the SDK
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice's app sends 150 messages at once (an outbox flushed on reconnect)
    acks = await asyncio.gather(*(alice.send(chat_id, f"m{n}".encode(), deadline=60) for n in range(150)))
    # Then every one is ACKed (the ones over the burst after the server's wait), each seq once
    assert sorted(a.seq for a in acks) == list(range(1, 151))
    assert (await bob.sync())[chat_id] == 150


async def test_typing_is_coalesced_to_one_notice_per_chat_every_few_seconds(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a chat
    _, _, alice, bob, chat_id = await direct_chat(connect, new_user)
    # When alice's keyboard sends 20 typing frames in a row
    for _ in range(20):
        await alice.send_frame({"action": "typing", "chatId": chat_id})
    # Then bob is told once, and not again within the next 1.5 s
    assert (await bob.next_frame("TYPING", timeout=10))["chatId"] == chat_id
    with pytest.raises(TimeoutError):
        await bob.next_frame("TYPING", timeout=1.5)


async def test_a_reconnect_loop_is_refused_at_the_handshake_with_429(
    stack: RunningStack, new_user: Callable[[str], str]
) -> None:
    # Given a user whose client reconnects in a tight loop
    user = new_user("looper")
    url = f"{stack.url}?token={mint_token(user, 'd1', secret=stack.secret)}"
    statuses: list[int] = []
    # When it opens 40 connections at once
    for _ in range(40):
        try:
            ws = await websockets.connect(url)
            statuses.append(101)
            await ws.close()
        except websockets.InvalidStatus as refused:
            statuses.append(refused.response.status_code)
    # Then the first 30 (the burst) connect and the rest are refused with 429, not 401/403
    assert statuses.count(101) >= 30
    assert set(statuses) <= {101, 429} and 429 in statuses
