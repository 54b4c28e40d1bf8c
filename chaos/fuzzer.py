"""The frame fuzzer: valid frames of every route, each mutated so that it is no longer valid, sent
over raw WebSockets to the local gateway. Every one must be answered with a clear refusal
(BAD_REQUEST or TOO_LARGE): never INTERNAL, never silence, never a dropped connection, and the
stored state (every table but the rate-limit buckets, and the media bucket) must not change.

A mutation that leaves a frame valid would be the fuzzer's own mistake: such a frame is counted
as `accepted` (it reached the use case) and fails the run, so the mutation table stays honest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

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

LONE = "\ud800"
BAD_IDS: list[Any] = ["", LONE, "a" * 65, "sp ace", "c/9", 7, 1.5, True, [], {}, ["c_1"]]
BAD_REQUEST_IDS: list[Any] = ["", LONE, "r" * 129, 7, True, [], {"a": 1}]
BAD_USER_IDS: list[Any] = [*BAD_IDS, "system"]
BAD_SEQS: list[Any] = [-1, 2**53, 10**60, "5", 1.5, True, [], {}, None]
BAD_BYTES: list[Any] = ["", "@@@@", "YQ", 5, True, [], {}, LONE, None]


def bad_values(field_name: str) -> list[Any]:
    """Values that no frame accepts in this field."""
    table: dict[str, list[Any]] = {
        "requestId": BAD_REQUEST_IDS,
        "clientMsgId": ["", LONE, "m" * 129, 7, [], None],
        "chatId": [*BAD_IDS, None],
        "mediaId": [*BAD_IDS, None],
        "serverMsgId": BAD_IDS,
        "userId": [*BAD_USER_IDS, None],
        # Every route's cursor is an id, or (getChatDevices) two joined by a dot.
        "cursor": [*BAD_IDS, "u_a.", ".d", "u_a.d.x", "u_a..d", "u_a." + "d" * 65],
        "ciphertext": BAD_BYTES,
        "cursors": [[], "c_1", 5, {"c_1": -1}, {"c_1": "1"}, {"c 1": 1}, {LONE: 1}, {"c_1": 2**53}],
        "limit": [0, -5, 10**6, "10", 1.5, None, []],
        "only": ["yes", 2, [], {}, None],
        "members": [[], "u_a", [5], ["u_a", "u_a"], ["system"], [LONE], None, {}],
        "kind": ["channel", "", 5, None, []],
        "name": ["", "n" * 129, 5, [], {}, LONE],
        "type": ["SEEN", "read", 1, None, []],
        "upToSeq": [0, *BAD_SEQS[:-1]],
        "subscribe": ["u_a", [5], [LONE], ["system"], [f"u_{i}" for i in range(1001)], {}, None],
        "unsubscribe": ["u_a", [5], [LONE], {}, None],
        "groupAdd": ["friends", "", 1, None, []],
        "size": [0, -1, 2**63, "5", 1.5, None, []],
        "platform": ["sms", "", "APNS", 5, None, [], LONE],
        "token": ["", "has space", "tab\t", "t" * 4097, 5, None, [], LONE],
        "contentType": ["", "image", "image/jpeg; charset=x", 5, None, "a" * 300 + "/b", LONE],
        "mediaIds": ["md_1", [5], [LONE], [""], {}],
        # Keys may come unpadded (Olm's convention): "YQ" is a key; a lone base64 character is not.
        "identityKey": [v for v in BAD_BYTES if v != "YQ"] + ["Y"],
        "signingKey": [v for v in BAD_BYTES if v != "YQ"] + ["Y"],
        "signedPreKey": [
            None,
            5,
            "k",
            [],
            {"keyId": -1, "publicKey": "AAAA", "signature": "AAAA"},
            {"keyId": 1, "publicKey": "@@", "signature": "AAAA"},
            {"keyId": 1},
        ],
        "txnId": ["", "t" * 65, 5, None, [], LONE],
        "messages": [
            [],
            "m",
            [{"userId": "u_a", "deviceId": "d"}],
            [{"userId": "u_a", "deviceId": "d", "ciphertext": "@@@@"}],
            [{"userId": LONE, "deviceId": "d", "ciphertext": "eA=="}],
            [{"userId": "u_a", "deviceId": "d", "ciphertext": "eA=="}] * 101,
            None,
        ],
        "userIds": [[], "u_a", [5], [LONE], ["system"], [f"u_{i}" for i in range(101)], None, {}],
        "devices": [[], "d", [{"userId": "u_a"}], [{"userId": "u_a", "deviceId": LONE}], [5], None, {}],
        "ids": [[], "td_1", ["td_x"], [5], [LONE], None, ["td_0000000000001_0a0b0c0d"] * 101],
        "oneTimePreKeys": [
            "k",
            5,
            [{"keyId": "x", "publicKey": "AAAA"}],
            [{"keyId": 1}],
            {},
            [{"keyId": 1, "publicKey": "AAAA"}, {"keyId": 1, "publicKey": "AAAA"}],
        ],
    }
    return table[field_name]


def valid_frames(chat_id: str, other_user: str) -> list[dict[str, Any]]:
    """One valid frame of each route (a member of `chat_id`, `other_user` its other member)."""
    key = base64.b64encode(b"k" * 32).decode()
    return [
        {"action": "send", "clientMsgId": "cm-1", "chatId": chat_id, "ciphertext": "aGk=", "mediaIds": []},
        {"action": "sync", "requestId": "r", "cursors": {chat_id: 0}, "limit": 10, "only": True},
        {"action": "createChat", "requestId": "r", "kind": "group", "name": "n", "members": [other_user]},
        {"action": "addMembers", "requestId": "r", "chatId": chat_id, "members": ["u_fuzz_new"]},
        {"action": "removeMembers", "requestId": "r", "chatId": chat_id, "members": [other_user]},
        {"action": "getMembers", "requestId": "r", "chatId": chat_id, "cursor": None},
        {"action": "receipt", "chatId": chat_id, "type": "READ", "upToSeq": 1},
        {"action": "receipts", "requestId": "r", "chatId": chat_id, "serverMsgId": "m_1_x"},
        {"action": "presence", "requestId": "r", "subscribe": [other_user], "unsubscribe": []},
        {"action": "typing", "chatId": chat_id},
        {
            "action": "publishKeys",
            "identityKey": key,
            "signingKey": key,
            "signedPreKey": {"keyId": 1, "publicKey": key, "signature": key},
            "oneTimePreKeys": [{"keyId": 1, "publicKey": key}],
        },
        {"action": "fetchKeys", "requestId": "r", "userId": other_user},
        {
            "action": "mediaUpload",
            "requestId": "r",
            "chatId": chat_id,
            "contentType": "image/png",
            "size": 10,
        },
        {"action": "mediaDownload", "requestId": "r", "chatId": chat_id, "mediaId": "md_1"},
        {"action": "block", "requestId": "r", "userId": other_user},
        {"action": "unblock", "requestId": "r", "userId": other_user},
        {"action": "setPrivacy", "requestId": "r", "groupAdd": "nobody"},
        {"action": "listChats", "requestId": "r", "cursor": None},
        {
            "action": "sendToDevice",
            "requestId": "r",
            "txnId": "t-1",
            "chatId": chat_id,
            "messages": [{"userId": other_user, "deviceId": "d_fuzz", "ciphertext": "aGk="}],
        },
        {"action": "ackToDevice", "requestId": "r", "ids": ["td_0000000000001_0a0b0c0d"]},
        {"action": "queryDevices", "requestId": "r", "userIds": [other_user]},
        {"action": "claimKeys", "requestId": "r", "devices": [{"userId": other_user, "deviceId": "d_fuzz"}]},
        {"action": "getChatDevices", "requestId": "r", "chatId": chat_id, "cursor": f"{other_user}.d_fuzz"},
        {"action": "registerPush", "requestId": "r", "platform": "fcm", "token": "fcm-token-fuzz"},
        {"action": "unregisterPush", "requestId": "r"},
    ]


Mutation = Callable[[dict[str, Any], random.Random], str]


def _fields(frame: dict[str, Any]) -> list[str]:
    return [k for k in frame if k != "action"]


def bad_field(frame: dict[str, Any], rng: random.Random) -> str:
    """One field set to a value no frame accepts there (and maybe a second one too)."""
    mutated = dict(frame)
    for name in rng.sample(_fields(frame), k=min(len(_fields(frame)), rng.choice((1, 1, 2)))):
        allowed_none = (frame["action"], name) in NONE_ALLOWED
        mutated[name] = rng.choice([v for v in bad_values(name) if not (v is None and allowed_none)])
    return json.dumps(mutated)


def missing_field(frame: dict[str, Any], rng: random.Random) -> str:
    """A required field left out (those a valid frame may omit are not chosen)."""
    dropped = rng.choice([k for k in _fields(frame) if k in REQUIRED.get(frame["action"], ())])
    mutated = {k: v for k, v in frame.items() if k != dropped}
    return json.dumps(mutated)


def receipt_forms(frame: dict[str, Any], rng: random.Random) -> str:
    """A receipt with both forms, or neither."""
    mutated = dict(frame)
    if rng.random() < 0.5:
        mutated["serverMsgId"] = "m_1_x"
    else:
        mutated.pop("upToSeq", None)
    return json.dumps(mutated)


def structural(frame: dict[str, Any], rng: random.Random) -> str:
    """Not a JSON object with a known action: cut short, another JSON type, no or an unknown action,
    NaN, deep nesting, or bytes that are not text at all."""
    text = json.dumps(frame)
    choice = rng.randrange(9)
    if choice == 0:
        return text[: rng.randrange(1, len(text) - 1)]
    if choice == 1:
        return json.dumps([frame])
    if choice == 2:
        return json.dumps(rng.choice(["send", 5, None, True]))
    if choice == 3:
        return json.dumps({k: v for k, v in frame.items() if k != "action"})
    if choice == 4:
        return json.dumps({**frame, "action": rng.choice(["Send", "sendX", "", LONE, "$default"])})
    if choice == 5:
        return json.dumps({**frame, "action": rng.choice([5, None, ["send"], {"a": 1}])})
    if choice == 6:
        return text.replace("{", '{"n": NaN, ', 1)
    if choice == 7:
        depth = rng.choice((100, 1000, 5000))
        return '{"action": "x", "d": ' + "[" * depth + "]" * depth + "}"
    return "\x00\x01" + text[1:] + "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")


# Fields some routes take as null where others refuse it.
NONE_ALLOWED = {("sendToDevice", "chatId"), ("publishKeys", "signingKey")}

REQUIRED: dict[str, tuple[str, ...]] = {
    "send": ("clientMsgId", "chatId", "ciphertext"),
    "sync": ("requestId",),
    "createChat": ("requestId", "kind", "members"),
    "addMembers": ("requestId", "chatId", "members"),
    "removeMembers": ("requestId", "chatId", "members"),
    "getMembers": ("requestId", "chatId"),
    "receipt": ("chatId", "type"),
    "receipts": ("requestId", "chatId", "serverMsgId"),
    "typing": ("chatId",),
    "publishKeys": ("identityKey", "signedPreKey"),
    "fetchKeys": ("requestId", "userId"),
    "mediaUpload": ("requestId", "chatId", "contentType", "size"),
    "mediaDownload": ("requestId", "chatId", "mediaId"),
    "block": ("requestId", "userId"),
    "unblock": ("requestId", "userId"),
    "setPrivacy": ("requestId", "groupAdd"),
    "listChats": ("requestId",),
    "sendToDevice": ("requestId", "txnId", "messages"),
    "ackToDevice": ("requestId", "ids"),
    "queryDevices": ("requestId", "userIds"),
    "claimKeys": ("requestId", "devices"),
    "getChatDevices": ("requestId", "chatId"),
    "registerPush": ("requestId", "platform", "token"),
    "unregisterPush": ("requestId",),
}


def mutate(frame: dict[str, Any], rng: random.Random, structural_one: bool) -> tuple[str, str]:
    """(kind of mutation, the frame's text); `structural_one`: break the frame's very shape."""
    if structural_one:
        return "structural", structural(frame, rng)
    kinds: list[tuple[str, Mutation]] = [("bad_field", bad_field), ("bad_field", bad_field)]
    if REQUIRED.get(frame["action"]):
        kinds.append(("missing_field", missing_field))
    if frame["action"] == "receipt":
        kinds.append(("receipt_forms", receipt_forms))
    kind, fn = rng.choice(kinds)
    return kind, fn(frame, rng)


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
