"""How frames go on the wire: API Gateway's size rules (PROTOCOL.md v1.1, "Frames on the wire").

A text message of at most 128 KiB travels in frames of at most 32 KiB each; anything larger in one
frame, or in all, makes API Gateway close the connection with 1009. So a long frame is sent as
continuation frames, split between characters (each part is valid UTF-8 on its own).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

MAX_MESSAGE_BYTES = 128 * 1024
MAX_FRAME_BYTES = 32 * 1024


class TextSender(Protocol):
    async def send(self, message: Any) -> None: ...


def encode_frame(frame: dict[str, Any]) -> str:
    """A client frame as the compact JSON text the server reads."""
    return json.dumps(frame, separators=(",", ":"))


def fragments(text: str, max_bytes: int = MAX_FRAME_BYTES) -> list[str]:
    """`text` in consecutive parts of at most `max_bytes` UTF-8 bytes each, never splitting a character."""
    parts: list[str] = []
    start, size = 0, 0
    for i, char in enumerate(text):
        width = len(char.encode("utf-8", "surrogatepass"))
        if size + width > max_bytes:
            parts.append(text[start:i])
            start, size = i, 0
        size += width
    parts.append(text[start:])
    return parts


async def send_text(ws: TextSender, text: str) -> None:
    """Send `text` as one WebSocket message: one frame when it fits, else continuation frames."""
    if len(text) * 4 <= MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) <= MAX_FRAME_BYTES:
        await ws.send(text)
    else:
        await ws.send(fragments(text))
