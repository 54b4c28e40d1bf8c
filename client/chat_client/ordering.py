"""Per-chat reorder buffer: releases items in gapless ``seq`` order, exactly once.

Pure and synchronous (no I/O, no asyncio) so it can be tested on its own. The server delivers at least
once and in any order (pushes race with sync replies); this is where the SDK turns that into
"each message exactly once, in seq order". A chat nobody has seen yet has cursor 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class OfferResult(Generic[T]):
    """What happened to one offered item.

    ``released``: items now in order for the application (the offered one first, then any buffered
    successors it unblocked). ``duplicate``: the seq was already released or is already held.
    ``gap``: the item is held because seqs between the cursor and it are missing; the caller must
    fetch them (``sync``), never skip them.
    """

    released: list[T] = field(default_factory=list)
    duplicate: bool = False
    gap: bool = False


@dataclass(frozen=True)
class Gap:
    """A hole in one chat: everything in ``missing_from..missing_to`` (inclusive) is not yet here."""

    chat_id: str
    missing_from: int
    missing_to: int


class ReorderBuffer(Generic[T]):
    """Tracks, per chat, the highest released seq (the cursor) and the items held behind a gap."""

    def __init__(self, cursors: Mapping[str, int] | None = None) -> None:
        # Exposed as-is: the client hands this dict to the application as ``client.cursors``.
        self.cursors: dict[str, int] = dict(cursors or {})
        self._held: dict[str, dict[int, T]] = {}

    def cursor(self, chat_id: str) -> int:
        return self.cursors.get(chat_id, 0)

    def offer(self, chat_id: str, seq: int, item: T) -> OfferResult[T]:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"seq must be a positive int, got {seq!r}")
        cursor = self.cursor(chat_id)
        held = self._held.get(chat_id)
        if seq <= cursor or (held is not None and seq in held):
            return OfferResult(duplicate=True)
        if seq > cursor + 1:
            self._held.setdefault(chat_id, {})[seq] = item
            return OfferResult(gap=True)
        released = [item]
        nxt = seq + 1
        if held is not None:
            while nxt in held:
                released.append(held.pop(nxt))
                nxt += 1
            if not held:
                del self._held[chat_id]
        self.cursors[chat_id] = nxt - 1
        return OfferResult(released=released)

    def start_at(self, chat_id: str, start: int) -> list[T]:
        """The user's history of the chat starts at `start` (a member added then: nothing before it
        is the user's to get). Moves a cursor that is behind to start - 1, forgets what is held
        before `start`, and returns what that releases (in order)."""
        if self.cursor(chat_id) >= start - 1:
            return []
        self.cursors[chat_id] = start - 1
        held = self._held.pop(chat_id, {})
        released: list[T] = []
        nxt = start
        while nxt in held:
            released.append(held.pop(nxt))
            nxt += 1
        self.cursors[chat_id] = nxt - 1
        kept = {seq: item for seq, item in held.items() if seq > nxt}
        if kept:
            self._held[chat_id] = kept
        return released

    def drop_held(self, chat_id: str) -> None:
        """Forget what is held behind a gap in this chat (the user left it: the gap never fills)."""
        self._held.pop(chat_id, None)

    def held(self, chat_id: str) -> list[int]:
        """Seqs held behind a gap in this chat, ascending."""
        return sorted(self._held.get(chat_id, ()))

    def held_count(self) -> int:
        return sum(len(h) for h in self._held.values())

    def has_gaps(self) -> bool:
        return bool(self._held)

    def gaps(self) -> list[Gap]:
        """The first hole of every chat that has one (the one that blocks release)."""
        return [
            Gap(chat_id, self.cursor(chat_id) + 1, min(held) - 1)
            for chat_id, held in sorted(self._held.items())
            if held
        ]
