"""The authorization matrix (issue 9): every route, tried by a stranger, a user the chat's admin
blocked, a removed member, a member, the admin and the admin's other device, over raw WebSockets
so that every frame each of them receives is seen. Each gets the answer its standing allows, and
nothing reaches anyone it must not: 0 leaks.

The scene: group G of alice (admin), bob, dave and carol, where carol was removed after message 1;
direct chats alice-bob (both wrote) and alice-dave (alice blocked dave); mallory knows nobody.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from chat_backend import wiring
from chat_client.media import post_form
from chat_client.tokens import mint_token
from local_stack.child import RunningStack

ANSWER_TIMEOUT_S = 15.0
SILENT_WAIT_S = 1.5  # how long a fire-and-forget frame is given to be refused
KEY = base64.b64encode(b"k" * 32).decode()
ACTORS = ("stranger", "blocked", "removed", "member", "admin", "other_device")


@dataclass
class Actor:
    name: str
    user: str
    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async for text in self.ws:
            self.frames.append(json.loads(text))
            self.arrived.set()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send `frame`; its answer (matched by requestId / clientMsgId, else by type)."""
        start = len(self.frames)
        await self.ws.send(json.dumps(frame))
        loop = asyncio.get_running_loop()
        end = loop.time() + ANSWER_TIMEOUT_S
        while loop.time() < end:
            for answer in self.frames[start:]:
                if _answers(frame, answer):
                    return answer
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), end - loop.time())
            except TimeoutError:
                break
        raise AssertionError(f"{self.name}: no answer to {frame}")

    async def fire(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a fire-and-forget frame: its ERROR if one comes within SILENT_WAIT_S, else SILENT."""
        start = len(self.frames)
        await self.ws.send(json.dumps(frame))
        await asyncio.sleep(SILENT_WAIT_S)
        errors = [f for f in self.frames[start:] if f.get("type") == "ERROR" and not f.get("requestId")]
        return errors[0] if errors else {"type": "SILENT"}


ANSWER_TYPES = {"publishKeys": "KEYS_PUBLISHED", "heartbeat": "PONG"}  # answers without ids


def _answers(frame: dict[str, Any], answer: dict[str, Any]) -> bool:
    if "requestId" in frame:
        return answer.get("requestId") == frame["requestId"]
    if "clientMsgId" in frame:
        return answer.get("clientMsgId") == frame["clientMsgId"]
    return answer.get("type") in (ANSWER_TYPES[frame["action"]], "ERROR")


def outcome(answer: dict[str, Any]) -> str:
    return f"ERROR:{answer['code']}" if answer["type"] == "ERROR" else str(answer["type"])


@dataclass
class Scene:
    actors: dict[str, Actor]
    group: str
    direct_blocked: str  # alice - dave, alice blocks dave
    direct_open: str  # alice - bob
    removal_seq: int
    first_message_id: str  # alice's message 1 in G
    media_in_window: str  # attached at seq 1 (carol's window)
    media_after: str  # attached after carol's removal
    users: dict[str, str]


async def _connect(stack: RunningStack, name: str, user: str, device: str = "d1") -> Actor:
    token = mint_token(user, device, secret=stack.secret)
    ws = await websockets.connect(f"{stack.url}?token={token}", max_size=None, compression=None)
    actor = Actor(name, user, ws)
    actor.reader = asyncio.create_task(actor.read())
    return actor


async def _upload_attached(admin: Actor, chat_id: str, n: int) -> tuple[str, int]:
    """Media uploaded by the admin and attached by a message; (mediaId, the message's seq)."""
    answer = await admin.request(
        {
            "action": "mediaUpload",
            "requestId": f"up{n}",
            "chatId": chat_id,
            "contentType": "image/png",
            "size": 5,
        }
    )
    assert await post_form(answer["url"], answer["fields"], b"bytes") in (200, 204)
    ack = await admin.request(
        {
            "action": "send",
            "clientMsgId": f"media{n}",
            "chatId": chat_id,
            "ciphertext": "aGk=",
            "mediaIds": [answer["mediaId"]],
        }
    )
    assert ack["type"] == "ACK", ack
    return answer["mediaId"], ack["seq"]


@pytest.fixture
async def scene(stack: RunningStack, new_user: Callable[[str], str]) -> Any:
    users = {n: new_user(n) for n in ("alice", "bob", "carol", "dave", "mallory")}
    admin = await _connect(stack, "admin", users["alice"])
    actors = {
        "admin": admin,
        "other_device": await _connect(stack, "other_device", users["alice"], "d2"),
        "member": await _connect(stack, "member", users["bob"]),
        "removed": await _connect(stack, "removed", users["carol"]),
        "blocked": await _connect(stack, "blocked", users["dave"]),
        "stranger": await _connect(stack, "stranger", users["mallory"]),
    }
    try:
        for actor in actors.values():  # everyone's keys, so fetchKeys has one-time prekeys to give
            assert (await actor.request(_publish_keys()))["type"] == "KEYS_PUBLISHED"
        members = [users["bob"], users["carol"], users["dave"], "u_extra1", "u_extra2"]
        group = (
            await admin.request(
                {"action": "createChat", "requestId": "g", "kind": "group", "members": members}
            )
        )["chatId"]
        first = await admin.request(
            {"action": "send", "clientMsgId": "m1", "chatId": group, "ciphertext": "aGk="}
        )
        media_in_window, _ = await _upload_attached(admin, group, 1)
        removal = await admin.request(
            {"action": "removeMembers", "requestId": "rm", "chatId": group, "members": [users["carol"]]}
        )
        assert removal["type"] == "CHAT", removal
        removal_seq = 3
        media_after, after_seq = await _upload_attached(admin, group, 2)
        assert after_seq == removal_seq + 1
        direct_open = (
            await admin.request(
                {"action": "createChat", "requestId": "d1", "kind": "direct", "members": [users["bob"]]}
            )
        )["chatId"]
        for who, n in ((admin, 1), (actors["member"], 2)):
            await who.request(
                {"action": "send", "clientMsgId": f"e{n}", "chatId": direct_open, "ciphertext": "aGk="}
            )
        direct_blocked = (
            await admin.request(
                {"action": "createChat", "requestId": "d2", "kind": "direct", "members": [users["dave"]]}
            )
        )["chatId"]
        await admin.request(
            {"action": "send", "clientMsgId": "b1", "chatId": direct_blocked, "ciphertext": "aGk="}
        )
        assert (await admin.request({"action": "block", "requestId": "blk", "userId": users["dave"]}))[
            "type"
        ] == "OK"
        await asyncio.sleep(1)  # the pushes of the scene arrive before the matrix begins
        yield Scene(
            actors,
            group,
            direct_blocked,
            direct_open,
            removal_seq,
            first["serverMsgId"],
            media_in_window,
            media_after,
            users,
        )
    finally:
        for actor in actors.values():
            await actor.ws.close()


def _publish_keys() -> dict[str, Any]:
    return {
        "action": "publishKeys",
        "identityKey": KEY,
        "signedPreKey": {"keyId": 1, "publicKey": KEY, "signature": KEY},
        "oneTimePreKeys": [{"keyId": i, "publicKey": KEY} for i in range(1, 4)],
    }


# route -> (frame for the scene and actor, expected outcome per actor). SILENT: a fire-and-forget
# frame that was accepted. The other devices' pushes of accepted frames are checked for leaks below.
Row = tuple[str, Callable[[Scene, str], dict[str, Any]], dict[str, str]]
MEMBERS_OK = {"stranger": "ERROR:FORBIDDEN", "removed": "ERROR:FORBIDDEN"}


def _expect(default: str, **special: str) -> dict[str, str]:
    return {a: special.get(a, default) for a in ACTORS}


MATRIX: list[Row] = [
    (
        "send",
        lambda s, a: {"action": "send", "clientMsgId": f"x-{a}", "chatId": s.group, "ciphertext": "aGk="},
        _expect("ACK", **MEMBERS_OK),
    ),
    (
        "send (direct, blocked)",
        lambda s, a: {
            "action": "send",
            "clientMsgId": f"y-{a}",
            "chatId": s.direct_blocked,
            "ciphertext": "aGk=",
        },
        _expect("ERROR:FORBIDDEN", blocked="ACK", admin="ACK", other_device="ACK"),
    ),
    (
        "sync",
        lambda s, a: {"action": "sync", "requestId": f"s-{a}", "cursors": {s.group: 0}},
        _expect("SYNC_DONE"),
    ),
    (
        "getMembers",
        lambda s, a: {"action": "getMembers", "requestId": f"gm-{a}", "chatId": s.group},
        _expect("MEMBERS", **MEMBERS_OK),
    ),
    (
        "addMembers",
        lambda s, a: {
            "action": "addMembers",
            "requestId": f"am-{a}",
            "chatId": s.group,
            "members": [f"u_new_{a}"],
        },
        _expect("ERROR:FORBIDDEN", admin="CHAT", other_device="CHAT"),
    ),
    (
        "removeMembers",
        lambda s, a: {
            "action": "removeMembers",
            "requestId": f"rm-{a}",
            "chatId": s.group,
            "members": ["u_extra1" if a == "admin" else "u_extra2"],
        },
        _expect("ERROR:FORBIDDEN", admin="CHAT", other_device="CHAT"),
    ),
    (
        "receipt",
        lambda s, a: {"action": "receipt", "chatId": s.group, "type": "READ", "upToSeq": 1},
        _expect("SILENT", **MEMBERS_OK),
    ),
    (
        "receipts",
        lambda s, a: {
            "action": "receipts",
            "requestId": f"rq-{a}",
            "chatId": s.group,
            "serverMsgId": s.first_message_id,
        },
        _expect("ERROR:FORBIDDEN", admin="RECEIPTS", other_device="RECEIPTS"),
    ),
    ("typing", lambda s, a: {"action": "typing", "chatId": s.group}, _expect("SILENT", **MEMBERS_OK)),
    (
        "presence",
        lambda s, a: {
            "action": "presence",
            "requestId": f"p-{a}",
            "subscribe": [s.users["bob" if a in ("admin", "other_device") else "alice"]],
        },
        _expect("ERROR:FORBIDDEN", member="PRESENCE", admin="PRESENCE", other_device="PRESENCE"),
    ),
    (
        "typing (direct, blocked)",
        lambda s, a: {"action": "typing", "chatId": s.direct_blocked},
        _expect("ERROR:FORBIDDEN", blocked="SILENT", admin="SILENT", other_device="SILENT"),
    ),
    (
        "receipt (direct, blocked)",
        lambda s, a: {"action": "receipt", "chatId": s.direct_blocked, "type": "READ", "upToSeq": 1},
        _expect("ERROR:FORBIDDEN", blocked="SILENT", admin="SILENT", other_device="SILENT"),
    ),
    ("heartbeat", lambda s, a: {"action": "heartbeat"}, _expect("PONG")),
    ("publishKeys", lambda s, a: _publish_keys(), _expect("KEYS_PUBLISHED")),
    (
        "fetchKeys",
        lambda s, a: {"action": "fetchKeys", "requestId": f"fk-{a}", "userId": s.users["alice"]},
        _expect("KEYS"),
    ),
    (
        "mediaUpload",
        lambda s, a: {
            "action": "mediaUpload",
            "requestId": f"mu-{a}",
            "chatId": s.group,
            "contentType": "image/png",
            "size": 5,
        },
        _expect("MEDIA_UPLOAD", **MEMBERS_OK),
    ),
    (
        "mediaDownload (in carol's window)",
        lambda s, a: {
            "action": "mediaDownload",
            "requestId": f"md-{a}",
            "chatId": s.group,
            "mediaId": s.media_in_window,
        },
        _expect("MEDIA_URL", stranger="ERROR:FORBIDDEN"),
    ),
    (
        "mediaDownload (after carol)",
        lambda s, a: {
            "action": "mediaDownload",
            "requestId": f"mx-{a}",
            "chatId": s.group,
            "mediaId": s.media_after,
        },
        _expect("MEDIA_URL", stranger="ERROR:FORBIDDEN", removed="ERROR:NOT_FOUND"),
    ),
    ("listChats", lambda s, a: {"action": "listChats", "requestId": f"lc-{a}"}, _expect("CHATS")),
    (
        "createChat (group with alice)",
        lambda s, a: {
            "action": "createChat",
            "requestId": f"cc-{a}",
            "kind": "group",
            "members": [s.users["alice"] if a not in ("admin", "other_device") else s.users["bob"]],
        },
        _expect("CHAT"),
    ),
    (
        "sendToDevice (to a member of G)",
        lambda s, a: {
            "action": "sendToDevice",
            "requestId": f"td-{a}",
            "txnId": f"txn-{a}",
            "chatId": s.group,
            "messages": [
                {
                    "userId": s.users["bob" if a in ("admin", "other_device") else "alice"],
                    "deviceId": "d1",
                    "ciphertext": "aGk=",
                }
            ],
        },
        _expect("TO_DEVICE_ACK", **MEMBERS_OK),
    ),
    (
        "queryDevices",
        lambda s, a: {"action": "queryDevices", "requestId": f"qd-{a}", "userIds": [s.users["alice"]]},
        _expect("DEVICES"),
    ),
    (
        "claimKeys",
        lambda s, a: {
            "action": "claimKeys",
            "requestId": f"ck-{a}",
            "devices": [{"userId": s.users["alice"], "deviceId": "d1"}],
        },
        _expect("CLAIMED"),
    ),
    (
        "getChatDevices",
        lambda s, a: {"action": "getChatDevices", "requestId": f"gd-{a}", "chatId": s.group},
        _expect("CHAT_DEVICES", **MEMBERS_OK),
    ),
    (
        "getChatDevices (direct, blocked)",
        lambda s, a: {"action": "getChatDevices", "requestId": f"gb-{a}", "chatId": s.direct_blocked},
        _expect("ERROR:FORBIDDEN", blocked="CHAT_DEVICES", admin="CHAT_DEVICES", other_device="CHAT_DEVICES"),
    ),
    (
        "ackToDevice",
        lambda s, a: {"action": "ackToDevice", "requestId": f"ak-{a}", "ids": ["td_0000000000001_0a0b0c0d"]},
        _expect("OK"),
    ),
    (
        "setPrivacy",
        lambda s, a: {"action": "setPrivacy", "requestId": f"sp-{a}", "groupAdd": "everyone"},
        _expect("OK"),
    ),
    ("block", lambda s, a: {"action": "block", "requestId": f"bl-{a}", "userId": "u_nobody"}, _expect("OK")),
    (
        "unblock",
        lambda s, a: {"action": "unblock", "requestId": f"ub-{a}", "userId": "u_nobody"},
        _expect("OK"),
    ),
    # A device's own push token: anyone's to set or clear, and it tells nobody anything.
    (
        "registerPush",
        lambda s, a: {"action": "registerPush", "requestId": f"rp-{a}", "platform": "fcm", "token": f"t-{a}"},
        _expect("OK"),
    ),
    ("unregisterPush", lambda s, a: {"action": "unregisterPush", "requestId": f"up-{a}"}, _expect("OK")),
    # Last: a new identity key on every device (DEVICES_CHANGED goes to those who share a chat).
    (
        "publishKeys (a new identity key)",
        lambda s, a: _publish_keys() | {"identityKey": base64.b64encode(f"new-{a}".encode()).decode()},
        _expect("KEYS_PUBLISHED"),
    ),
]


def test_the_matrix_tries_every_route_a_client_may_send() -> None:
    # Given the routes of the wiring table (API Gateway's own $connect / $disconnect / $default
    # aside) / When the matrix's rows are named by route / Then none is left out
    tried = {route.split(" ")[0] for route, _, _ in MATRIX}
    assert set(wiring.routes()) - {"$connect", "$disconnect", "$default"} == tried


async def test_every_route_answers_each_standing_as_it_may_and_nothing_leaks(scene: Scene) -> None:
    # Given the scene (module docstring)
    s = scene
    seen_before = {name: len(actor.frames) for name, actor in s.actors.items()}
    # When every actor tries every route
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for route, build, _ in MATRIX:
        for name in ACTORS:
            frame = build(s, name)
            actor = s.actors[name]
            quiet = frame["action"] in ("receipt", "typing")
            got[(route, name)] = await (actor.fire(frame) if quiet else actor.request(frame))
    await asyncio.sleep(1.5)  # the pushes of what was accepted arrive
    # Then each got the answer its standing allows
    wrong = [
        f"{route} by {name}: {outcome(got[(route, name)])}, expected {want[name]}"
        for route, _, want in MATRIX
        for name in ACTORS
        if outcome(got[(route, name)]) != want[name]
    ]
    assert wrong == []
    # And what each answer tells is theirs to know
    leaks = _answer_leaks(s, got)
    # And nothing was pushed to anyone it must not reach
    leaks += _push_leaks(s, {name: actor.frames[seen_before[name] :] for name, actor in s.actors.items()})
    assert leaks == []


def _answer_leaks(s: Scene, got: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    leaks = []
    for name in ACTORS:
        heads = got[("sync", name)].get("heads", {})
        chats = {c["chatId"] for c in got[("listChats", name)]["chats"]}
        if name == "stranger" and ({s.group, s.direct_blocked, s.direct_open} & (set(heads) | chats)):
            leaks.append("the stranger's sync or listChats names the others' chats")
        if name == "removed":
            if heads.get(s.group) != s.removal_seq:
                leaks.append(f"the removed member's head of G is {heads.get(s.group)}, not its removal")
            if s.group in chats:
                leaks.append("listChats lists G to its removed member")
        keys = got[("fetchKeys", name)]["devices"] + got[("claimKeys", name)]["keys"]
        if name == "blocked" and any(d["oneTimePreKey"] is not None for d in keys):
            leaks.append("the blocked user claimed a one-time prekey of its blocker")
        listed = {d["userId"] for d in got[("getChatDevices", name)].get("devices", [])}
        if s.users["carol"] in listed:
            leaks.append(f"getChatDevices lists the removed member's devices to {name}")
        if name not in ("stranger", "removed") and listed != {s.users[u] for u in ("alice", "bob", "dave")}:
            leaks.append(f"getChatDevices lists {sorted(listed)} to {name}, not G's members' devices")
        added = got[("createChat (group with alice)", name)]
        if name == "blocked" and s.users["alice"] not in (added.get("notAdded") or []):
            leaks.append("the blocked user put its blocker in a group")
    return leaks


def _push_leaks(s: Scene, pushed: dict[str, list[dict[str, Any]]]) -> list[str]:
    leaks = []
    ours = {s.group, s.direct_blocked, s.direct_open}
    for name, frames in pushed.items():
        for f in frames:
            kind, chat = f.get("type"), f.get("chatId")
            if (
                name == "stranger"
                and kind in ("MESSAGE", "VOID", "TYPING", "RECEIPT", "RECEIPT_SUMMARY")
                and chat in ours
            ):
                leaks.append(f"stranger got {kind} of {chat}")
            if name == "stranger" and kind == "PRESENCE" and f.get("userId") in s.users.values():
                leaks.append("stranger got presence")
            if (
                name == "removed"
                and chat == s.group
                and (
                    kind in ("TYPING", "RECEIPT", "RECEIPT_SUMMARY")
                    or (kind in ("MESSAGE", "VOID") and f["seq"] > s.removal_seq)
                )
            ):
                leaks.append(f"removed member got {kind} of G after its removal")
            if name == "removed" and kind == "PONG" and s.group in (f.get("heads") or {}):
                leaks.append("removed member's PONG names G")
            blocker = name in ("admin", "other_device")
            from_dave = f.get("from") == s.users["dave"] or f.get("userId") == s.users["dave"]
            if (
                blocker
                and chat == s.direct_blocked
                and kind in ("MESSAGE", "TYPING", "RECEIPT")
                and from_dave
            ):
                leaks.append(f"the blocker got {kind} from the blocked user")
            if blocker and kind == "TO_DEVICE" and from_dave:
                leaks.append("the blocker got key material from the blocked user")
            if name in ("stranger", "removed") and kind == "TO_DEVICE":
                leaks.append(f"{name} got key material")
            if name == "blocked" and kind == "PRESENCE" and f.get("userId") == s.users["alice"]:
                leaks.append("the blocked user got its blocker's presence")
            # Their "createChat (group with alice)" made them share a group with alice alone.
            shares_with = (s.actors[name].user, s.users["alice"])
            if (
                kind == "DEVICES_CHANGED"
                and name in ("stranger", "removed")
                and f["userId"] not in shares_with
            ):
                leaks.append(f"{name} was told of {f['userId']}'s devices")
            if blocker and kind == "DEVICES_CHANGED" and from_dave:
                leaks.append("the blocker was told of the blocked user's devices")
    return leaks
