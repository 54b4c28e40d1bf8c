"""Fan-out of one message to a 10,000-member group, measured on the local stack.

A group of 10,000 members is created; `online` of them connect (the rest never do); then messages
are sent one at a time. Each online device's copy is timed from the send until the gateway writes
it to that device's connection (so the simulated clients' own CPU on this machine does not count),
and per send until the last online device's copy is written. The AWS calls, SQS messages and
PostToConnection calls of each send are counted by the stack (at the boto3 layer of the
functions). The members' SDKs send no automatic DELIVERED here, so the figures are the fan-out's
alone (receipts have their own run).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.report import gateway_latencies_ms, percentile, percentiles, print_function_profile
from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack

GROUP_SIZE = 10_000
CONNECT_CONCURRENCY = 50


@dataclass
class GroupFanoutResult:
    members: int
    online: int
    sends: int
    all_online_ms: list[float]  # per send: until the gateway wrote it to the last online device
    each_device_ms: list[float]  # per send and online device: until the gateway wrote it there
    stats: dict[str, Any]

    def row(self) -> dict[str, Any]:
        calls = self.stats.get("calls", {})
        per_send = max(1, self.sends)
        return {
            "group_members": self.members,
            "online_members": self.online,
            "sends": self.sends,
            "all_online_have_it_ms": {
                "p50": round(percentile(self.all_online_ms, 50), 1),
                "max": round(max(self.all_online_ms), 1),
            },
            "each_device_ms": percentiles(self.each_device_ms),
            "sqs_messages_per_send": round(self.stats.get("sqs_messages_sent", 0) / per_send, 1),
            "post_to_connection_per_send": round(
                calls.get("apigatewaymanagementapi.PostToConnection", 0) / per_send, 1
            ),
            "aws_calls_per_send": round(sum(calls.values()) / per_send, 1),
            "aws_calls_by_operation_per_send": {k: round(v / per_send, 1) for k, v in sorted(calls.items())},
            "function_profile": self.stats.get("functions", {}),
        }


def member_ids(count: int) -> list[str]:
    """Short ids, so 10,000 fit one 128 KiB createChat frame."""
    prefix = uuid.uuid4().hex[:3]
    return [f"{prefix}{i:04d}" for i in range(count)]


async def connect_all(stack: RunningStack, users: list[str]) -> list[ChatClient]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(user: str) -> ChatClient:
        async with gate:
            token = mint_token(user, "d1", secret=stack.secret)
            client = ChatClient(stack.url, token, heartbeat_interval=3600, auto_delivered=False)
            await client.connect()
            return client

    return list(await asyncio.gather(*(one(u) for u in users)))


async def run_group_fanout(stack: RunningStack, online: int, sends: int) -> GroupFanoutResult:
    admin_id = f"bench_admin_{uuid.uuid4().hex[:6]}"
    admin = ChatClient(stack.url, mint_token(admin_id, "d1", secret=stack.secret), auto_delivered=False)
    await admin.connect()
    members = member_ids(GROUP_SIZE - 1)
    chat = await admin.request(
        {"action": "createChat", "kind": "group", "name": "bench", "members": members}, timeout=120
    )
    clients = await connect_all(stack, members[:online])
    for client in clients:  # caught up: the SDK drops any later push of what it has
        await client.sync()
    await asyncio.sleep(1.0)
    for client in clients:
        while not client.messages.empty():
            client.messages.get_nowait()
    # One warm-up send: the first invocations build clients, as a cold Lambda would.
    await admin.send(chat["chatId"], b"warm-up")
    await asyncio.gather(*(c.next_message(timeout=60) for c in clients))
    stack.reset_stats()
    stack.track_frames([chat["chatId"]])
    sent_at: dict[tuple[str, int], float] = {}
    for n in range(sends):
        started = time.time()
        ack = await admin.send(chat["chatId"], f"fan-out {n}".encode())
        sent_at[(ack.chat_id, ack.seq)] = started
        await asyncio.gather(*(c.next_message(timeout=60) for c in clients))
    stats = stack.stats()
    writes = stack.tracked_frames()
    each = gateway_latencies_ms(writes, sent_at)
    last = [max(gateway_latencies_ms(writes, {key: sent})) for key, sent in sent_at.items()]
    await asyncio.gather(admin.close(), *(c.close() for c in clients))
    return GroupFanoutResult(GROUP_SIZE, online, sends, last, each, stats)


def print_group_row(row: dict[str, Any]) -> None:
    t, e = row["all_online_have_it_ms"], row["each_device_ms"]
    print(
        f"group of {row['group_members']}, {row['online_members']} online | send -> gateway write, each "
        f"device p50 {e[50]} p99 {e[99]} ms; the last device p50 {t['p50']} max {t['max']} ms "
        f"over {row['sends']} sends | per send: "
        f"SQS messages {row['sqs_messages_per_send']}, "
        f"PostToConnection {row['post_to_connection_per_send']}, "
        f"AWS calls {row['aws_calls_per_send']}"
    )
    print("    calls per send:", row["aws_calls_by_operation_per_send"])
    print_function_profile(row["function_profile"])
