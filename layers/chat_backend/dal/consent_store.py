"""The consent table: who blocks whom, and who may add a user to groups.

A block is two items written together: BLOCKS#<target> on the blocker's partition (what the
blocker manages) and BLOCKEDBY#<blocker> on the target's (so everything the target does can be
kept from all who block them with one Query of the target's own partition). A user's settings
are one PRIVACY item.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any, Literal

from chat_backend.dal.aws import TableStore, av, from_item
from chat_backend.dal.batching import batch_get, query_items
from chat_backend.dal.conditional import delete_op, put_op, transact
from chat_backend.dal.item_kinds import ItemKind

GroupAdd = Literal["everyone", "chatted", "nobody"]
PRIVACY = "PRIVACY"
BLOCKS = ItemKind("BLOCKS#")  # BLOCKS#<target>, on the blocker's partition
BLOCKED_BY = ItemKind("BLOCKEDBY#")  # BLOCKEDBY#<blocker>, on the target's


class ConsentStore(TableStore):
    def block(self, blocker: str, target: str, at_ms: int) -> None:
        # Both items or neither (a transaction, not a batch): each side's reads must agree.
        transact(
            self.ddb,
            [
                put_op(self.table, self._item(blocker, BLOCKS.sk(target), at_ms)),
                put_op(self.table, self._item(target, BLOCKED_BY.sk(blocker), at_ms)),
            ],
        )

    def unblock(self, blocker: str, target: str) -> None:
        transact(
            self.ddb,
            [
                delete_op(self.table, self._key(blocker, BLOCKS.sk(target))),
                delete_op(self.table, self._key(target, BLOCKED_BY.sk(blocker))),
            ],
        )

    def blockers_of(self, user_id: str) -> set[str]:
        """Everyone who blocks `user_id` (a consistent Query of the user's own partition)."""
        return self._ids(user_id, BLOCKED_BY)

    def blocked_users(self, user_id: str) -> set[str]:
        """Everyone `user_id` blocks."""
        return self._ids(user_id, BLOCKS)

    def set_group_add(self, user_id: str, group_add: GroupAdd) -> None:
        self.ddb.put_item(
            TableName=self.table,
            Item={"userId": av(user_id), "sk": av(PRIVACY), "groupAdd": av(group_add)},
        )

    def group_add_of(self, users: list[str], pool: Executor) -> dict[str, GroupAdd]:
        """Each user's `groupAdd` ("everyone" for a user who never set it)."""
        keys = [self._key(u, PRIVACY) for u in users]
        settings = map(from_item, batch_get(self.ddb, self.table, {"Keys": keys}, pool))
        found: dict[str, GroupAdd] = dict.fromkeys(users, "everyone")
        for value in settings:
            found[value["userId"]] = value.get("groupAdd", "everyone")
        return found

    def _ids(self, user_id: str, kind: ItemKind) -> set[str]:
        """The ids of the user's items of `kind` (a consistent Query of the user's partition)."""
        request = kind.query(self.table, ("userId", user_id), ProjectionExpression="sk", ConsistentRead=True)
        return {kind.id_in(item["sk"]["S"]) for item in query_items(self.ddb, request)}

    @staticmethod
    def _key(user_id: str, sk: str) -> dict[str, Any]:
        return {"userId": av(user_id), "sk": av(sk)}

    def _item(self, user_id: str, sk: str, at_ms: int) -> dict[str, Any]:
        return {**self._key(user_id, sk), "at": av(at_ms)}
