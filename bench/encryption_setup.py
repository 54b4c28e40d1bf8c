"""The encryption bench's cast and props: SDK devices (their E2EEngine over a DeviceStore in a
temporary directory), in-memory receivers (vodozemac accounts), the frames the SDK would put on
the wire, and a stopwatch."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vodozemac

from bench.report import percentiles
from chat_client.crypto.engine import E2EEngine, PeerDevice
from chat_client.crypto.store import DeviceStore, new_store_key
from chat_client.to_device import ToDeviceChannel
from chat_client.wire import encode_frame

# A typical text message: 100 characters.
TEXT = "On my way, running about ten minutes late; the train stopped outside the station. Order for me? -J x"
DEVICE_ID_CHARS = 12
ID_MAX_CHARS = 64  # models.common.Id


# --- the SDK's frames, as it would send them ----------------------------------------------------------


class FrameRecorder(ToDeviceChannel):
    """ChatClient's sendToDevice, with the frames kept (as the server would read them) instead of sent."""

    def __init__(self) -> None:
        self._init_to_device()
        self.frames: list[dict[str, Any]] = []

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        self.frames.append({**frame, "requestId": str(uuid.uuid4())})
        return {"count": len(frame["messages"])}

    async def _wait_connected(self, end: float) -> Any:
        return None


def to_device_frames(messages: list[tuple[str, str, bytes]], chat_id: str) -> list[dict[str, Any]]:
    recorder = FrameRecorder()
    asyncio.run(recorder.send_to_device(messages, chat_id=chat_id))
    return recorder.frames


def send_frame(chat_id: str, ciphertext: bytes) -> str:
    """The `send` frame ChatClient.send puts on the wire for this ciphertext."""
    return encode_frame(
        {
            "action": "send",
            "clientMsgId": str(uuid.uuid4()),
            "chatId": chat_id,
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "mediaIds": [],
        }
    )


# --- devices ------------------------------------------------------------------------------------------


@dataclass
class Device:
    """A device of the SDK: its engine over a DeviceStore in a temporary directory."""

    user_id: str
    device_id: str
    engine: E2EEngine

    @classmethod
    def create(cls, directory: Path, user_id: str | None = None) -> Device:
        user_id = user_id or str(uuid.uuid4())  # Cognito's `sub`
        device_id = uuid.uuid4().hex[:DEVICE_ID_CHARS]
        store = DeviceStore(directory, user_id, device_id, new_store_key()).open()
        return cls(user_id, device_id, E2EEngine(store))

    @property
    def peer(self) -> PeerDevice:
        return PeerDevice(self.user_id, self.device_id, self.engine.olm.identity_key)

    def one_time_key(self) -> str:
        frame = self.engine.olm.publish_keys_frame(1)
        return str(frame["oneTimePreKeys"][0]["publicKey"])

    def take(self, sender: Device, to_device: list[tuple[str, str, bytes]]) -> None:
        for user, device, payload in to_device:
            if (user, device) == (self.user_id, self.device_id):
                kept = self.engine.receive_to_device(
                    sender.user_id, sender.device_id, sender.engine.olm.identity_key, payload
                )
                assert kept, "the room key was not kept"


@dataclass
class Receiver:
    """A member device of the large group: a vodozemac account in memory, no store."""

    user_id: str
    device_id: str
    account: vodozemac.Account
    one_time_key: str

    @classmethod
    def create(cls) -> Receiver:
        account = vodozemac.Account()
        account.generate_one_time_keys(1)
        otk = next(iter(account.one_time_keys.values())).to_base64()
        account.mark_keys_as_published()
        return cls(str(uuid.uuid4()), uuid.uuid4().hex[:DEVICE_ID_CHARS], account, otk)

    @property
    def peer(self) -> PeerDevice:
        return PeerDevice(self.user_id, self.device_id, self.account.curve25519_key.to_base64())


class Stopwatch:
    """Durations in microseconds, by name."""

    def __init__(self) -> None:
        self.us: dict[str, list[float]] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.us.setdefault(name, []).append((time.perf_counter() - started) * 1e6)

    def summary(self) -> dict[str, dict[int, float]]:
        return {name: percentiles(values, (50, 99)) for name, values in self.us.items()}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started
