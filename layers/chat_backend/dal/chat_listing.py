"""A user's chats, a page at a time: the sparse byMember index (one MEMBER# item per chat the user
is in, carrying the role), then each chat's META for its kind, name and head."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av, client
from chat_backend.dal.batching import BATCH_GET_MAX_KEYS, batch_get
from chat_backend.dal.chat_keys import META, member_sk
from chat_backend.dal.chat_store import chat_meta


@dataclass(frozen=True)
class ListedChat:
    chat_id: str
    kind: str
    name: str | None
    head: int
    role: str
    member_count: int = 0
    pair: tuple[str, str] | None = None  # a direct chat's two users


class ChatListing:
    def __init__(self, chats_table: str, ddb: Any | None = None) -> None:
        self.chats_table = chats_table
        self.ddb = ddb or client("dynamodb")

    def page(
        self, user_id: str, after: str | None, limit: int, pool: Executor
    ) -> tuple[list[ListedChat], str | None]:
        """Up to `limit` of the user's chats in chatId order after `after`, and the chatId to go on
        after when more follow (None when this was the last page).
        (The index is eventually consistent: a chat joined a moment ago may show on the next page.)"""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "IndexName": "byMember",
            "KeyConditionExpression": "memberUserId = :u",
            "ExpressionAttributeValues": {":u": av(user_id)},
            "ProjectionExpression": "chatId, #r",
            "ExpressionAttributeNames": {"#r": "role"},
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "memberUserId": av(user_id),
                "chatId": av(after),
                "sk": av(member_sk(user_id)),
            }
        resp = self.ddb.query(**kwargs)
        roles = {i["chatId"]["S"]: i["role"]["S"] for i in resp["Items"]}
        chunks = [list(roles)[i : i + BATCH_GET_MAX_KEYS] for i in range(0, len(roles), BATCH_GET_MAX_KEYS)]

        def metas(chunk: list[str]) -> list[dict[str, Any]]:
            keys = [{"chatId": av(c), "sk": av(META)} for c in chunk]
            return batch_get(self.ddb, self.chats_table, {"Keys": keys})

        found = {meta.chat_id: meta for items in pool.map(metas, chunks) for meta in map(chat_meta, items)}
        listed = [
            ListedChat(
                chat_id, meta.kind, meta.name, meta.head_seq, roles[chat_id], meta.member_count, meta.pair
            )
            for chat_id, meta in sorted(found.items())
        ]
        last = resp["LastEvaluatedKey"]["chatId"]["S"] if "LastEvaluatedKey" in resp else None
        return listed, last
