"""Where a use case's frames for the caller go besides its answer (sync's replay): on a WebSocket,
the ConnectionPoster pushes each to the caller's connection; over the HTTP fallback (PROTOCOL.md
v1.1 "HTTP fallback") there is no connection, so a FrameCollector keeps them, in order, for the
answer's `frames`."""

from __future__ import annotations

from typing import Protocol


class FrameSink(Protocol):
    def post(self, connection_id: str, data: str) -> None:
        """Hand one frame (its JSON text) to the caller; ConnectionGone when nobody is there."""


class FrameCollector:
    """A FrameSink that keeps what it is given (never gone: the HTTP answer carries it)."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def post(self, connection_id: str, data: str) -> None:
        self.frames.append(data)
