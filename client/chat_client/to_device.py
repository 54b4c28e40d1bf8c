"""The per-device channel of the SDK (docs/PROTOCOL.md, To-device messages): sending key material
to other devices exactly once, and receiving it.

Received TO_DEVICE frames land on `ChatClient.to_device`, each id once however often the server
pushes or replays it; the application (the crypto layer) acknowledges them with `ack_to_device`
once it has kept what they carry, and only then does the server forget them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from chat_client.models import ChatConnectionError, ToDevice, parse_frame

if TYPE_CHECKING:
    from chat_client.connection import Link

MESSAGES_PER_FRAME = 100  # the server's limit per sendToDevice / ackToDevice
# The server stores a sendToDevice in transactions of 99 messages and its txnId record: frames of
# 99 are one transaction each. And a frame stays well inside API Gateway's 128 KiB message.
MESSAGES_PER_SEND_FRAME = 99
SEND_FRAME_BYTES = 120 * 1024
SEEN_IDS_KEPT = 10_000


class ToDeviceChannel:
    """Mixed into ChatClient, which provides `request` and `_wait_connected`."""

    to_device: asyncio.Queue[ToDevice]
    device_changes: asyncio.Queue[dict[str, Any]]  # DEVICES_CHANGED frames: re-read that user's devices
    _to_device_seen: OrderedDict[str, None]

    def _init_to_device(self) -> None:
        self.to_device = asyncio.Queue()
        self.device_changes = asyncio.Queue()
        self._to_device_seen = OrderedDict()

    def _on_to_device(self, frame: dict[str, Any]) -> None:
        message = parse_frame(ToDevice.from_frame, frame)
        if message is None or message.id in self._to_device_seen:
            return  # malformed; or pushed and replayed, or replayed again before the ack: once is enough
        self._to_device_seen[message.id] = None
        while len(self._to_device_seen) > SEEN_IDS_KEPT:
            self._to_device_seen.popitem(last=False)
        self.to_device.put_nowait(message)

    async def send_to_device(
        self,
        messages: Sequence[tuple[str, str, bytes]],
        chat_id: str | None = None,
        deadline: float = 60.0,
    ) -> int:
        """Send (userId, deviceId, ciphertext) to each device: frames of up to 99 (one server
        transaction each) that stay within API Gateway's message size, each under its own txnId,
        re-sent with the same txnId after a lost connection (stored once). `chat_id` names the
        chat the recipients are members of (needed unless they are this user's devices or the
        other side of a direct chat). Returns how many the server took."""
        count = 0
        end = asyncio.get_running_loop().time() + deadline
        entries = [
            {"userId": u, "deviceId": d, "ciphertext": base64.b64encode(c).decode()} for u, d, c in messages
        ]
        for chunk in _frames_of(entries):
            frame: dict[str, Any] = {"action": "sendToDevice", "txnId": uuid.uuid4().hex, "messages": chunk}
            if chat_id is not None:
                frame["chatId"] = chat_id
            count += int((await self._until_answered(frame, end))["count"])
        return count

    async def ack_to_device(self, ids: Iterable[str], deadline: float = 30.0) -> None:
        """The server may forget these: what they carried is kept."""
        wanted = list(dict.fromkeys(ids))
        end = asyncio.get_running_loop().time() + deadline
        for start in range(0, len(wanted), MESSAGES_PER_FRAME):
            await self._until_answered(
                {"action": "ackToDevice", "ids": wanted[start : start + MESSAGES_PER_FRAME]}, end
            )

    async def _until_answered(self, frame: dict[str, Any], end: float) -> dict[str, Any]:
        """A request re-sent (same frame, so the same txnId) after each lost connection."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._wait_connected(end)
                return await self.request(frame, timeout=max(end - loop.time(), 0.1))
            except ChatConnectionError:
                if loop.time() >= end:
                    raise
                await asyncio.sleep(0.05)

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]: ...

        async def _wait_connected(self, end: float | None) -> Link: ...


def _frames_of(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    frames: list[list[dict[str, str]]] = [[]]
    size = 0
    for entry in entries:
        entry_bytes = len(json.dumps(entry)) + 2
        if frames[-1] and (
            len(frames[-1]) == MESSAGES_PER_SEND_FRAME or size + entry_bytes > SEND_FRAME_BYTES
        ):
            frames.append([])
            size = 0
        frames[-1].append(entry)
        size += entry_bytes
    return [f for f in frames if f]
