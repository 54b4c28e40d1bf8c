"""A user's chats: the sparse byMember index (one MEMBER# item per chat the user is in, carrying
the role), then, for a page of them, each chat's META for its kind, name and head.

(The index is eventually consistent: a chat joined a moment ago may show a moment later, and one
just left a moment longer; reads that must be exact check the MEMBER# item itself.)"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av
from chat_backend.dal.batching import batch_get, query_items
from chat_backend.dal.chat_items import chat_meta
from chat_backend.dal.chat_keys import BY_MEMBER, MEMBER, META


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
    def __init__(self, chats_table: str, ddb: Any) -> None:
        self.chats_table = chats_table
        self.ddb = ddb

    def chat_ids(self, user_id: str) -> list[str]:
        """Every chat the user is a member of."""
        return [i["chatId"]["S"] for i in query_items(self.ddb, self._query(user_id, "chatId"))]

    def page(
        self, user_id: str, after: str | None, limit: int, pool: Executor
    ) -> tuple[list[ListedChat], str | None]:
        """Up to `limit` of the user's chats in chatId order after `after`, and the chatId to go on
        after when more follow (None when this was the last page)."""
        request = self._query(user_id, "chatId, #r", ExpressionAttributeNames={"#r": "role"}, Limit=limit)
        if after is not None:
            request["ExclusiveStartKey"] = {
                "memberUserId": av(user_id),
                "chatId": av(after),
                "sk": av(MEMBER.sk(user_id)),
            }
        resp = self.ddb.query(**request)
        roles = {i["chatId"]["S"]: i["role"]["S"] for i in resp["Items"]}
        keys = [{"chatId": av(c), "sk": av(META)} for c in roles]
        metas = map(chat_meta, batch_get(self.ddb, self.chats_table, {"Keys": keys}, pool))
        listed = [
            ListedChat(m.chat_id, m.kind, m.name, m.head_seq, roles[m.chat_id], m.member_count, m.pair)
            for m in sorted(metas, key=lambda m: m.chat_id)
        ]
        last = resp["LastEvaluatedKey"]["chatId"]["S"] if "LastEvaluatedKey" in resp else None
        return listed, last

    def _query(self, user_id: str, projection: str, **request: Any) -> dict[str, Any]:
        return {
            "TableName": self.chats_table,
            "IndexName": BY_MEMBER,
            "KeyConditionExpression": "memberUserId = :u",
            "ExpressionAttributeValues": {":u": av(user_id)},
            "ProjectionExpression": projection,
            **request,
        }
