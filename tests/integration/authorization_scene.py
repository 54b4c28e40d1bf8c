"""The authorization matrix's scene (test_authorization_matrix.py): six actors on raw WebSockets,
each frame they receive kept, and the chats between them. Group G of alice (admin), bob, dave and
carol, where carol was removed after message 1; direct chats alice-bob (both wrote) and alice-dave
(alice blocked dave); mallory knows nobody.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from chat_client.media import post_form
from chat_client.tokens import mint_token
from local_stack.child import RunningStack

ANSWER_TIMEOUT_S = 15.0
SILENT_WAIT_S = 1.5  # how long a fire-and-forget frame is given to be refused
KEY = base64.b64encode(b"k" * 32).decode()


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


@asynccontextmanager
async def open_scene(stack: RunningStack, new_user: Callable[[str], str]) -> AsyncIterator[Scene]:
    """The scene, built over the protocol; every actor's socket is closed on the way out."""
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
            assert (await actor.request(publish_keys()))["type"] == "KEYS_PUBLISHED"
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


def publish_keys() -> dict[str, Any]:
    return {
        "action": "publishKeys",
        "identityKey": KEY,
        "signedPreKey": {"keyId": 1, "publicKey": KEY, "signature": KEY},
        "oneTimePreKeys": [{"keyId": i, "publicKey": KEY} for i in range(1, 4)],
    }
