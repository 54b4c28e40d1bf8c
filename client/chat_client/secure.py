"""Encrypted chat over a ChatClient (docs/E2E.md): `send_text` encrypts for every device of the
chat's members, received messages come out decrypted with their state. The first cut of the
SDK's end-to-end encryption: text only; media, trust and the CLI follow.

Sending: the chat's members (getMembers), their devices (queryDevices), a claimed prekey for each
device with no Olm session yet (claimKeys), the session key to every device that lacks it
(sendToDevice), then the Megolm ciphertext (send). Receiving: each TO_DEVICE is checked against
the sender's device list (its curve25519 key must be the one the frame's device published), its
room key kept, then acknowledged; each MESSAGE is decrypted, or held as pending until its key
arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from chat_client.client import ChatClient
from chat_client.crypto.engine import E2EEngine, PeerDevice
from chat_client.crypto.megolm import DecryptionFailed, PendingKey
from chat_client.crypto.store import DeviceStore
from chat_client.models import Ack, Message, ToDevice

BATCH = 100  # users per queryDevices, devices per claimKeys


@dataclass(frozen=True)
class Decrypted:
    message: Message
    state: Literal["ok", "pending", "failed"]
    content: dict[str, Any] | None = None
    reason: str | None = None

    @property
    def text(self) -> str | None:
        body = (self.content or {}).get("body")
        return body if isinstance(body, str) else None


class SecureChat:
    def __init__(self, client: ChatClient, store: DeviceStore) -> None:
        self.client = client
        self.engine = E2EEngine(store)
        self.messages: asyncio.Queue[Decrypted] = asyncio.Queue()
        self._pending: list[Message] = []
        self._identity_keys: dict[tuple[str, str], str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Publish this device's keys and start taking key material and messages."""
        frame = self.engine.olm.publish_keys_frame()
        await self.client.publish_keys(
            frame["identityKey"],
            frame["signedPreKey"],
            frame["oneTimePreKeys"],
            signing_key=frame["signingKey"],
        )
        self._tasks = [asyncio.create_task(self._take_keys()), asyncio.create_task(self._take_messages())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- sending ----------------------------------------------------------------------------------

    async def send_text(self, chat_id: str, text: str) -> Ack:
        devices = await self._chat_devices(chat_id)
        outbound = self.engine.outbound(chat_id, devices)
        missing = self.engine.missing_sessions(devices)
        prekeys = await self._claim(missing)
        to_device = self.engine.room_keys(chat_id, outbound, devices, prekeys)
        if to_device:
            await self.client.send_to_device(to_device, chat_id=chat_id)
        return await self.client.send(
            chat_id, self.engine.encrypt(chat_id, outbound, {"type": "text", "body": text})
        )

    async def _chat_devices(self, chat_id: str) -> list[PeerDevice]:
        """Every device of every member but this one."""
        members: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.client.get_members(chat_id, cursor)
            members += [m["userId"] for m in page["members"]]
            cursor = page.get("next")
            if not cursor:
                break
        own = (self.client.user_id, self.client.device_id)
        return [d for d in await self._devices_of(members) if (d.user_id, d.device_id) != own]

    async def _devices_of(self, users: list[str]) -> list[PeerDevice]:
        found: list[PeerDevice] = []
        for start in range(0, len(users), BATCH):
            answer = await self.client.request(
                {"action": "queryDevices", "userIds": users[start : start + BATCH]}
            )
            for d in answer["devices"]:
                device = PeerDevice(d["userId"], d["deviceId"], d["identityKey"])
                self._identity_keys[(device.user_id, device.device_id)] = device.identity_key
                found.append(device)
        return found

    async def _claim(self, devices: list[PeerDevice]) -> dict[str, str | None]:
        prekeys: dict[str, str | None] = {}
        for start in range(0, len(devices), BATCH):
            chunk = devices[start : start + BATCH]
            refs = [{"userId": d.user_id, "deviceId": d.device_id} for d in chunk]
            answer = await self.client.request({"action": "claimKeys", "devices": refs})
            claimed = {(k["userId"], k["deviceId"]): k["oneTimePreKey"] for k in answer["keys"]}
            for d in chunk:
                otk = claimed.get((d.user_id, d.device_id))
                prekeys[d.ref] = otk["publicKey"] if otk else None
        return prekeys

    # --- receiving --------------------------------------------------------------------------------

    async def _take_keys(self) -> None:
        while True:
            message: ToDevice = await self.client.to_device.get()
            key = await self._identity_key(message.sender, message.sender_device)
            if key is not None and self.engine.receive_to_device(
                message.sender, message.sender_device, key, message.ciphertext
            ):
                self._retry_pending()
            await self.client.ack_to_device([message.id])

    async def _identity_key(self, user: str, device: str) -> str | None:
        if (user, device) not in self._identity_keys:
            await self._devices_of([user])
        return self._identity_keys.get((user, device))

    async def _take_messages(self) -> None:
        while True:
            self._open(await self.client.messages.get())

    def _open(self, message: Message) -> bool:
        """Decrypt and hand over; False (and held) while its key is pending."""
        if message.sender == "system":
            self.messages.put_nowait(Decrypted(message, "ok", {"type": "system"}))
            return True
        try:
            content = self.engine.decrypt(
                message.chat_id, message.sender, message.sender_device or "", message.ciphertext
            )
        except PendingKey:
            # Said at once (the application may show a placeholder), and again, decrypted, once
            # the key arrives: the same serverMsgId twice, pending then ok.
            if message not in self._pending:
                self._pending.append(message)
                self.messages.put_nowait(Decrypted(message, "pending", reason="waiting for the session key"))
            return False
        except DecryptionFailed as exc:
            self.messages.put_nowait(Decrypted(message, "failed", reason=str(exc)))
            return True
        self.messages.put_nowait(Decrypted(message, "ok", content))
        return True

    def _retry_pending(self) -> None:
        # Still held while retried: one that stays pending is neither announced nor held twice.
        for message in list(self._pending):
            if self._open(message):
                self._pending.remove(message)

    async def next_message(self, timeout: float = 10.0) -> Decrypted:
        return await asyncio.wait_for(self.messages.get(), timeout)
