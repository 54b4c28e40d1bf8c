"""The history checker: many messages in direct chats and groups while faults are injected into
the local stack, then proof that every ACKed message is stored once, every device sees one gapless
order, no duplicate reaches the application, and nothing is lost.

Everything is checked through the protocol alone (the SDK's released messages, and a fresh device
per user that replays every chat from seq 0), so the same check would run against AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chat_client import ChatClient, ChatServerError, Message
from chat_client.tokens import mint_token
from local_stack.child import RunningStack

GROUP_SIZE = 6
# One group past the send path's direct-push limit (256 members): its messages go through the
# stream's fan-out and the delivery queue, where crashes make the stream and SQS redeliver.
LARGE_GROUP_OFFLINE = 290
SEND_CONCURRENCY = 4  # sends in flight per device
FAULT_KINDS = (
    "drop_connection",
    "post_500",
    "post_429",
    "crash_deliver",
    "crash_fanout",
    "crash_send",
    "restart_pollers",
    "restart_gateway",
)


@dataclass
class HistoryReport:
    messages: int = 0  # ACKed
    unacked: int = 0  # sends the SDK gave up on (not a loss: never accepted)
    chats: int = 0
    devices: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    fired: int = 0  # injected crash / post faults that went off
    stored_twice: int = 0
    lost: int = 0  # ACKed messages missing from a member device's history
    duplicated: int = 0  # a (chat, seq) released twice to one device
    reordered: int = 0  # a device released a chat's messages out of seq order
    wrong_seq: int = 0  # an ACKed message stored at another seq than its ACK said

    @property
    def ok(self) -> bool:
        return self.stored_twice == self.lost == self.duplicated == self.reordered == self.wrong_seq == 0

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return [
            f"history: {self.messages} ACKed messages in {self.chats} chats, {self.devices} devices"
            f" ({self.unacked} sends given up)",
            f"  faults injected: {faults}; {self.fired} crash/post faults fired",
            f"  stored twice {self.stored_twice}, wrong seq {self.wrong_seq}, lost {self.lost},"
            f" duplicated {self.duplicated}, reordered {self.reordered}",
        ]


class Device:
    """One user's SDK client, keeping every message it releases."""

    def __init__(
        self, stack: RunningStack, user: str, device: str, cursors: dict[str, int] | None = None
    ) -> None:
        self.user = user
        self.client = ChatClient(
            stack.url,
            lambda: mint_token(user, device, secret=stack.secret),
            cursors=cursors,
            own_messages=True,
            reconnect_min=0.05,
            reconnect_max=1.0,
            ack_timeout=5.0,
            heartbeat_interval=5.0,
        )
        self.released: list[Message] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.connect()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.released.append(await self.client.messages.get())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
        await self.client.close()


