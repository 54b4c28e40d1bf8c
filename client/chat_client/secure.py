"""End-to-end encrypted chat over a ChatClient (docs/E2E.md): `send_text` and `send_media` encrypt
for every device of the chat's members; received messages come out decrypted, with their state.

Sending: the chat's devices (DeviceDirectory, cached until membership or devices change), a
claimed prekey for each device with no Olm session yet (claimKeys), the Megolm session key to
every device that lacks it (sendToDevice), then the Megolm ciphertext (send). A verified user
whose device changed its identity key makes the send refuse (IdentityChanged) before anything
goes out. Receiving: each TO_DEVICE is checked against the sender's device as this device knows
it, its room key kept, then acknowledged; each MESSAGE is decrypted, or held as pending until its
key arrives. This device's one-time keys are topped up as sessions use them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chat_client import media
from chat_client.client import ChatClient
from chat_client.crypto.attachments import AttachmentKey, decrypt_attachment, encrypt_attachment
from chat_client.crypto.engine import E2EEngine
from chat_client.crypto.megolm import DecryptionFailed, PendingKey
from chat_client.crypto.olm_device import ONE_TIME_KEYS_TARGET
from chat_client.crypto.store import DeviceStore
from chat_client.crypto.trust import DeviceNotice, safety_number
from chat_client.device_directory import DeviceDirectory
from chat_client.models import Ack, Message, ToDevice

# What the server is told of an upload: nothing of the file's real type (that is in the message).
OPAQUE_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Decrypted:
    message: Message
    # ok; pending (its key may still come); no_key (sent before this device existed: its key was
    # never meant for it, as WhatsApp's new devices have no history); failed (with the reason)
    state: Literal["ok", "pending", "no_key", "failed"]
    content: dict[str, Any] | None = None
    reason: str | None = None
    sender_key: str | None = None  # the sending device's curve25519 key, as its session came
    verified: bool = False  # the sender is verified and the key is the one verified

    @property
    def text(self) -> str | None:
        body = (self.content or {}).get("body")
        return body if isinstance(body, str) else None

    @property
    def is_file(self) -> bool:
        return (self.content or {}).get("type") == "file"


class SecureChat:
    def __init__(self, client: ChatClient, store: DeviceStore) -> None:
        self.client = client
        self.engine = E2EEngine(store)
        self.devices = DeviceDirectory(client, self.engine.trust, self.engine.save)
        self.messages: asyncio.Queue[Decrypted] = asyncio.Queue()
        self._pending: list[Message] = []
        self._one_time_keys = 0  # unused on the server, as last said, less sessions begun since
        self._sessions_counted = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._born_at: dict[str, int] = {}

    @property
    def notices(self) -> asyncio.Queue[DeviceNotice]:
        """A device new to a known user, or a known device whose identity key changed."""
        return self.devices.notices

    async def start(self) -> None:
        """Publish this device's keys (topped up) and start taking key material and messages."""
        extra = self.engine.olm.extra
        if "bornAt" not in extra:
            # Each chat's head when this device first started (its ChatClient has synced): what
            # came before was encrypted before the device had keys, so no key will ever come.
            extra["bornAt"] = dict(self.client.heads)
            self.engine.save()
        self._born_at = dict(extra["bornAt"])
        await self._publish(0, rotate_fallback=False)
        await self._top_up(rotate_fallback=False)
        self._tasks = [
            asyncio.create_task(self._take_keys()),
            asyncio.create_task(self._take_messages()),
            asyncio.create_task(self._take_device_changes()),
        ]

    async def __aenter__(self) -> SecureChat:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- sending ----------------------------------------------------------------------------------

    async def send_text(self, chat_id: str, text: str) -> Ack:
        return await self._send(chat_id, {"type": "text", "body": text})

    async def send_media(
        self, chat_id: str, path: str | Path, content_type: str, caption: str | None = None
    ) -> Ack:
        """Encrypt a file (AES-256-CTR, a key of its own), upload the ciphertext with the presigned
        POST, and send a message carrying its key, hash, name and type, encrypted like any other."""
        path = Path(path)
        plaintext = path.read_bytes()
        ciphertext, key = encrypt_attachment(plaintext)
        upload = await self.client.request(
            {
                "action": "mediaUpload",
                "chatId": chat_id,
                "contentType": OPAQUE_CONTENT_TYPE,
                "size": len(ciphertext),
            }
        )
        await media.upload(upload["url"], upload["fields"], ciphertext)
        content: dict[str, Any] = {
            "type": "file",
            "mediaId": upload["mediaId"],
            "name": path.name,
            "contentType": content_type,
            "size": len(plaintext),
            "file": key.to_json(),
        }
        if caption is not None:
            content["body"] = caption
        return await self._send(chat_id, content, [upload["mediaId"]])

    async def _send(self, chat_id: str, content: dict[str, Any], media_ids: Sequence[str] = ()) -> Ack:
        devices = await self.devices.chat_devices(chat_id)
        for user in sorted({d.user_id for d in devices}):
            self.engine.trust.check_sendable(user)
        outbound = self.engine.outbound(chat_id, devices)
        prekeys = await self.devices.claim(self.engine.missing_sessions(devices))
        to_device = self.engine.room_keys(chat_id, outbound, devices, prekeys)
        if to_device:
            await self.client.send_to_device(to_device, chat_id=chat_id)
        return await self.client.send(chat_id, self.engine.encrypt(chat_id, outbound, content), media_ids)

    async def remove_members(self, chat_id: str, members: Sequence[str]) -> dict[str, Any]:
        """removeMembers, and this device's next message in the chat goes under a new session."""
        answer = await self.client.remove_members(chat_id, members)
        self.devices.forget_chat(chat_id)
        return answer

    # --- files ------------------------------------------------------------------------------------

    async def download(self, received: Decrypted) -> bytes:
        """A received file's bytes: downloaded, checked against the hash the sender encrypted (a
        changed byte raises AttachmentCorrupt), decrypted."""
        content = received.content or {}
        if not received.is_file:
            raise ValueError("not a file message")
        answer = await self.client.request(
            {"action": "mediaDownload", "chatId": received.message.chat_id, "mediaId": content["mediaId"]}
        )
        return decrypt_attachment(
            await media.download(answer["url"]), AttachmentKey.from_json(content["file"])
        )

    # --- trust ------------------------------------------------------------------------------------

    async def safety_number(self, user_id: str) -> str:
        """The 60-digit number both users see alike while neither's devices change: compared out
        of band (read aloud, or on each other's screens), then `verify`."""
        mine, theirs = self.client.user_id or "", user_id
        devices = await self.devices.devices_of(sorted({mine, theirs}))
        keys = {u: {d.device_id: d.identity_key for d in devices if d.user_id == u} for u in (mine, theirs)}
        return safety_number(mine, keys[mine], theirs, keys[theirs])

    def verify(self, user_id: str) -> None:
        self.engine.trust.verify(user_id)
        self.engine.save()

    def accept(self, user_id: str) -> None:
        """Accept a verified user's changed identity keys (sending to them resumes, unverified)."""
        self.engine.trust.accept(user_id)
        self.engine.save()

    # --- receiving --------------------------------------------------------------------------------

    async def _take_keys(self) -> None:
        while True:
            message: ToDevice = await self.client.to_device.get()
            key = await self.devices.identity_key(message.sender, message.sender_device)
            if key is not None and self.engine.receive_to_device(
                message.sender, message.sender_device, key, message.ciphertext
            ):
                self._retry_pending()
            await self.client.ack_to_device([message.id])
            await self._top_up(rotate_fallback=True)

    async def _take_device_changes(self) -> None:
        while True:
            change = await self.client.device_changes.get()
            await self.devices.user_changed(str(change.get("userId")))

    async def _take_messages(self) -> None:
        while True:
            self._open(await self.client.messages.get())

    def _open(self, message: Message) -> bool:
        """Decrypt and hand over; False (and held) while its key is pending."""
        if message.sender == "system":
            self.devices.forget_chat(message.chat_id)  # members came or went: read them again
            self.messages.put_nowait(Decrypted(message, "ok", {"type": "system"}))
            return True
        try:
            opened = self.engine.decrypt(
                message.chat_id, message.sender, message.sender_device or "", message.ciphertext
            )
        except PendingKey:
            if message.seq <= self._born_at.get(message.chat_id, 0):
                self.messages.put_nowait(
                    Decrypted(message, "no_key", reason="sent before this device existed: no key for it")
                )
                return True
            # Said at once (the application may show a placeholder), and again, decrypted, once
            # the key arrives: the same serverMsgId twice, pending then ok.
            if message not in self._pending:
                self._pending.append(message)
                self.messages.put_nowait(Decrypted(message, "pending", reason="waiting for the session key"))
            return False
        except DecryptionFailed as exc:
            self.messages.put_nowait(Decrypted(message, "failed", reason=str(exc)))
            return True
        trust = self.engine.trust
        verified = (
            trust.is_verified(message.sender)
            and trust.key_of(message.sender, message.sender_device or "") == opened.key.sender_key
        )
        self.messages.put_nowait(
            Decrypted(message, "ok", opened.content, None, opened.key.sender_key, verified)
        )
        return True

    def _retry_pending(self) -> None:
        # Still held while retried: one that stays pending is neither announced nor held twice.
        for message in list(self._pending):
            if self._open(message):
                self._pending.remove(message)

    async def next_message(self, timeout: float = 10.0) -> Decrypted:
        return await asyncio.wait_for(self.messages.get(), timeout)

    # --- this device's keys -----------------------------------------------------------------------

    async def _top_up(self, rotate_fallback: bool) -> None:
        """Publish new one-time keys when sessions begun with ours have used up half of them (each
        pre-key message used one); the fallback key rotates with them once sessions began."""
        started = self.engine.olm.inbound_sessions_started
        self._one_time_keys -= started - self._sessions_counted
        self._sessions_counted = started
        if self._one_time_keys < ONE_TIME_KEYS_TARGET // 2:
            await self._publish(ONE_TIME_KEYS_TARGET - max(self._one_time_keys, 0), rotate_fallback)

    async def _publish(self, one_time_keys: int, rotate_fallback: bool) -> None:
        frame = self.engine.olm.publish_keys_frame(one_time_keys, rotate_fallback)
        answer = await self.client.publish_keys(
            frame["identityKey"],
            frame["signedPreKey"],
            frame["oneTimePreKeys"],
            signing_key=frame["signingKey"],
        )
        self._one_time_keys = int(answer["oneTimePreKeys"])
