"""ChatClient's presence subscriptions: whose online status this device watches.

The server answers a subscription at once with one PRESENCE frame per user, then pushes their
changes (all on ``unmatched``). A subscription lives while the connection heartbeats, so the
client makes it again after every reconnect (the changes while away were not pushed to it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from chat_client.wire import encode_frame, send_text

if TYPE_CHECKING:
    from chat_client.connection import Link

MAX_PRESENCE_USERS = 100  # per list of one presence frame


class Presence:
    """Mixed into ChatClient, which provides ``send_frame``."""

    def _init_presence(self) -> None:
        # Users whose presence this device watches: subscribed again after every reconnect.
        self.presence_watched: set[str] = set()

    async def subscribe_presence(self, users: Iterable[str]) -> None:
        """Watch these users' presence: the server answers at once with one PRESENCE frame per user,
        then pushes their changes (all on ``unmatched``; a user one shares no chat with makes the
        frame an ERROR FORBIDDEN on ``errors``). The subscription lives while this client heartbeats,
        and is made again after a reconnect."""
        wanted = list(dict.fromkeys(users))
        await self._send_presence(subscribe=wanted)
        self.presence_watched.update(wanted)

    async def unsubscribe_presence(self, users: Iterable[str]) -> None:
        dropped = list(dict.fromkeys(users))
        self.presence_watched.difference_update(dropped)
        await self._send_presence(unsubscribe=dropped)

    async def _resubscribe_presence(self, ws: Link) -> None:
        """On a new connection: the current status of each watched user again."""
        if self.presence_watched:
            with contextlib.suppress(ConnectionClosed):
                await self._send_presence(subscribe=sorted(self.presence_watched), ws=ws)

    async def _send_presence(
        self,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        ws: Link | None = None,
    ) -> None:
        """One frame per 100 users of each list (the protocol's maximum)."""
        step = MAX_PRESENCE_USERS
        for start in range(0, max(len(subscribe), len(unsubscribe)), step):
            frame = {
                "action": "presence",
                "subscribe": list(subscribe[start : start + step]),
                "unsubscribe": list(unsubscribe[start : start + step]),
            }
            if ws is None:
                await self.send_frame(frame)
            else:
                await send_text(ws, encode_frame(frame))

    if TYPE_CHECKING:  # provided by the other parts of ChatClient

        async def send_frame(self, frame: dict[str, Any], timeout: float = 10.0) -> None: ...