async def run_history(
    stack: RunningStack,
    messages: int,
    users: int = 12,
    seed: int = 1,
    fault_pause_s: tuple[float, float] = (0.5, 1.5),
) -> HistoryReport:
    """`messages` sends while a fault of the next kind goes in every `fault_pause_s` (a range)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    names = [f"u_chaos{run}_{i}" for i in range(users)]
    devices = {u: Device(stack, u, "d_main") for u in names}
    await asyncio.gather(*(d.start() for d in devices.values()))
    report = HistoryReport(devices=len(devices))
    try:
        chats = await _make_chats(devices, names)
        report.chats = len(chats)
        stop = asyncio.Event()
        faults = asyncio.create_task(_inject_faults(stack, devices, rng, report, stop, fault_pause_s))
        acked = await _send_all(devices, chats, messages, rng, report)
        stop.set()
        await faults
        report.fired = await asyncio.to_thread(stack.clear_faults)
        await _settle(devices, chats)
        await _check(stack, devices, chats, acked, report)
    finally:
        await asyncio.to_thread(stack.clear_faults)
        await asyncio.gather(*(d.stop() for d in devices.values()), return_exceptions=True)
    return report


async def _make_chats(devices: dict[str, Device], names: list[str]) -> dict[str, list[str]]:
    """Direct chats between neighbours, groups of GROUP_SIZE, and one large group of everyone and
    LARGE_GROUP_OFFLINE members who never connect: chatId -> the members with devices."""
    chats: dict[str, list[str]] = {}
    for a, b in zip(names, names[1:] + names[:1], strict=True):
        chat = await devices[a].client.create_chat("direct", [b])
        chats[chat["chatId"]] = [a, b]
    for start in range(0, len(names) - GROUP_SIZE + 1, GROUP_SIZE // 2):
        members = names[start : start + GROUP_SIZE]
        chat = await devices[members[0]].client.create_chat("group", members[1:], name="chaos")
        chats[chat["chatId"]] = members
    offline = [f"{names[0]}_offline_{i}" for i in range(LARGE_GROUP_OFFLINE)]
    large = await devices[names[0]].client.create_chat("group", [*names[1:], *offline], name="chaos-large")
    chats[large["chatId"]] = names
    return chats


async def _send_all(
    devices: dict[str, Device],
    chats: dict[str, list[str]],
    messages: int,
    rng: random.Random,
    report: HistoryReport,
) -> dict[str, tuple[str, int]]:
    """Every message from a random member of a random chat: payload -> (chatId, ACKed seq)."""
    plan: dict[str, list[tuple[str, str]]] = {u: [] for u in devices}
    chat_ids = sorted(chats)
    for n in range(messages):
        chat_id = rng.choice(chat_ids)
        author = rng.choice(chats[chat_id])
        plan[author].append((chat_id, f"chaos|{chat_id}|{author}|{n}"))
    acked: dict[str, tuple[str, int]] = {}

    async def sender(user: str) -> None:
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(chat_id: str, payload: str) -> None:
            async with gate:
                try:
                    ack = await devices[user].client.send(chat_id, payload.encode(), deadline=120)
                except (ChatServerError, TimeoutError):
                    report.unacked += 1
                    return
                acked[payload] = (chat_id, ack.seq)

        await asyncio.gather(*(one(c, p) for c, p in plan[user]))

    await asyncio.gather(*(sender(u) for u in devices))
    report.messages = len(acked)
    return acked


async def _inject_faults(
    stack: RunningStack,
    devices: dict[str, Device],
    rng: random.Random,
    report: HistoryReport,
    stop: asyncio.Event,
    pause_s: tuple[float, float],
) -> None:
    """A fault of every kind in turn, one every `pause_s`, until the sends are done."""
    users = sorted(devices)
    turn = 0
    while not stop.is_set():
        kind = FAULT_KINDS[turn % len(FAULT_KINDS)]
        turn += 1
        user = rng.choice(users)
        if kind == "drop_connection":
            await devices[user].client.drop_connection()
        elif kind in ("post_500", "post_429"):
            spec = {"kind": "post", "userId": user, "deviceId": "d_main", "mode": kind[5:], "count": 3}
            await asyncio.to_thread(stack.inject_fault, **spec)
        elif kind == "crash_deliver":  # after some pushes of a batch went out: SQS redelivers it
            await asyncio.to_thread(
                stack.inject_fault,
                kind="crash",
                function="deliver",
                operation="apigatewaymanagementapi.PostToConnection",
            )
        elif kind == "crash_fanout":  # mid-batch of a stream: the stream redelivers it
            await asyncio.to_thread(
                stack.inject_fault, kind="crash", function="fanout", operation="sqs.SendMessageBatch"
            )
        elif kind == "crash_send":  # after the message is stored, before its ACK: the SDK re-sends
            await asyncio.to_thread(
                stack.inject_fault,
                kind="crash",
                function="send",
                operation="dynamodb.PutItem",
                contains="ciphertext",
            )
        elif kind == "restart_pollers":
            await asyncio.to_thread(stack.restart, pollers=True)
        elif kind == "restart_gateway":
            await asyncio.to_thread(stack.restart, gateway=True)
        report.faults[kind] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=rng.uniform(*pause_s))


async def _settle(devices: dict[str, Device], chats: dict[str, list[str]], rounds: int = 30) -> None:
    """Sync every device until each has every chat up to its head (pushes still in flight land)."""
    for _ in range(rounds):
        behind = 0
        for device in devices.values():
            await asyncio.wait_for(device.client.connected.wait(), 30)
            heads = await device.client.sync()
            behind += sum(1 for c, head in heads.items() if device.client.cursors.get(c, 0) < head)
        if behind == 0:
            await asyncio.sleep(0.5)  # the last releases reach the readers
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("devices did not catch up with their chats")


async def _check(
    stack: RunningStack,
    devices: dict[str, Device],
    chats: dict[str, list[str]],
    acked: dict[str, tuple[str, int]],
    report: HistoryReport,
) -> None:
    # What is stored: each chat replayed from seq 0 by a fresh device of one of its members (its
    # other chats start at the heads its settled device reached, so only this one is replayed).
    stored: dict[str, dict[int, str]] = {}
    for chat_id, members in sorted(chats.items()):
        settled = devices[members[0]].client.cursors
        others = {c: settled.get(c, 0) for c, m in chats.items() if members[0] in m and c != chat_id}
        replay = Device(stack, members[0], f"d_check_{uuid.uuid4().hex[:6]}", others)
        await replay.start()
        try:
            await _settle({members[0]: replay}, {chat_id: members})
        finally:
            await replay.stop()
        stored[chat_id] = {
            m.seq: m.text for m in replay.released if m.chat_id == chat_id and m.sender != "system"
        }
    texts = Counter(t for by_seq in stored.values() for t in by_seq.values() if t.startswith("chaos|"))
    report.stored_twice = sum(n - 1 for n in texts.values() if n > 1)
    report.wrong_seq = sum(1 for p, (c, s) in acked.items() if stored.get(c, {}).get(s) != p)
    for device in devices.values():
        by_chat: dict[str, list[Message]] = {}
        for m in device.released:
            by_chat.setdefault(m.chat_id, []).append(m)
        for chat_id, members in chats.items():
            if device.user not in members:
                continue
            got = by_chat.get(chat_id, [])
            seqs = [m.seq for m in got]
            report.duplicated += len(seqs) - len(set(seqs))
            report.reordered += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
            have = {m.text for m in got}
            report.lost += sum(1 for p, (c, _) in acked.items() if c == chat_id and p not in have)


def as_dict(report: HistoryReport) -> dict[str, Any]:
    return {**{k: v for k, v in vars(report).items() if k != "faults"}, "faults": dict(report.faults)}
