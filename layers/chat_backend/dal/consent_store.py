"""The consent table: who blocks whom, and who may add a user to groups.

A block is two items written together: BLOCKS#<target> on the blocker's partition (what the
blocker manages) and BLOCKEDBY#<blocker> on the target's (so everything the target does can be
kept from all who block them with one Query of the target's own partition). A user's settings
are one PRIVACY item.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any, Literal

from chat_backend.dal.aws import av, client, from_item
from chat_backend.dal.batching import BATCH_GET_MAX_KEYS, batch_get

GroupAdd = Literal["everyone", "chatted", "nobody"]
PRIVACY = "PRIVACY"
BLOCKS = "BLOCKS#"
BLOCKED_BY = "BLOCKEDBY#"


class ConsentStore:
    def __init__(self, table: str, ddb: Any | None = None) -> None:
        self.table = table
        self.ddb = ddb or client("dynamodb")

    def block(self, blocker: str, target: str, at_ms: int) -> None:
        self.ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.table, "Item": self._item(blocker, BLOCKS + target, at_ms)}},
                {"Put": {"TableName": self.table, "Item": self._item(target, BLOCKED_BY + blocker, at_ms)}},
            ]
        )

    def unblock(self, blocker: str, target: str) -> None:
        self.ddb.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self.table, "Key": self._key(blocker, BLOCKS + target)}},
                {"Delete": {"TableName": self.table, "Key": self._key(target, BLOCKED_BY + blocker)}},
            ]
        )

    def blockers_of(self, user_id: str) -> set[str]:
        """Everyone who blocks `user_id` (a consistent Query of the user's own partition)."""
        return self._suffixes(user_id, BLOCKED_BY)

    def blocked_users(self, user_id: str) -> set[str]:
        """Everyone `user_id` blocks."""
        return self._suffixes(user_id, BLOCKS)

    def set_group_add(self, user_id: str, group_add: GroupAdd) -> None:
        self.ddb.put_item(
            TableName=self.table,
            Item={"userId": av(user_id), "sk": av(PRIVACY), "groupAdd": av(group_add)},
        )

    def group_add_of(self, users: list[str], pool: Executor) -> dict[str, GroupAdd]:
        """Each user's `groupAdd` ("everyone" for a user who never set it)."""
        found: dict[str, GroupAdd] = dict.fromkeys(users, "everyone")
        chunks = [users[i : i + BATCH_GET_MAX_KEYS] for i in range(0, len(users), BATCH_GET_MAX_KEYS)]

        def read(chunk: list[str]) -> list[dict[str, Any]]:
            return batch_get(self.ddb, self.table, {"Keys": [self._key(u, PRIVACY) for u in chunk]})

        for items in pool.map(read, chunks):
            for item in items:
                value = from_item(item)
                found[value["userId"]] = value.get("groupAdd", "everyone")
        return found

    def _suffixes(self, user_id: str, prefix: str) -> set[str]:
        found: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "userId = :u AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":u": av(user_id), ":p": av(prefix)},
            "ProjectionExpression": "sk",
            "ConsistentRead": True,
        }
        for page in self.ddb.get_paginator("query").paginate(**kwargs):
            found.update(item["sk"]["S"][len(prefix) :] for item in page["Items"])
        return found

    @staticmethod
    def _key(user_id: str, sk: str) -> dict[str, Any]:
        return {"userId": av(user_id), "sk": av(sk)}

    def _item(self, user_id: str, sk: str, at_ms: int) -> dict[str, Any]:
        return {**self._key(user_id, sk), "at": av(at_ms)}
