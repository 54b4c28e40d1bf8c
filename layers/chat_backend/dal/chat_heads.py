"""A user's chats as sync and heartbeats see them: each chat's head and the user's history window.

A member sees its chat from the `added` announcement naming it (seq 1 for the chat's first
members) on; a removed member, from there through the announcement that removed it, and the chat's
head stays at that removal for it (PROTOCOL.md v1.1, History windows). The MEMBER# item holds
where the window starts, the FORMER# item a removed member's whole window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av, from_item
from chat_backend.dal.batching import batch_get
from chat_backend.dal.chat_keys import FORMER, MEMBER, META


@dataclass(frozen=True)
class Window:
    """The seqs a user sees of a chat: start..end inclusive (end None: a member, open-ended)."""

    start: int
    end: int | None = None

    def holds(self, seq: int) -> bool:
        return self.start <= seq and (self.end is None or seq <= self.end)

    def head(self, chat_head: int) -> int:
        """The chat's head as this user sees it."""
        return chat_head if self.end is None else min(chat_head, self.end)


@dataclass(frozen=True)
class ChatView:
    window: Window
    head: int  # the chat's head within the window
    archived_through: int = 0  # seqs up to this one are read from the archive (logic/archive.py)


class ChatHeads:
    def __init__(self, chats_table: str, ddb: Any) -> None:
        self.chats_table = chats_table
        self.ddb = ddb

    def views(self, user_id: str, chat_ids: list[str], former: Sequence[str] = ()) -> dict[str, ChatView]:
        """The chats of `chat_ids` that exist and that `user_id` is a member of now, and those of
        `former` it was removed from: each with its window and head. Membership is read
        consistently (the byMember index lags, so a just-removed member may still be listed in
        it; its FORMER# item, written by the removal, decides then)."""
        wanted = list(dict.fromkeys([*chat_ids, *former]))
        heads = self._heads_and_times(wanted, consistent=True)
        windows = self.windows(user_id, list(heads), former=[c for c in wanted if c in heads])
        return {c: ChatView(w, w.head(heads[c][0]), heads[c][2]) for c, w in windows.items()}

    def moved_heads(self, user_id: str, chat_ids: list[str], since_ms: int) -> dict[str, int]:
        """The heads of the user's chats whose head moved after `since_ms`: the heads are read
        eventually consistently (a move just missed shows next time), the membership consistently
        and only for the chats that moved (so a just-removed member learns nothing)."""
        moved = {
            chat_id: head
            for chat_id, (head, at_ms, _) in self._heads_and_times(chat_ids, consistent=False).items()
            if at_ms > since_ms
        }
        return {chat_id: moved[chat_id] for chat_id in self.windows(user_id, list(moved))}

    def windows(self, user_id: str, chat_ids: list[str], former: Sequence[str] = ()) -> dict[str, Window]:
        """The user's window in each of `chat_ids` it is a member of, and in each of `former` it
        is not a member of but was removed from (its last window there)."""
        found = {
            v["chatId"]: Window(int(v.get("fromSeq", 1)))
            for v in self._items(chat_ids, MEMBER.sk(user_id), "chatId, fromSeq")
        }
        gone = [c for c in former if c not in found]
        found |= {
            v["chatId"]: Window(int(v["fromSeq"]), int(v["toSeq"]))
            for v in self._items(gone, FORMER.sk(user_id), "chatId, fromSeq, toSeq")
        }
        return found

    def window(self, chat_id: str, user_id: str) -> Window | None:
        """The user's window in one chat: as a member, else as a removed member; None if neither."""
        return self.windows(user_id, [chat_id], former=[chat_id]).get(chat_id)

    def _heads_and_times(self, chat_ids: list[str], consistent: bool) -> dict[str, tuple[int, int, int]]:
        """chatId -> (headSeq, headAt ms, archivedThrough) of the chats that exist."""
        return {
            v["chatId"]: (int(v["headSeq"]), int(v.get("headAt", 0)), int(v.get("archivedThrough", 0)))
            for v in self._items(chat_ids, META, "chatId, headSeq, headAt, archivedThrough", consistent)
        }

    def _items(
        self, chat_ids: list[str], sk: str, projection: str, consistent: bool = True
    ) -> list[dict[str, Any]]:
        """The items with sort key `sk` of the chats."""
        keys = [{"chatId": av(c), "sk": av(sk)} for c in chat_ids]
        request = {"Keys": keys, "ConsistentRead": consistent, "ProjectionExpression": projection}
        return [from_item(i) for i in batch_get(self.ddb, self.chats_table, request)]
