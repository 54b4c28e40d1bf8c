"""The receipts table: each member's delivered / read watermarks per chat, and the reads a receipt
needs from the chats and messages tables.

One item per (chatId, userId) holds `deliveredUpTo` / `readUpTo` (+ `deliveredAt` / `readAt`).
A watermark only moves up, under a condition, so a repeated or out-of-date receipt writes nothing:
the store deduplicates by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from chat_backend.dal.aws import TableStore, av, from_item
from chat_backend.dal.batching import batch_get, batch_get_tables, query_items
from chat_backend.dal.chat_items import chat_meta
from chat_backend.dal.chat_keys import MEMBER, META
from chat_backend.dal.conditional import conditional_or_none
from chat_backend.dal.message_store import seq_range
from chat_backend.models.records import ChatMeta

ReceiptKind = Literal["DELIVERED", "READ"]
# receipt type -> (watermark attribute, time attribute)
WATERMARK_ATTRS: dict[str, tuple[str, str]] = {
    "DELIVERED": ("deliveredUpTo", "deliveredAt"),
    "READ": ("readUpTo", "readAt"),
}
_MESSAGE_REF_NAMES = {"#seq": "seq", "#sender": "sender", "#id": "serverMsgId", "#hidden": "hiddenFrom"}
_MESSAGE_REF_PROJECTION = "#seq, #id, #sender, #hidden"


@dataclass(frozen=True)
class MessageRef:
    """What receipts need of a message: never its ciphertext."""

    seq: int
    server_msg_id: str
    sender: str
    hidden_from: frozenset[str] = frozenset()  # to them the seq is a VOID (they block the sender)


@dataclass(frozen=True)
class ReceiptContext:
    chat: ChatMeta | None  # None: no such chat
    is_member: bool
    message: MessageRef | None  # the message asked for, if it is stored
    window_start: int = 1  # where the member's history window starts


@dataclass(frozen=True)
class Watermark:
    user_id: str
    delivered_up_to: int = 0
    read_up_to: int = 0
    delivered_at: str | None = None
    read_at: str | None = None
    since: int = 1  # where the member's history window started: it covers nothing before


def _watermark(item: dict[str, Any]) -> Watermark:
    v = from_item(item)
    return Watermark(
        user_id=v["userId"],
        delivered_up_to=int(v.get("deliveredUpTo", 0)),
        read_up_to=int(v.get("readUpTo", 0)),
        delivered_at=v.get("deliveredAt"),
        read_at=v.get("readAt"),
        since=int(v.get("since", 1)),
    )


def _message_ref(item: dict[str, Any]) -> MessageRef | None:
    """None for a VOID (a seq that carries no message: no id, no sender, nobody to tell)."""
    v = from_item(item)
    if "serverMsgId" not in v:
        return None
    return MessageRef(
        seq=int(v["seq"]),
        server_msg_id=v["serverMsgId"],
        sender=v["sender"],
        hidden_from=frozenset(v.get("hiddenFrom", ())),
    )


class ReceiptStore(TableStore):
    """The receipts table (`table`), and what receipts read of the chats and messages tables."""

    def __init__(
        self, receipts_table: str, chats_table: str, messages_table: str, ddb: Any | None = None
    ) -> None:
        super().__init__(receipts_table, ddb)
        self.chats_table = chats_table
        self.messages_table = messages_table

    # --- what a receipt is about -----------------------------------------------------------------

    def context(self, chat_id: str, user_id: str, seq: int | None) -> ReceiptContext:
        """The chat's META, the user's membership and (when `seq` is given) the message stored at
        that seq: one consistent BatchGetItem across the chats and messages tables."""
        requests: dict[str, dict[str, Any]] = {
            self.chats_table: {
                "Keys": [
                    {"chatId": av(chat_id), "sk": av(META)},
                    {"chatId": av(chat_id), "sk": av(MEMBER.sk(user_id))},
                ],
                "ConsistentRead": True,
            }
        }
        if seq is not None:
            requests[self.messages_table] = {
                "Keys": [{"chatId": av(chat_id), "seq": av(seq)}],
                "ConsistentRead": True,
                "ProjectionExpression": _MESSAGE_REF_PROJECTION,
                "ExpressionAttributeNames": _MESSAGE_REF_NAMES,
            }
        found = batch_get_tables(self.ddb, requests)
        by_sk = {i["sk"]["S"]: i for i in found[self.chats_table]}
        messages = found.get(self.messages_table, [])
        member = by_sk.get(MEMBER.sk(user_id))
        return ReceiptContext(
            chat=chat_meta(by_sk[META]) if META in by_sk else None,
            is_member=member is not None,
            message=_message_ref(messages[0]) if messages else None,
            window_start=int(member.get("fromSeq", {"N": "1"})["N"]) if member else 1,
        )

    def members_among(self, chat_id: str, users: list[str]) -> set[str]:
        """Those of `users` who are members of the chat now (their MEMBER items, read consistently,
        100 a call)."""
        keys = [{"chatId": av(chat_id), "sk": av(MEMBER.sk(u))} for u in users]
        request = {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "sk"}
        return {MEMBER.id_in(item["sk"]["S"]) for item in batch_get(self.ddb, self.chats_table, request)}

    def forget(self, chat_id: str, user_id: str) -> None:
        """Delete a member's watermarks (a receipt re-created them after the member's removal)."""
        self.ddb.delete_item(TableName=self.table, Key={"chatId": av(chat_id), "userId": av(user_id)})

    def messages_between(self, chat_id: str, after: int, up_to: int, limit: int) -> list[MessageRef]:
        """Messages with after < seq <= up_to, newest first, at most `limit` (seq, id and sender)."""
        request = seq_range(
            self.messages_table,
            chat_id,
            after + 1,
            up_to,
            ExpressionAttributeNames=_MESSAGE_REF_NAMES,
            ProjectionExpression=_MESSAGE_REF_PROJECTION,
            ScanIndexForward=False,
            Limit=limit,
        )
        resp = self.ddb.query(**request)
        return [ref for ref in map(_message_ref, resp["Items"]) if ref is not None]

    # --- watermarks ------------------------------------------------------------------------------

    def advance(
        self, chat_id: str, user_id: str, receipt_type: ReceiptKind, seq: int, at: str, since: int = 1
    ) -> int | None:
        """Move the user's `receipt_type` watermark up to `seq`. Returns the watermark it had
        (0 for none) when it moved, None when it already stood at or past `seq` (nothing written).
        READ implies DELIVERED: a READ also lifts a lower deliveredUpTo. `since`: where the user's
        history window starts (kept on the item: the watermark covers nothing before it)."""
        old = self._raise(chat_id, user_id, receipt_type, seq, at, since)
        if old is None:
            return None
        if receipt_type == "READ" and int(old.get("deliveredUpTo", 0)) < seq:
            self._raise(chat_id, user_id, "DELIVERED", seq, at, since)  # a newer DELIVERED may have won: fine
        return int(old.get(WATERMARK_ATTRS[receipt_type][0], 0))

    def _raise(
        self, chat_id: str, user_id: str, receipt_type: ReceiptKind, seq: int, at: str, since: int
    ) -> dict[str, Any] | None:
        """The item's old values when the watermark moved, None when the condition held it."""
        up_to, at_attr = WATERMARK_ATTRS[receipt_type]
        resp = conditional_or_none(
            self.ddb.update_item,
            TableName=self.table,
            Key={"chatId": av(chat_id), "userId": av(user_id)},
            UpdateExpression="SET #w = :s, #at = :at, since = if_not_exists(since, :since)",
            ConditionExpression="attribute_not_exists(#w) OR #w < :s",
            ExpressionAttributeNames={"#w": up_to, "#at": at_attr},
            ExpressionAttributeValues={":s": av(seq), ":at": av(at), ":since": av(since)},
            ReturnValues="ALL_OLD",
        )
        return None if resp is None else from_item(resp.get("Attributes", {}))

    def watermarks(self, chat_id: str, page_size: int = 1000) -> Iterator[Watermark]:
        """Every member's watermarks in the chat (all pages)."""
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "chatId = :c",
            "ExpressionAttributeValues": {":c": av(chat_id)},
            "ProjectionExpression": "userId, deliveredUpTo, readUpTo, since",
            "PaginationConfig": {"PageSize": page_size},
        }
        yield from map(_watermark, query_items(self.ddb, request))

    def covering(
        self, chat_id: str, seq: int, after_user: str | None, limit: int
    ) -> tuple[list[Watermark], str | None]:
        """A page of the watermarks that cover `seq` (delivered or read), in userId order after
        `after_user`: at most `limit`, and the userId to continue after (None: no more).
        A non-None cursor may lead to an empty last page (DynamoDB cannot tell in advance)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "chatId = :c",
            # a member added after the message never had it, whatever its watermark says
            "FilterExpression": "(deliveredUpTo >= :s OR readUpTo >= :s) AND "
            "(attribute_not_exists(since) OR since <= :s)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":s": av(seq)},
            "Limit": limit,
        }
        if after_user is not None:
            kwargs["ExclusiveStartKey"] = {"chatId": av(chat_id), "userId": av(after_user)}
        # One page, not a full read: followed by hand only while the filter leaves it short.
        page: list[Watermark] = []
        while True:
            resp = self.ddb.query(**kwargs)
            page.extend(_watermark(i) for i in resp["Items"])
            if len(page) > limit:
                return page[:limit], page[limit - 1].user_id
            if "LastEvaluatedKey" not in resp:
                return page, None
            if len(page) == limit:
                return page, page[-1].user_id
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
