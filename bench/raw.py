"""A device speaking the raw protocol (no SDK): every answer it gets is seen as it is, so an ERROR
is counted as a refusal rather than retried away. Used by the hot-chat benchmark and tests."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from chat_client import mint_token


@dataclass
class RawDevice:
    user_id: str
    device_id: str
    ws: ClientConnection
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # clientMsgId -> ACK or ERROR
    pushed: dict[int, str] = field(default_factory=dict)  # seq -> "MESSAGE" / "VOID" pushed to it
    sent_at: dict[str, float] = field(default_factory=dict)  # clientMsgId -> perf_counter at send
    answered_at: dict[str, float] = field(default_factory=dict)
    _waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, user_id: str, device_id: str, secret: str) -> RawDevice:
        ws = await websockets.connect(
            f"{url}?token={mint_token(user_id, device_id, secret=secret)}", max_size=None
        )
        device = cls(user_id, device_id, ws)
        device._reader = asyncio.create_task(device._read())
        return device

    async def _read(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind in ("ACK", "ERROR") and frame.get("clientMsgId") in self.sent_at:
                self.answers[frame["clientMsgId"]] = frame
                self.answered_at[frame["clientMsgId"]] = time.perf_counter()
                waiter = self._waiting.get(frame["clientMsgId"])
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
            elif kind in ("MESSAGE", "VOID"):
                self.pushed[frame["seq"]] = kind

    async def send(self, chat_id: str, text: str) -> str:
        """Send without waiting for the answer; returns the clientMsgId."""
        client_msg_id = str(uuid.uuid4())
        data = base64.b64encode(text.encode()).decode()
        frame = {"action": "send", "clientMsgId": client_msg_id, "chatId": chat_id, "ciphertext": data}
        self.sent_at[client_msg_id] = time.perf_counter()
        self._waiting[client_msg_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(frame))
        return client_msg_id

    async def answer(self, client_msg_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The ACK or ERROR of a send."""
        return await asyncio.wait_for(asyncio.shield(self._waiting[client_msg_id]), timeout)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def refusals(self) -> list[dict[str, Any]]:
        return [a for a in self.answers.values() if a.get("type") != "ACK"]
