"""For the benchmark: when the gateway first wrote each MESSAGE frame of the tracked chats to each
connection, so delivery is timed where the server hands the frame over, not by the clients."""

from __future__ import annotations

import json
import time


class FrameTap:
    """When MESSAGE frames of the tracked chats were first written to each connection:
    chatId -> seq -> connectionId -> epoch s (a repeated push of the same frame is not counted)."""

    def __init__(self) -> None:
        self.chats: set[str] = set()
        self.everything = False
        self.writes: dict[str, dict[int, dict[str, float]]] = {}

    def track(self, chat_ids: list[str] | None) -> None:
        """These chats (None: every chat) from now on; forgets what was kept."""
        self.everything = chat_ids is None
        self.chats = set(chat_ids or [])
        self.writes = {}

    def wrote(self, connection_id: str, data: str) -> None:
        if not (self.everything or self.chats) or not data.startswith('{"type":"MESSAGE"'):
            return
        at = time.time()
        frame = json.loads(data)
        if self.everything or frame["chatId"] in self.chats:
            self.writes.setdefault(frame["chatId"], {}).setdefault(frame["seq"], {}).setdefault(
                connection_id, at
            )
