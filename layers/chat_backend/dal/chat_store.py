"""The chats table, and the chats themselves: each chat's META item (kind, name, head, member
count, a direct chat's pair and blocks).

The table's other kinds of items each have their own store, reached from here: `members`
(dal/member_store.py: members, removals' windows, membership changes), `media`
(dal/media_items.py: announced uploads), `heads` (dal/chat_heads.py: heads and history windows as
sync sees them), `listing` (dal/chat_listing.py: a user's chats). Sends' claims are in
`send_store`, the seq counter in `sequencer`, messages in `message_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chat_backend.dal.aws import av, client
from chat_backend.dal.batching import BATCH_WRITE_MAX_ITEMS, batch_write
from chat_backend.dal.chat_heads import ChatHeads
from chat_backend.dal.chat_items import chat_meta, member_item, meta_item
from chat_backend.dal.chat_keys import META
from chat_backend.dal.chat_listing import ChatListing
from chat_backend.dal.conditional import (
    ConditionFailed,
    TransactionCancelled,
    conditional_or_none,
    put_new,
    put_op,
    transact,
)
from chat_backend.dal.media_items import MediaItems
from chat_backend.dal.member_store import TRANSACT_MAX_ITEMS, MemberStore
from chat_backend.errors import ChatExists
from chat_backend.models.records import ChatMeta


class ChatStore:
    def __init__(
        self, chats_table: str, messages_table: str, ddb: Any | None = None, receipts_table: str | None = None
    ) -> None:
        self.chats_table = chats_table
        self.ddb = ddb or client("dynamodb")
        self.members = MemberStore(chats_table, messages_table, self.ddb, receipts_table)
        self.media = MediaItems(chats_table, self.ddb)
        self.heads = ChatHeads(chats_table, self.ddb)
        self.listing = ChatListing(chats_table, self.ddb)

    def create_chat(
        self,
        meta: ChatMeta,
        created_by: str,
        members: dict[str, str],
        keep_going: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Members first, the META item last: a chat exists only once META does, so a crash
        half-way leaves nothing visible. Small chats go in one transaction; a large one's members
        are written 25 at a time while `keep_going()` says so, and META then counts those written
        (the first ones of `members`). Returns the members written. ChatExists when the chat's
        META is there already (nothing is written then, in one transaction)."""
        member_items = [
            member_item(meta.chat_id, user_id, role, meta.created_at, 1) for user_id, role in members.items()
        ]
        if len(member_items) < TRANSACT_MAX_ITEMS:
            # A transaction, not a batch: no member is written if META's condition fails.
            new_meta = put_op(self.chats_table, meta_item(meta, created_by), "attribute_not_exists(sk)")
            try:
                transact(self.ddb, [new_meta, *(put_op(self.chats_table, i) for i in member_items)])
            except TransactionCancelled as exc:
                if 0 in exc.failed_conditions:
                    raise ChatExists(meta.chat_id) from exc
                raise
            return list(members)
        done = 0
        for start in range(0, len(member_items), BATCH_WRITE_MAX_ITEMS):
            if start > 0 and not keep_going():
                break
            chunk = member_items[start : start + BATCH_WRITE_MAX_ITEMS]
            batch_write(self.ddb, self.chats_table, [{"PutRequest": {"Item": i}} for i in chunk])
            done = start + len(chunk)
        written = list(members)[:done]
        try:
            put_new(
                self.ddb,
                self.chats_table,
                meta_item(meta.model_copy(update={"member_count": len(written)}), created_by),
            )
        except ConditionFailed as exc:
            raise ChatExists(meta.chat_id) from exc
        return written

    def get_chat(self, chat_id: str) -> ChatMeta | None:
        resp = self.ddb.get_item(TableName=self.chats_table, Key=self._meta_key(chat_id), ConsistentRead=True)
        return chat_meta(resp["Item"]) if "Item" in resp else None

    def set_blocked(self, chat_id: str, blocker: str, blocked: bool) -> bool:
        """Add `blocker` to (or take it from) a direct chat's `blockedBy`; False when the chat
        does not exist (nothing is written: no META without a chat)."""
        updated = conditional_or_none(
            self.ddb.update_item,
            TableName=self.chats_table,
            Key=self._meta_key(chat_id),
            UpdateExpression=("ADD" if blocked else "DELETE") + " blockedBy :b",
            ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeValues={":b": {"SS": [blocker]}},
        )
        return updated is not None

    @staticmethod
    def _meta_key(chat_id: str) -> dict[str, Any]:
        return {"chatId": av(chat_id), "sk": av(META)}
