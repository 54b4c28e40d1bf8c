"""Who to encrypt for, and whose key material to believe (docs/E2E.md): the devices of a chat's
members, read from the server and checked against what this device already knows of them
(chat_client/crypto/trust.py).

A chat's device list is kept until the chat's membership changes (a system message, or a removal
this device made), a member's devices change (DEVICES_CHANGED) or CACHE_S pass: sending then costs
no extra round trip, and a removed member or device is left out of the next message's key (the
sender's session rotates: E2EEngine.outbound).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chat_client.client import ChatClient
from chat_client.crypto.engine import PeerDevice
from chat_client.crypto.olm_device import signed_prekey
from chat_client.crypto.trust import DeviceNotice, TrustStore

BATCH = 100  # users per queryDevices, devices per claimKeys
CACHE_S = 300.0


@dataclass(frozen=True)
class _ChatDevices:
    read_at: float
    devices: list[PeerDevice]


class DeviceDirectory:
    def __init__(self, client: ChatClient, trust: TrustStore, save: Callable[[], None]) -> None:
        self.client = client
        self.trust = trust
        self._save = save
        self.notices: asyncio.Queue[DeviceNotice] = asyncio.Queue()
        self._chats: dict[str, _ChatDevices] = {}
        self._signed_prekeys: dict[str, str | None] = {}  # by PeerDevice.ref, signature checked

    async def chat_devices(self, chat_id: str) -> list[PeerDevice]:
        """Every device of every member of the chat but this one (getChatDevices, paged)."""
        cached = self._chats.get(chat_id)
        if cached is None or time.monotonic() - cached.read_at > CACHE_S:
            listed: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page = await self.client.request(
                    {"action": "getChatDevices", "chatId": chat_id, "cursor": cursor}
                )
                listed += page["devices"]
                cursor = page.get("next")
                if not cursor:
                    break
            cached = _ChatDevices(time.monotonic(), self._take(listed))
            self._chats[chat_id] = cached
        own = (self.client.user_id, self.client.device_id)
        return [d for d in cached.devices if (d.user_id, d.device_id) != own]

    def forget_chat(self, chat_id: str) -> None:
        """The chat's membership changed: read it again before the next message."""
        self._chats.pop(chat_id, None)

    async def user_changed(self, user_id: str) -> None:
        """A user's devices changed (DEVICES_CHANGED): read them now (the notices come out), and
        every chat's devices again before its next message (the user may be a member of any that
        had none of theirs listed)."""
        self._chats.clear()
        await self.devices_of([user_id])

    async def identity_key(self, user_id: str, device_id: str) -> str | None:
        """The curve25519 key this device accepts for (user, device): asked of the server when the
        device is new to us; None for a device unknown there, or whose changed key is not accepted."""
        key = self.trust.key_of(user_id, device_id)
        if key is None:
            await self.devices_of([user_id])
            key = self.trust.key_of(user_id, device_id)
        return key

    async def devices_of(self, users: list[str]) -> list[PeerDevice]:
        """The devices of these users (queryDevices), each user's list checked against trust."""
        found: list[PeerDevice] = []
        for start in range(0, len(users), BATCH):
            answer = await self.client.request(
                {"action": "queryDevices", "userIds": users[start : start + BATCH]}
            )
            found += self._take(answer["devices"])
        return found

    def _take(self, listed: list[dict[str, Any]]) -> list[PeerDevice]:
        """Devices as the server listed them, each user's checked against what trust knows."""
        devices = [PeerDevice(d["userId"], d["deviceId"], d["identityKey"]) for d in listed]
        by_user: dict[str, dict[str, str]] = {}
        for entry, device in zip(listed, devices, strict=True):
            by_user.setdefault(device.user_id, {})[device.device_id] = device.identity_key
            if "signedPreKey" in entry:
                self._signed_prekeys[device.ref] = signed_prekey(entry)
        for user, keys in by_user.items():
            for notice in self.trust.observe(user, keys):
                self.notices.put_nowait(notice)
        self._save()
        return devices

    async def claim(self, devices: list[PeerDevice]) -> dict[str, str | None]:
        """A one-time prekey (or the signed prekey when none is left) per device, by PeerDevice.ref."""
        prekeys: dict[str, str | None] = {}
        for start in range(0, len(devices), BATCH):
            chunk = devices[start : start + BATCH]
            refs = [{"userId": d.user_id, "deviceId": d.device_id} for d in chunk]
            answer = await self.client.request({"action": "claimKeys", "devices": refs})
            claimed = {(k["userId"], k["deviceId"]): k for k in answer["keys"]}
            for d in chunk:
                otk = (claimed.get((d.user_id, d.device_id)) or {}).get("oneTimePreKey")
                prekeys[d.ref] = otk["publicKey"] if otk else None
        # None left to claim: the signed prekey (queryDevices lists it, getChatDevices does not).
        unlisted = sorted(
            {d.user_id for d in devices if prekeys[d.ref] is None and d.ref not in self._signed_prekeys}
        )
        if unlisted:
            await self.devices_of(unlisted)
        for d in devices:
            prekeys[d.ref] = prekeys[d.ref] or self._signed_prekeys.get(d.ref)
        return prekeys
