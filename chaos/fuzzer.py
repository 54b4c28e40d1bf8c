"""The frame fuzzer: valid frames of every route, each mutated so that it is no longer valid, sent
over raw WebSockets to the local gateway. Every one must be answered with a clear refusal
(BAD_REQUEST or TOO_LARGE): never INTERNAL, never silence, never a dropped connection, and the
stored state (every table but the rate-limit buckets, and the media bucket) must not change.

The frames and their mutations are chaos/mutations.py's. A mutation that leaves a frame valid
would be the fuzzer's own mistake: such a frame is counted as `accepted` (it reached the use case)
and fails the run, so the mutation table stays honest.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from chaos.mutations import mutate, valid_frames
from chat_backend import wiring
from chat_client.tokens import mint_token
from local_stack.child import RunningStack

REFUSALS = frozenset({"BAD_REQUEST", "TOO_LARGE"})
ANSWER_TIMEOUT_S = 15.0
# $default (no known action) is rate-limited, and frames over its limit are dropped unanswered (it
# is fire-and-forget): each connection (its own user) sends those no faster than both its buckets.
_DEFAULT_LIMIT = wiring.RATE_LIMITS["$default"]
_DEFAULT_RATES = [r for r in (_DEFAULT_LIMIT.user, _DEFAULT_LIMIT.connection) if r is not None]
DEFAULT_ROUTE_BURST = min(r.burst for r in _DEFAULT_RATES)
DEFAULT_ROUTE_RATE = min(r.per_s for r in _DEFAULT_RATES)
STRUCTURAL_SHARE = 0.03


@dataclass
class FuzzReport:
    frames: int = 0
    by_mutation: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # ERROR code (or frame type) -> count
    internal: int = 0
    accepted: int = 0  # reached a use case: a mutation that left the frame valid
    unanswered: int = 0
    dropped: int = 0  # connections closed by the server
    state_changes: int = 0  # items or objects that differ before / after
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)  # a few of the frames that failed the run

    @property
    def ok(self) -> bool:
        return self.internal == self.accepted == self.unanswered == self.dropped == self.state_changes == 0

    def lines(self) -> list[str]:
        mutations = ", ".join(f"{k} {v}" for k, v in sorted(self.by_mutation.items()))
        answers = ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items()))
        return [
            f"fuzzer: {self.frames} mutated frames in {self.seconds:.0f} s ({mutations})",
            f"  answers: {answers}",
            f"  INTERNAL {self.internal}, accepted {self.accepted}, unanswered {self.unanswered},"
            f" dropped connections {self.dropped}, state changes {self.state_changes}",
            *(f"  failed: {e}" for e in self.examples[:10]),
        ]


class DefaultRouteBucket:
    """The client's own pacing of frames that go to $default (see DEFAULT_ROUTE_RATE)."""

    def __init__(self) -> None:
        # A margin under the server's bucket: its refill is measured from other clocks.
        self.burst, self.rate = DEFAULT_ROUTE_BURST - 2, DEFAULT_ROUTE_RATE * 0.8
        self.tokens, self.at = float(self.burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


async def run_fuzzer(
    stack: RunningStack, frames: int, connections: int = 8, seed: int = 1, snapshot: Any = None
) -> FuzzReport:
    """Send `frames` mutated frames over `connections` raw WebSockets (each its own user, members of
    one group together). `snapshot()` reads the state to compare (chaos/state.py)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    users = [f"u_fuzz{run}_{i}" for i in range(connections)]
    sockets = [await _connect(stack, u) for u in users]
    report = FuzzReport()
    try:
        # A group of all of them, so that valid frames name a real chat.
        await sockets[0].send(
            json.dumps({"action": "createChat", "requestId": "g", "kind": "group", "members": users[1:]})
        )
        chat_id = str(json.loads(await asyncio.wait_for(sockets[0].recv(), ANSWER_TIMEOUT_S))["chatId"])
        await asyncio.sleep(2)  # what connecting set in motion (presence) settles first
        for ws in sockets:  # anything pushed meanwhile is not an answer to a fuzzed frame
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), 0.1)
                except TimeoutError:
                    break
        before = await asyncio.to_thread(snapshot) if snapshot else frozenset()
        started = time.monotonic()
        share = [frames // connections + (1 if i < frames % connections else 0) for i in range(connections)]
        sockets = list(
            await asyncio.gather(
                *(
                    _fuzz_connection(
                        stack,
                        sockets[i],
                        users[i],
                        chat_id,
                        users[(i + 1) % connections],
                        n,
                        random.Random(rng.random()),
                        report,
                    )
                    for i, n in enumerate(share)
                )
            )
        )
        report.seconds = time.monotonic() - started
        if snapshot:
            after = await asyncio.to_thread(snapshot)
            changed = sorted(set(before) ^ set(after))
            report.state_changes = len(changed)
            report.examples[:0] = [f"state: {c[:300]}" for c in changed[:5]]
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return report


async def _connect(stack: RunningStack, user: str) -> ClientConnection:
    token = mint_token(user, "d_fuzz", secret=stack.secret)
    return await websockets.connect(f"{stack.url}?token={token}", max_size=None, compression=None)


async def _fuzz_connection(
    stack: RunningStack,
    ws: ClientConnection,
    user: str,
    chat_id: str,
    other: str,
    frames: int,
    rng: random.Random,
    report: FuzzReport,
) -> ClientConnection:
    """Fuzz on `ws` (reconnecting should the server close it); returns the socket it ends on."""
    bases = valid_frames(chat_id, other)
    pacing = DefaultRouteBucket()
    for _ in range(frames):
        structural_one = rng.random() < STRUCTURAL_SHARE and pacing.take()
        kind, text = mutate(rng.choice(bases), rng, structural_one)
        report.frames += 1
        report.by_mutation[kind] += 1
        try:
            await ws.send(text)
            answer = await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
        except TimeoutError:
            report.unanswered += 1
            report.examples.append(f"no answer to {text[:200]!r}")
            continue
        except websockets.ConnectionClosed as closed:
            report.dropped += 1
            report.examples.append(f"closed ({closed.rcvd}) after {text[:200]!r}")
            ws = await _connect(stack, user)
            continue
        _judge(text, answer, report)
    return ws


def _judge(text: str, answer: str | bytes, report: FuzzReport) -> None:
    try:
        frame = json.loads(answer)
    except ValueError:
        frame = {}
    code = frame.get("code") if frame.get("type") == "ERROR" else frame.get("type")
    if "Internal server error" in str(answer) or code == "INTERNAL":
        report.internal += 1
        report.answers["INTERNAL"] += 1
        report.examples.append(f"INTERNAL for {text[:200]!r}")
        return
    report.answers[str(code)] += 1
    if code not in REFUSALS:
        report.accepted += 1
        report.examples.append(f"{code} for {text[:200]!r}")
