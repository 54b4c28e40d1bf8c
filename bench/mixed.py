"""A mix of chats at a fixed offered rate: 100 users online, in 50 direct chats and 20 groups of 50
(members drawn from the same 100 users). Each message goes to a chat drawn at random, from a
random member of it, open loop. Every copy is timed from the send until the gateway writes it to
a recipient device's connection (the server's part of send -> deliver; the simulated clients'
CPU on this machine does not count).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.report import CpuMeter, gateway_latencies_ms, p50_p95_p99, percentiles, print_details
from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack

USERS = 100
GROUPS = 20
GROUP_SIZE = 50
SETTLE_S = 3.0  # after the last send, for the last pushes (and retries) to land


@dataclass
class Chat:
    chat_id: str
    kind: str
    members: list[str]


async def make_chats(stack: RunningStack, rng: random.Random) -> tuple[dict[str, ChatClient], list[Chat]]:
    run = uuid.uuid4().hex[:6]
    users = [f"mix{run}_{i}" for i in range(USERS)]
    clients = {
        u: ChatClient(stack.url, mint_token(u, "d1", secret=stack.secret), auto_delivered=False)
        for u in users
    }
    await asyncio.gather(*(c.connect() for c in clients.values()))
    chats = []
    for i in range(0, USERS, 2):
        chat = await clients[users[i]].create_chat("direct", [users[i + 1]])
        chats.append(Chat(chat["chatId"], "direct", [users[i], users[i + 1]]))
    for g in range(GROUPS):
        members = rng.sample(users, GROUP_SIZE)
        chat = await clients[members[0]].create_chat("group", members[1:], name=f"g{g}")
        chats.append(Chat(chat["chatId"], "group", members))
    return clients, chats


async def offer(
    clients: dict[str, ChatClient], chats: list[Chat], rng: random.Random, rate: float, seconds: float
) -> tuple[int, dict[tuple[str, int], float]]:
    """Open loop at `rate` for `seconds`: (messages offered, (chat, seq) -> send time)."""
    sent_at: dict[tuple[str, int], float] = {}

    async def send_one(chat: Chat, n: int) -> None:
        started = time.time()
        ack = await clients[rng.choice(chat.members)].send(chat.chat_id, f"mix {n}".encode())
        sent_at[(ack.chat_id, ack.seq)] = started

    sends: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + n / rate
        if due > now:
            await asyncio.sleep(due - now)
        sends.append(asyncio.create_task(send_one(rng.choice(chats), n)))
        n += 1
    await asyncio.wait_for(asyncio.gather(*sends), 120)
    return n, sent_at


async def run_mixed(
    stack: RunningStack, rate: float, seconds: float, warmup_s: float = 8.0, seed: int = 7
) -> dict[str, Any]:
    rng = random.Random(seed)
    clients, chats = await make_chats(stack, rng)
    kinds = {c.chat_id: c.kind for c in chats}
    # Warm-up at the same rate, not measured: Lambda's instances for this concurrency start now
    # (cold starts), as they would have long before on a deployment in use.
    await offer(clients, chats, rng, rate, warmup_s)
    await asyncio.sleep(SETTLE_S)
    stack.reset_stats()
    stack.track_frames([c.chat_id for c in chats])
    cpu = CpuMeter(stack.stats()["pids"])
    start = time.perf_counter()
    sent, sent_at = await offer(clients, chats, rng, rate, seconds)
    await asyncio.sleep(SETTLE_S)
    elapsed = time.perf_counter() - start
    writes = stack.tracked_frames()
    stats = stack.stats()
    cores = cpu.cores_used(elapsed)
    await asyncio.gather(*(c.close() for c in clients.values()))

    def latencies(kind: str | None) -> list[float]:
        chosen = {k: v for k, v in sent_at.items() if kind is None or kinds[k[0]] == kind}
        return gateway_latencies_ms(writes, chosen)

    return {
        "run": f"mixed: {USERS} users, {USERS // 2} direct chats + {GROUPS} groups of {GROUP_SIZE}",
        "offered_msgs_per_s": rate,
        "sent": sent,
        "acked": len(sent_at),
        "copies_delivered": len(latencies(None)),
        "send_to_gateway_write_ms": percentiles(latencies(None)),
        "direct_chats_ms": percentiles(latencies("direct")),
        "groups_ms": percentiles(latencies("group")),
        "function_profile": stats.get("functions", {}),
        "cpu_cores_used": cores,
    }


def print_mixed(row: dict[str, Any]) -> None:
    print(
        f"{row['run']} | offered {row['offered_msgs_per_s']} msg/s, {row['acked']}/{row['sent']} ACKed, "
        f"{row['copies_delivered']} copies | "
        f"send -> gateway write {p50_p95_p99(row['send_to_gateway_write_ms'])} "
        f"(direct p99 {row['direct_chats_ms'][99]}, groups p99 {row['groups_ms'][99]})"
    )
    print_details(row)
