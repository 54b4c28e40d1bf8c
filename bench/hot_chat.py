"""Hot chat: many devices sending into one chat at once, on raw connections (a refusal is an ERROR
frame, counted, not retried away).

- Burst: a group of `burst_devices` members, each online on one device, every device sending
  `burst_each` messages at once without waiting for answers.
- One chat vs many: one user's `devices` devices each send `per_device` messages, each as soon as
  the previous is ACKed, (a) all into one direct chat, (b) spread over 100 direct chats. Every
  message is pushed to the sender's other devices and to the chat's other member in both cases, so
  the two runs do the same work but for the sequencing; the ratio of their sends/s is what one
  chat's sequencer costs.

For each run: sends, ACKs, refusals, whether the chat replays every seq 1..head exactly once (a
message or a VOID), and whether every ACKed message is stored exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.raw import RawDevice
from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack

SPREAD_CHATS = 100


@dataclass
class SendRun:
    name: str
    sends: int
    acked: int
    refused: int
    seconds: float
    replay_ok: bool  # every seq 1..head once, and every ACK's message at its seq once

    def row(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "sends": self.sends,
            "acked": self.acked,
            "refused": self.refused,
            "seconds": round(self.seconds, 2),
            "sends_per_s": round(self.acked / self.seconds, 1) if self.seconds else 0.0,
            "gapless_exactly_once": self.replay_ok,
        }


async def replay_ok(stack: RunningStack, user: str, acks: dict[str, list[dict[str, Any]]]) -> bool:
    """A fresh device of `user` syncs everything on connect: its cursor reaches each chat's head
    (every seq released or stepped over as a VOID), and the messages it got are exactly the ACKed
    ones, each once at its seq."""
    device = f"replay{uuid.uuid4().hex[:6]}"
    reader = ChatClient(stack.url, mint_token(user, device, secret=stack.secret), auto_delivered=False)
    async with reader:
        seen: dict[str, dict[int, str]] = {chat_id: {} for chat_id in acks}
        released_twice = False
        while not reader.messages.empty():
            message = reader.messages.get_nowait()
            if message.chat_id in seen:
                released_twice |= message.seq in seen[message.chat_id]
                seen[message.chat_id][message.seq] = message.server_msg_id
        return not released_twice and all(
            reader.cursors.get(chat_id, 0) == reader.heads.get(chat_id, -1)
            and seen[chat_id] == {a["seq"]: a["serverMsgId"] for a in chat_acks}
            for chat_id, chat_acks in acks.items()
        )


async def burst(stack: RunningStack, burst_devices: int, burst_each: int) -> SendRun:
    run = uuid.uuid4().hex[:6]
    users = [f"hot{run}_{i}" for i in range(burst_devices)]
    admin = ChatClient(stack.url, mint_token(users[0], "admin", secret=stack.secret), auto_delivered=False)
    async with admin:
        chat_id = (await admin.create_chat("group", users[1:], name="hot"))["chatId"]
    devices = [await RawDevice.open(stack.url, u, "d1", stack.secret) for u in users]
    started = time.perf_counter()
    sent = await asyncio.gather(
        *(d.send(chat_id, f"{d.user_id}:{n}") for d in devices for n in range(burst_each))
    )
    by_device = [(d, cmid) for d in devices for cmid in d.sent_at if cmid in sent]
    answers = await asyncio.gather(*(d.answer(cmid, 120) for d, cmid in by_device))
    seconds = time.perf_counter() - started
    await asyncio.gather(*(d.close() for d in devices))
    acks = [a for a in answers if a["type"] == "ACK"]
    ok = await replay_ok(stack, users[0], {chat_id: acks})
    return SendRun("burst into one group", len(sent), len(acks), len(answers) - len(acks), seconds, ok)


async def closed_loop(stack: RunningStack, devices: int, per_device: int, chats: int, name: str) -> SendRun:
    """One user's devices each send `per_device` messages, each once the previous is ACKed, to the
    user's direct chats (round robin over `chats` of them), whose other members are online."""
    run = uuid.uuid4().hex[:6]
    owner = f"hotowner{run}"
    partners = [f"hotpeer{run}_{k}" for k in range(chats)]
    creator = ChatClient(stack.url, mint_token(owner, "setup", secret=stack.secret), auto_delivered=False)
    async with creator:
        chat_ids = [(await creator.create_chat("direct", [p]))["chatId"] for p in partners]
    peers = [await RawDevice.open(stack.url, p, "d1", stack.secret) for p in partners]
    senders = [await RawDevice.open(stack.url, owner, f"d{i}", stack.secret) for i in range(devices)]
    acks: dict[str, list[dict[str, Any]]] = {c: [] for c in chat_ids}
    refused = 0

    async def loop(index: int, device: RawDevice) -> None:
        nonlocal refused
        for n in range(per_device):
            chat_id = chat_ids[(index * per_device + n) % len(chat_ids)]
            answer = await device.answer(await device.send(chat_id, f"{device.device_id}:{n}"), 120)
            if answer["type"] == "ACK":
                acks[chat_id].append(answer)
            else:
                refused += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(i, d) for i, d in enumerate(senders)))
    seconds = time.perf_counter() - started
    await asyncio.gather(*(d.close() for d in [*senders, *peers]))
    acked = sum(len(a) for a in acks.values())
    ok = await replay_ok(stack, owner, acks)
    return SendRun(name, devices * per_device, acked, refused, seconds, ok)


async def run_hot_chat(
    stack: RunningStack, burst_devices: int = 50, burst_each: int = 4, devices: int = 20, per_device: int = 10
) -> list[dict[str, Any]]:
    runs = [
        await burst(stack, burst_devices, burst_each),
        await closed_loop(stack, devices, per_device, 1, "closed loop into one chat"),
        await closed_loop(stack, devices, per_device, SPREAD_CHATS, f"closed loop over {SPREAD_CHATS} chats"),
    ]
    rows = [r.row() for r in runs]
    one, spread = rows[1]["sends_per_s"], rows[2]["sends_per_s"]
    rows.append({"run": "one chat / spread", "ratio": round(one / spread, 2) if spread else None})
    return rows


def print_hot_chat(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if "ratio" in row:
            print(f"hot chat | sends/s into one chat vs spread over {SPREAD_CHATS} chats: {row['ratio']}x")
            continue
        print(
            f"hot chat | {row['run']:<30} | {row['acked']}/{row['sends']} ACKed, {row['refused']} refused, "
            f"{row['sends_per_s']} sends/s over {row['seconds']} s | gapless, exactly once: "
            f"{row['gapless_exactly_once']}"
        )
