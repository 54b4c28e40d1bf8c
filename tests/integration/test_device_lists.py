"""Device lists over the local stack, on raw WebSockets (every frame a device receives is seen):
getChatDevices pages a chat's devices, and DEVICES_CHANGED tells those who share a chat with a
user when it adds a device or changes a device's identity key, and nothing on a top-up."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from chat_client.tokens import mint_token
from local_stack.child import RunningStack

ANSWER_TIMEOUT_S = 15.0
QUIET_S = 1.5  # how long "nothing is pushed" is watched for


def key(text: str) -> str:
    return base64.b64encode(text.encode().ljust(32, b".")).decode()


@dataclass
class Device:
    user: str
    device: str
    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for text in self.ws:
            self.frames.append(json.loads(text))
            self.arrived.set()

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], start: int = 0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + ANSWER_TIMEOUT_S
        while True:
            found = [f for f in self.frames[start:] if match(f)]
            if found:
                return found[0]
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), end - loop.time())

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        start = len(self.frames)
        await self.ws.send(json.dumps(frame))
        return await self.wait_for(lambda f: f.get("requestId") == frame["requestId"], start)

    async def publish(self, identity: str, key_ids: range = range(1, 3)) -> None:
        start = len(self.frames)
        frame = {
            "action": "publishKeys",
            "identityKey": key(identity),
            "signingKey": key(f"signing-{identity}"),
            "signedPreKey": {"keyId": 1, "publicKey": key("spk"), "signature": key("sig")},
            "oneTimePreKeys": [{"keyId": k, "publicKey": key(f"otk-{k}")} for k in key_ids],
        }
        await self.ws.send(json.dumps(frame))
        answer = await self.wait_for(lambda f: f.get("type") in ("KEYS_PUBLISHED", "ERROR"), start)
        assert answer["type"] == "KEYS_PUBLISHED", answer

    def changes(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "DEVICES_CHANGED"]

    async def next_change(self, seen: int) -> dict[str, Any]:
        """The DEVICES_CHANGED after the first `seen` of them."""
        loop = asyncio.get_running_loop()
        end = loop.time() + ANSWER_TIMEOUT_S
        while len(self.changes()) <= seen:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), end - loop.time())
        return self.changes()[seen]


@dataclass
class Devices:
    stack: RunningStack
    opened: list[Device] = field(default_factory=list)

    async def connect(self, user: str, device: str = "d1") -> Device:
        token = mint_token(user, device, secret=self.stack.secret)
        ws = await websockets.connect(f"{self.stack.url}?token={token}", max_size=None, compression=None)
        opened = Device(user, device, ws)
        opened.reader = asyncio.create_task(opened.read())
        self.opened.append(opened)
        return opened

    async def close(self) -> None:
        for device in self.opened:
            await device.ws.close()


async def with_devices(stack: RunningStack, scenario: Callable[[Devices], Any]) -> None:
    devices = Devices(stack)
    try:
        await scenario(devices)
    finally:
        await devices.close()


async def test_bob_is_told_when_alice_adds_a_device_or_changes_its_key_and_not_on_a_top_up(
    stack: RunningStack, new_user: Callable[[str], str]
) -> None:
    async def scenario(devices: Devices) -> None:
        # Given alice (phone) and bob in a direct chat, and mallory, who shares nothing with them
        alice_id, bob_id, mallory_id = new_user("alice"), new_user("bob"), new_user("mallory")
        phone, bob, mallory = (
            await devices.connect(alice_id),
            await devices.connect(bob_id),
            await devices.connect(mallory_id),
        )
        chat = await phone.request(
            {"action": "createChat", "requestId": "c", "kind": "direct", "members": [bob_id]}
        )
        await phone.publish("phone-1")
        added = await bob.next_change(0)
        assert added == {"type": "DEVICES_CHANGED", "userId": alice_id, "deviceId": "d1", "change": "added"}
        # When alice's new laptop publishes its keys
        laptop = await devices.connect(alice_id, "d_laptop")
        await laptop.publish("laptop-1")
        # Then bob and alice's phone are told a device was added
        laptop_added = {**added, "deviceId": "d_laptop"}
        assert await bob.next_change(1) == laptop_added
        assert await phone.next_change(0) == laptop_added
        # When the laptop tops up its one-time prekeys with the same identity key
        await laptop.publish("laptop-1", range(3, 10))
        await asyncio.sleep(QUIET_S)
        # Then nobody is told
        assert len(bob.changes()) == 2 and len(phone.changes()) == 1
        # When the laptop is reinstalled: a new identity key
        await laptop.publish("laptop-2")
        # Then bob is told its keys changed
        assert await bob.next_change(2) == {**laptop_added, "change": "keysChanged"}
        # And getChatDevices shows him both of alice's devices with the laptop's new key
        listed = await bob.request({"action": "getChatDevices", "requestId": "g", "chatId": chat["chatId"]})
        assert listed["next"] is None
        assert {d["deviceId"]: d["identityKey"] for d in listed["devices"]} == {
            "d1": key("phone-1"),
            "d_laptop": key("laptop-2"),
        }
        assert all(d["signingKey"] and d["userId"] == alice_id for d in listed["devices"])
        # And mallory heard nothing of it, and may not read the chat's devices
        assert mallory.changes() == []
        refused = await mallory.request(
            {"action": "getChatDevices", "requestId": "m", "chatId": chat["chatId"]}
        )
        assert (refused["type"], refused["code"]) == ("ERROR", "FORBIDDEN")

    await with_devices(stack, scenario)


async def test_get_chat_devices_pages_a_large_group_each_device_once(
    stack: RunningStack, new_user: Callable[[str], str]
) -> None:
    async def scenario(devices: Devices) -> None:
        # Given a group of 300: alice, 298 members without keys who sort after her (250 members'
        # devices make a page), and bob, who sorts after them all; alice and bob on two devices each
        alice_id, bob_id = new_user("alice"), new_user("bob")
        assert alice_id < "az" < bob_id
        others = [f"az_{alice_id}_{n:03d}" for n in range(298)]
        alice = await devices.connect(alice_id)
        group = await alice.request(
            {"action": "createChat", "requestId": "c", "kind": "group", "members": [*others, bob_id]}
        )
        assert group["type"] == "CHAT" and not group.get("pendingMembers"), group
        for user, device in ((alice_id, "d1"), (alice_id, "d2"), (bob_id, "d1"), (bob_id, "d2")):
            owner = alice if (user, device) == (alice_id, "d1") else await devices.connect(user, device)
            await owner.publish(f"{user}-{device}")
        # When alice pages through the group's devices
        pages = [
            await alice.request({"action": "getChatDevices", "requestId": "p0", "chatId": group["chatId"]})
        ]
        while pages[-1]["next"] is not None:
            assert len(pages) < 10
            cursor = pages[-1]["next"]
            pages.append(
                await alice.request(
                    {
                        "action": "getChatDevices",
                        "requestId": f"p{len(pages)}",
                        "chatId": group["chatId"],
                        "cursor": cursor,
                    }
                )
            )
        # Then two pages: her own devices on the first, bob's on the second, each once
        assert [p["type"] for p in pages] == ["CHAT_DEVICES"] * 2
        assert [[(d["userId"], d["deviceId"]) for d in p["devices"]] for p in pages] == [
            [(alice_id, "d1"), (alice_id, "d2")],
            [(bob_id, "d1"), (bob_id, "d2")],
        ]
        assert pages[1]["devices"][0]["identityKey"] == key(f"{bob_id}-d1")

    await with_devices(stack, scenario)
