"""The 1:1 message path: 100 users in 50 direct chats, offered messages at fixed rates (open loop:
a send is not held back by the previous ACK), then closed loop (each sender sends again once
ACKed: the most the stack sustains), then receipts (each receiver marks its chat's messages
DELIVERED then READ one by one, each as soon as the sender got the previous RECEIPT).

Send -> deliver is timed twice: at the gateway when it writes the MESSAGE frame to the receiver's
connection (the server's part, what AWS would bill; the clients' own CPU on this machine does not
count), and when the receiver's SDK releases the message to the application. The message runs
send no receipts (the SDK's automatic DELIVERED is off), so they measure the message path alone.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from bench.report import CpuMeter, gateway_latencies_ms, p50_p95_p99, p50_p99, percentiles, print_details
from chat_client import ChatClient, mint_token
from local_stack.child import RunningStack

STAMP = struct.Struct("!dI")  # send time (epoch s), message number


@dataclass
class Pair:
    sender: ChatClient
    receiver: ChatClient
    chat_id: str


@dataclass
class RunResult:
    offered_rate: float
    seconds: float
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    deliver_latency_ms: list[float] = field(default_factory=list)  # until the receiver's SDK released it
    gateway_latency_ms: list[float] = field(default_factory=list)  # until the gateway wrote it
    ack_latency_ms: list[float] = field(default_factory=list)
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)  # (chat, seq) -> epoch s
    stats: dict[str, Any] = field(default_factory=dict)
    delivered_per_s: float = 0.0


async def make_pairs(stack: RunningStack, users: int) -> list[Pair]:
    pairs = []
    run = int(time.time())
    for i in range(users // 2):
        a, b = f"bench_{run}_{i}_a", f"bench_{run}_{i}_b"
        sender = ChatClient(stack.url, mint_token(a, "d1", secret=stack.secret), auto_delivered=False)
        receiver = ChatClient(stack.url, mint_token(b, "d1", secret=stack.secret), auto_delivered=False)
        await asyncio.gather(sender.connect(), receiver.connect())
        chat = await sender.create_chat("direct", [b])
        pairs.append(Pair(sender, receiver, chat["chatId"]))
    return pairs


async def drain(pair: Pair, result: RunResult, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(pair.receiver.messages.get(), 0.2)
        except TimeoutError:
            continue
        sent_at, _ = STAMP.unpack(message.ciphertext[: STAMP.size])
        result.deliver_latency_ms.append((time.time() - sent_at) * 1000)
        result.delivered += 1


async def send_one(pair: Pair, n: int, padding: bytes, result: RunResult) -> None:
    started = time.time()
    ack = await pair.sender.send(pair.chat_id, STAMP.pack(started, n) + padding)
    result.ack_latency_ms.append((time.time() - started) * 1000)
    result.sent_at[(ack.chat_id, ack.seq)] = started
    result.acked += 1


async def offer_open_loop(
    pairs: list[Pair], rate: float, seconds: float, padding: bytes, result: RunResult
) -> None:
    """Sends at a fixed rate whatever the answers (the offered load of the latency target)."""
    sends: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + n * interval
        if due > now:
            await asyncio.sleep(due - now)
        sends.append(asyncio.create_task(send_one(pairs[n % len(pairs)], n, padding, result)))
        n += 1
    result.sent = n
    await asyncio.wait_for(asyncio.gather(*sends), 120)


async def offer_closed_loop(pairs: list[Pair], seconds: float, padding: bytes, result: RunResult) -> None:
    """Each sender sends again as soon as its last message is ACKed: the most the stack sustains."""
    end = time.perf_counter() + seconds

    async def sender(pair: Pair) -> None:
        while time.perf_counter() < end:
            result.sent += 1
            await send_one(pair, result.sent, padding, result)

    await asyncio.gather(*(sender(p) for p in pairs))


async def run_rate(
    stack: RunningStack, pairs: list[Pair], rate: float | None, seconds: float, size: int
) -> RunResult:
    """One measured run; rate None runs closed loop."""
    result = RunResult(offered_rate=rate or 0.0, seconds=seconds)
    padding = b"\x00" * max(0, size - STAMP.size)
    stack.reset_stats()
    stack.track_frames([p.chat_id for p in pairs])
    cpu = CpuMeter(stack.stats()["pids"])
    stop = asyncio.Event()
    drains = [asyncio.create_task(drain(p, result, stop)) for p in pairs]
    start = time.perf_counter()
    if rate is None:
        await offer_closed_loop(pairs, seconds, padding, result)
    else:
        await offer_open_loop(pairs, rate, seconds, padding, result)
    deadline = time.perf_counter() + 30
    while result.delivered < result.sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    stop.set()
    await asyncio.gather(*drains)
    result.delivered_per_s = result.delivered / elapsed
    result.gateway_latency_ms = gateway_latencies_ms(stack.tracked_frames(), result.sent_at)
    result.stats = stack.stats()
    result.stats["cpu_share"] = cpu.cores_used(elapsed)
    return result


async def run_receipts(stack: RunningStack, pairs: list[Pair], seconds: float) -> dict[str, Any]:
    """Closed loop: each receiver sends DELIVERED k, then READ k, then k+1..., each once the
    sender has the RECEIPT of the previous one. Every receipt moves a watermark by one message."""
    stack.reset_stats()
    cpu = CpuMeter(stack.stats()["pids"])
    latency_ms: list[float] = []
    start = time.perf_counter()
    end = start + seconds

    async def mark(pair: Pair) -> None:
        for seq in range(1, pair.receiver.cursors.get(pair.chat_id, 0) + 1):
            for kind in ("DELIVERED", "READ"):
                if time.perf_counter() >= end:
                    return
                sent_at = time.perf_counter()
                await pair.receiver.receipt(pair.chat_id, kind, up_to_seq=seq)
                while True:
                    frame = await pair.sender.next_frame("RECEIPT", timeout=60)
                    if frame.get("receiptType") == kind and frame.get("upToSeq") == seq:
                        break
                latency_ms.append((time.perf_counter() - sent_at) * 1000)

    await asyncio.gather(*(mark(p) for p in pairs))
    elapsed = time.perf_counter() - start
    stats = stack.stats()
    calls = stats.get("calls", {})
    done = max(1, len(latency_ms))
    return {
        "receipts": len(latency_ms),
        "seconds": round(elapsed, 1),
        "receipts_per_s": round(len(latency_ms) / elapsed, 1),
        "receipt_to_sender_ms": percentiles(latency_ms),
        "aws_calls_per_receipt": round(sum(calls.values()) / done, 2),
        "aws_calls_by_operation_per_receipt": {k: round(v / done, 2) for k, v in sorted(calls.items())},
        "function_profile": stats.get("functions", {}),
        "cpu_cores_used": cpu.cores_used(elapsed),
    }


def print_receipts(row: dict[str, Any]) -> None:
    print(
        f"receipts (closed loop) | {row['receipts_per_s']:>6.1f} receipts/s ({row['receipts']} in "
        f"{row['seconds']} s) | receipt->sender's RECEIPT {p50_p95_p99(row['receipt_to_sender_ms'])} | "
        f"AWS calls/receipt {row['aws_calls_per_receipt']}"
    )
    print_details(row, "aws_calls_by_operation_per_receipt", "receipt")


def report(result: RunResult, size: int) -> dict[str, Any]:
    calls = result.stats.get("calls", {})
    units = result.stats.get("write_units", {})
    delivered = max(1, result.delivered)
    sends = max(1, result.acked)
    row = {
        "offered_msgs_per_s": result.offered_rate,
        "seconds": result.seconds,
        "ciphertext_bytes": size,
        "sent": result.sent,
        "acked": result.acked,
        "delivered": result.delivered,
        "delivered_msgs_per_s": round(result.delivered_per_s, 1),
        "deliver_at_gateway_ms": percentiles(result.gateway_latency_ms),
        "deliver_ms": percentiles(result.deliver_latency_ms),
        "ack_ms": percentiles(result.ack_latency_ms),
        "aws_calls_per_delivered_msg": round(sum(calls.values()) / delivered, 2),
        "aws_calls_by_operation_per_msg": {k: round(v / delivered, 2) for k, v in sorted(calls.items())},
        "dynamodb_write_units_per_send": round(sum(units.values()) / sends, 2),
        "function_profile": result.stats.get("functions", {}),
        "cpu_cores_used": result.stats.get("cpu_share", {}),
    }
    return row


def print_row(row: dict[str, Any]) -> None:
    print(
        f"1:1 offered {row['offered_msgs_per_s'] or 'max (closed loop)':>6} msg/s | "
        f"delivered {row['delivered_msgs_per_s']:>6.1f} msg/s ({row['delivered']}/{row['sent']}) | "
        f"send->gateway write {p50_p95_p99(row['deliver_at_gateway_ms'])} | "
        f"send->SDK release {p50_p99(row['deliver_ms'])} | ACK {p50_p99(row['ack_ms'])} | "
        f"AWS calls/msg {row['aws_calls_per_delivered_msg']} | "
        f"WCU/send {row['dynamodb_write_units_per_send']}"
    )
    print_details(row, "aws_calls_by_operation_per_msg", "delivered message")
