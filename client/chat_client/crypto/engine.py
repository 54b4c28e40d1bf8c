"""A device's end-to-end encryption, without I/O: what to send so that a chat's members can read a
message, and what a received message or to-device payload says. The client does the talking
(queryDevices, claimKeys, sendToDevice, send); this decides and keeps state in the DeviceStore.

To send into a chat: `outbound(chat, devices)` picks (or rotates to) this device's Megolm session;
`missing_sessions` says which devices need a claimed prekey first; `room_keys` makes the Olm
to-device messages for the devices that lack the session's key; `encrypt` makes the MESSAGE
ciphertext. To receive: `receive_to_device` takes a room key; `decrypt` opens a MESSAGE.

A to-device payload names the sender's curve25519 key: the receiver checks that key against the
device list of the `from` / `fromDevice` the server put on the frame. It is packed in binary
(version, Olm message type, the 32-byte key, the Olm message): as JSON with base64 inside, each
stored message came to just over 1 KB, which doubles its DynamoDB write units.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from chat_client.crypto.megolm import GroupSessions, Opened, Outbound
from chat_client.crypto.olm_device import OlmCiphertext, OlmDevice, OlmError, unpadded_b64decode
from chat_client.crypto.store import DeviceStore
from chat_client.crypto.trust import TrustStore


@dataclass(frozen=True)
class PeerDevice:
    user_id: str
    device_id: str
    identity_key: str  # curve25519

    @property
    def ref(self) -> str:
        return f"{self.user_id}|{self.device_id}"

    @property
    def holder(self) -> str:
        """Who holds a session key: the device under this identity key (a device that came back
        with another key is another holder: it left, and the new one lacks the key)."""
        return f"{self.ref}|{self.identity_key}"


class E2EEngine:
    def __init__(self, store: DeviceStore) -> None:
        self.olm = OlmDevice(store)
        self.groups = GroupSessions(self.olm.extra.get("groups", {}), store.pickle_key)
        self.trust = TrustStore(self.olm.extra.setdefault("trust", {}))

    def save(self) -> None:
        self.olm.extra["groups"] = self.groups.state()
        self.olm.save()

    # --- sending ----------------------------------------------------------------------------------

    def outbound(self, chat_id: str, devices: list[PeerDevice]) -> Outbound:
        """This device's session for the chat's next message: rotated when a device that had the
        key is no longer among `devices` (a member or device left)."""
        current = self.groups.outbound.get(chat_id)
        holders = {d.holder for d in devices}
        left = current is not None and bool(current.shared_with - holders)
        return self.groups.outbound_for(chat_id, len(devices) + 1, left)

    def missing_sessions(self, devices: list[PeerDevice]) -> list[PeerDevice]:
        """The devices this one has no Olm session with: claim a prekey of each before room_keys."""
        return [d for d in devices if not self.olm.sessions.get(d.identity_key)]

    def room_keys(
        self, chat_id: str, outbound: Outbound, devices: list[PeerDevice], prekeys: dict[str, str | None]
    ) -> list[tuple[str, str, bytes]]:
        """(userId, deviceId, to-device ciphertext) handing the session's key to every device of
        `devices` that lacks it. `prekeys`: PeerDevice.ref -> the claimed one-time (or signed)
        prekey for those without a session. Devices with neither are skipped (they read nothing
        of this session: say so to the user)."""
        key = self.groups.room_key(chat_id, outbound)
        out: list[tuple[str, str, bytes]] = []
        for device in devices:
            if device.holder in outbound.shared_with:
                continue
            try:
                message = self.olm.encrypt(device.identity_key, prekeys.get(device.ref), key, save=False)
            except OlmError:
                continue
            out.append((device.user_id, device.device_id, pack_to_device(self.olm.identity_key, message)))
            outbound.shared_with.add(device.holder)
        if out:
            self.save()
        return out

    def encrypt(self, chat_id: str, outbound: Outbound, content: dict[str, Any]) -> bytes:
        ciphertext = self.groups.encrypt(chat_id, outbound, content)
        self.save()
        return ciphertext

    # --- receiving --------------------------------------------------------------------------------

    def receive_to_device(self, sender: str, sender_device: str, sender_key: str, payload: bytes) -> bool:
        """Take a to-device payload from (sender, sender_device), whose curve25519 key the caller
        has checked to be `sender_key`. True when it brought a room key now kept."""
        try:
            named_key, message = unpack_to_device(payload)
            if named_key != sender_key:
                return False
            body = json.loads(self.olm.decrypt(sender_key, message))
        except (ValueError, KeyError, TypeError, OlmError):
            return False
        kept = body.get("type") == "room_key" and self.groups.add_room_key(
            body, sender, sender_device, sender_key
        )
        self.save()
        return kept

    def decrypt(self, chat_id: str, sender: str, sender_device: str, ciphertext: bytes) -> Opened:
        """A MESSAGE opened; PendingKey or DecryptionFailed (chat_client.crypto.megolm)."""
        opened = self.groups.decrypt(chat_id, sender, sender_device, ciphertext)
        self.save()
        return opened


TO_DEVICE_FORMAT = 1
KEY_BYTES = 32


def pack_to_device(sender_key: str, message: OlmCiphertext) -> bytes:
    return bytes([TO_DEVICE_FORMAT, message.message_type]) + unpadded_b64decode(sender_key) + message.body


def unpack_to_device(payload: bytes) -> tuple[str, OlmCiphertext]:
    """(the sender's curve25519 key, unpadded base64 as vodozemac writes it; the Olm message)."""
    if len(payload) <= 2 + KEY_BYTES or payload[0] != TO_DEVICE_FORMAT:
        raise ValueError("not a to-device payload of this format")
    key = base64.b64encode(payload[2 : 2 + KEY_BYTES]).decode().rstrip("=")
    return key, OlmCiphertext(payload[1], payload[2 + KEY_BYTES :])
